"""The wizard's six panes, layout only: each yields its widgets (ids the app's handlers use); nothing here
plans or reads the world but the list of bundled targets."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Button, Checkbox, DataTable, Input, Label, ProgressBar, Select, Static

from planner.export import KINDS

Pane = Iterator[Widget]


def _row(label: str, field: Widget) -> Widget:
    return Horizontal(Label(label), field, classes="row")


def hardware(app: Any) -> Pane:
    from planner.profile.cluster import list_clusters
    from planner.profile.targets import list_targets
    options = [("this machine (detected)", "auto")] + [(f"{n}: {t}", n) for n, t in list_targets()]
    options += [(f"cluster {n}: {t}", n) for n, t in list_clusters()]
    if app.target not in {v for _, v in options}:  # a profile or cluster file given with --target
        options.append((app.target, app.target))
    yield Select(options, value=app.target, allow_blank=False, id="target")
    yield _row("VRAM GiB per GPU", Input(placeholder="as detected / as in the profile (e.g. 24 or 24,12)", id="vram"))
    yield _row("RAM GiB", Input(placeholder="as detected / as in the profile", id="ram"))
    yield Static(id="hw-text", markup=False)


def model(app: Any) -> Pane:
    yield Input(placeholder="search the catalog (qwen coder, use:code size:7-14 after:2025-06 license:apache) "
                            "or a .gguf path, HF repo, Ollama name + Enter", id="model-q")
    yield DataTable(id="models", cursor_type="row")
    yield Static(id="model-info", markup=False)


def goal(app: Any) -> Pane:
    from planner.estimate.quant_mix import FTYPES
    yield Select([(g, g) for g in ("balanced", "quality", "speed", "context")], value="balanced",
                 allow_blank=False, id="goal-sel")
    yield _row("context tokens", Input(placeholder="free (the optimizer picks)", id="ctx", type="integer"))
    yield _row("min tok/s", Input(placeholder="none", id="min-tps", type="number"))
    yield _row("quant", Select([("published files and your own mix", "")] + [(q, q) for q in FTYPES], value="",
                               allow_blank=False, id="quant"))


def plan(app: Any) -> Pane:
    yield Static("pick a model (F2)", id="plan-body", markup=False)
    yield DataTable(id="alts", cursor_type="row")


def export(app: Any) -> Pane:
    yield Select([(k, k) for k in (*KINDS, "rpc-server")], value="llama-server", allow_blank=False, id="kind")
    yield _row("model file", Input(placeholder="the GGUF the lines name (default: the published file or "
                                               "<model>-plan.gguf)", id="model-path"))
    yield _row("source file", Input(placeholder="the F16/BF16 GGUF llama-quantize reads", id="source-path"))
    yield Static(id="export-text", markup=False)
    yield Horizontal(Input(placeholder="file to write", id="path"), Checkbox("overwrite", id="force"),
                     Checkbox("older llama.cpp", id="legacy"), classes="row")
    yield Horizontal(Button("Save", id="save", variant="primary"), Button("Copy", id="copy"), classes="row")


def verify(app: Any) -> Pane:
    yield Input(placeholder="source F16/BF16 GGUF (blank: a shape twin, memory and speed only)", id="source")
    yield Button("Run verify", id="run-verify", variant="primary")
    yield ProgressBar(total=100, id="progress", show_eta=False)
    yield Static(id="verify-out", markup=False)


PANES: tuple[tuple[str, str, Callable[[Any], Pane]], ...] = (
    ("hardware", "1 Hardware", hardware), ("model", "2 Model", model), ("goal", "3 Goal", goal),
    ("plan", "4 Plan", plan), ("export", "5 Export", export), ("verify", "6 Verify", verify))
TABS = tuple(tab_id for tab_id, _, _ in PANES)
