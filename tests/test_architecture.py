"""The package's shape: imports flow one way through the layers (profile → model → estimate →
optimize → export → verify → api → faces), and no module imports one that imports it back, not even
lazily inside a function (a lazy import hides a cycle; it does not remove it)."""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1] / "planner"
# lower first; a module may import its own layer's modules and any lower layer's
LAYERS = [{"errors", "units", "data", "fileio"}, {"profile", "hardware_profiles", "clusters"}, {"model"}, {"estimate"},
          {"optimize"}, {"export"}, {"verify"}, {"api", "views"}, {"tui"}, {"cli"}, {"__init__"}]


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = ("planner", *p.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(path: pathlib.Path, mods: dict[str, pathlib.Path]) -> set[str]:
    """planner modules imported anywhere in the file; `from pkg import sub` names the submodule."""
    out = set()
    for n in ast.walk(ast.parse(path.read_text())):
        if isinstance(n, ast.Import):
            out |= {a.name for a in n.names if a.name in mods}
        elif isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and n.module.startswith("planner"):
            subs = {f"{n.module}.{a.name}" for a in n.names} & mods.keys()
            out |= subs or {n.module}
            if len(subs) < len(n.names):
                out.add(n.module)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    g = {}
    for m, p in mods.items():
        # a package's own __init__ is not a dependency of its modules (Python runs it first anyway)
        g[m] = {t for t in _imports(p, mods) if t != m and not m.startswith(t + ".")}
    return g


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        stack.append(v)
        for w in sorted(g[v]):
            if state.get(w) == 1:
                return stack[stack.index(w):] + [w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        stack.pop()
        return None

    for v in sorted(g):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_module_imports_one_that_imports_it_back():
    found = _cycle(_graph())
    assert found is None, " → ".join(found or [])


def test_imports_only_go_down_the_layers():
    wrong = [f"{m} imports {t}" for m, ts in _graph().items() for t in ts if _layer(t) > _layer(m)]
    assert not wrong, wrong


def test_every_top_level_module_has_a_layer():
    for m in _modules():
        _layer(m)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_faces_plan_evaluate_and_verify_only_through_the_api():
    entry = {"make_plan", "verify", "estimate", "evaluate", "recommend"}
    wrong = []
    for p in [*ROOT.joinpath("cli").glob("*.py"), *ROOT.joinpath("tui").glob("*.py")]:
        for n in ast.walk(ast.parse(p.read_text())):
            if isinstance(n, ast.ImportFrom) and n.module != "planner.api":
                wrong += [f"{p.name}: {a.name} from {n.module}" for a in n.names if a.name in entry]
    assert not wrong, wrong
