"""`plan wizard`: a textual face over the same API the CLI uses (planner.api / optimize / export /
verify). Six tabs, keyboard first (F1-F6 switch, Tab moves between fields), usable at 80x24.
Every change re-plans in a worker thread; errors are shown as notifications, never tracebacks.
"""

from __future__ import annotations

import os

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Header,
    Input,
    ProgressBar,
    Select,
    Static,
    TabbedContent,
    TabPane,
)

from planner.errors import PlannerError
from planner.export import file_name
from planner.tui.panes import PANES, TABS
from planner.views import layer_map, memory_bar


class PlannerApp(App):
    TITLE = "planner wizard"
    CSS_PATH = "app.tcss"
    BINDINGS = [Binding(f"f{i + 1}", f"tab('{t}')", t.capitalize()) for i, t in enumerate(TABS)] + [
        Binding("ctrl+s", "save", "Save export"), Binding("ctrl+q", "quit", "Quit")]

    def __init__(self, model: str | None = None, target: str = "auto") -> None:
        super().__init__()
        self.model_name, self.target = model, target
        self.spec = None
        self.hw = None
        self.result = None
        self.run_plan = None  # api.RunnablePlan: published files and the own mix
        self.choice = None  # the PlanOption shown
        self.choice_ref = None  # its published file (hf.co/ORG/REPO:QUANT or an Ollama tag), None for the own mix
        self.last_kind = "llama-server"
        self.cluster = None  # a cluster target (planner/profile/cluster.py); self.hw is then its main host
        self.cluster_plan = None

    # ---- layout: one pane per tab (planner/tui/panes.py), styles in app.tcss ----
    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="hardware", id="tabs"):
            for tab_id, title, pane in PANES:
                with TabPane(title, id=tab_id), VerticalScroll():
                    yield from pane(self)
        yield Footer()

    def on_mount(self) -> None:
        self._progress_as_notices()
        t = self.query_one("#models", DataTable)
        t.add_columns("", "model", "params", "arch", "context", "released", "score", "use")
        self._fill_models("")
        self.query_one("#target").focus()  # the first tab's first field takes keys at once
        self.load_hardware()
        if self.model_name:
            self.load_model(self.model_name)

    # ---- helpers ----
    def _progress_as_notices(self) -> None:
        """What the planner says it is doing while the user waits (the CPU self-benchmark, run in the hardware
        worker) as a notice on the app's thread, for as long as the app runs (on_unmount takes it away)."""
        import logging
        app = self

        class Notice(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                from rich.markup import escape
                try:
                    app.call_from_thread(app.notify, escape(record.getMessage()), timeout=15)
                except Exception:  # noqa: BLE001 - the app is closing: the message has no one to reach
                    self.handleError(record)

        log = logging.getLogger("planner")
        self._notice = Notice()
        log.addHandler(self._notice)
        log.setLevel(logging.INFO)
        log.propagate = False  # not also to the terminal under the app

    def on_unmount(self) -> None:
        import logging
        log = logging.getLogger("planner")
        log.removeHandler(getattr(self, "_notice", None))
        log.propagate = True

    FOCUS = {"hardware": "#target", "model": "#model-q", "goal": "#goal-sel", "plan": "#alts", "export": "#kind",
             "verify": "#source"}

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        self.query_one(self.FOCUS[tab]).focus()

    # what a message's CLI flags are called here
    FLAG_NAMES = (("add --force", "tick 'overwrite'"), ("--force", "'overwrite'"), ("--min-tps", "the min tok/s field"),
                  ("--min-ctx", "the context field"), ("--ctx", "the context field"), ("--quant", "the quant field"),
                  ("--target", "the box (F1)"), ("--vram", "the VRAM field"), ("--ram", "the RAM field"),
                  ("--source-path", "the source file field"), ("--model-path", "the model file field"),
                  ("--emit", "the export kind"), ("--own-mix", "your own mix in the plan's list"))

    def _here(self, msg: str) -> str:
        """A message in the wizard's terms: its fields, not the CLI's flags."""
        for flag, here in self.FLAG_NAMES:
            msg = msg.replace(flag, here)
        return msg

    def _error(self, exc: BaseException) -> None:
        from rich.markup import escape
        msg = str(exc) if isinstance(exc, PlannerError) else f"{type(exc).__name__}: {exc}"
        self.notify(escape(self._here(msg)), severity="error", timeout=8)

    def _fill_models(self, q: str) -> None:
        """The catalog as `plan models` filters it: words, and use:/family:/license:/size:/after: filters."""
        from planner.model.catalog import not_modeled, parse_filter, select, spec_for
        t = self.query_one("#models", DataTable)
        t.clear()
        for e in select(parse_filter(q))[:60]:
            mark = "" if e.checked else "?"
            score = f"{e.quality.score:g}" if e.quality else ""
            if not_modeled(e.id):
                t.add_row(mark, e.id, "", "not modeled", "", e.released, score, ", ".join(e.use[:2]), key=e.id)
                continue
            s = spec_for(e.id)
            t.add_row(mark, e.id, f"{s.n_params / 1e9:.1f}B", s.architecture, f"{s.n_ctx_train:,}", e.released, score,
                      ", ".join(e.use[:2]), key=e.id)

    # ---- hardware ----
    def load_hardware(self) -> None:
        """Read the hardware fields here, on the app's thread; resolve the box in a worker."""
        vram = self.query_one("#vram", Input).value.strip() or None
        ram = self.query_one("#ram", Input).value.strip()
        self._hardware_worker(self.target, vram, ram)

    @work(thread=True, exclusive=True, group="hw")
    def _hardware_worker(self, target: str, vram: str | None, ram: str) -> None:
        from planner.api import resolve_hardware
        from planner.profile.cluster import is_cluster, load_cluster
        from planner.views import cluster_text, profile_text
        try:
            if is_cluster(target):
                c = load_cluster(target)
                self.call_from_thread(self._show_hardware, c.main.profile, cluster_text(c), c)
                return
            hw = resolve_hardware(target, vram_gib=vram, ram_gib=float(ram) if ram else None)
        except (PlannerError, ValueError) as exc:
            self.call_from_thread(self._error, exc)
            return
        self.call_from_thread(self._show_hardware, hw, profile_text(hw))

    def _show_hardware(self, hw, text: str, cluster=None) -> None:
        self.hw, self.cluster = hw, cluster
        self.query_one("#hw-text", Static).update(text)
        self.replan()

    @on(Select.Changed, "#target")
    def _target(self, ev: Select.Changed) -> None:
        self.target = str(ev.value)
        self.load_hardware()

    @on(Input.Submitted, "#vram")
    @on(Input.Submitted, "#ram")
    def _hw_override(self) -> None:
        self.load_hardware()

    # ---- model ----
    @on(Input.Changed, "#model-q")
    def _search(self, ev: Input.Changed) -> None:
        self._fill_models(ev.value.strip())

    @on(Input.Submitted, "#model-q")
    def _model_entered(self, ev: Input.Submitted) -> None:
        t = self.query_one("#models", DataTable)
        name = ev.value.strip()
        if t.row_count and not (os.path.sep in name or name.endswith(".gguf")):
            name = str(t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value)
        if name:
            self.load_model(name)

    @on(DataTable.RowSelected, "#models")
    def _model_row(self, ev: DataTable.RowSelected) -> None:
        self.load_model(str(ev.row_key.value))

    @work(thread=True, exclusive=True, group="model")
    def load_model(self, name: str) -> None:
        from planner.api import load_model
        from planner.views import model_text
        try:
            spec = load_model(name)
        except Exception as exc:  # noqa: BLE001 - shown in the app
            self.call_from_thread(self._error, exc)
            return
        self.call_from_thread(self._show_model, spec, model_text(spec))

    def _show_model(self, spec, text: str) -> None:
        self.spec = spec
        self.query_one("#model-info", Static).update(text)
        self.replan()
        self.action_tab("plan")

    # ---- goal ----
    @on(Select.Changed, "#goal-sel")
    @on(Select.Changed, "#quant")
    @on(Input.Changed, "#ctx")
    @on(Input.Changed, "#min-tps")
    def _goal(self) -> None:
        self.replan()

    def _request(self):
        from planner.estimate.programs import PROGRAMS
        from planner.optimize import PlanRequest
        ctx = self.query_one("#ctx", Input).value.strip()
        tps = self.query_one("#min-tps", Input).value.strip()
        quant = str(self.query_one("#quant", Select).value or "")
        kind = str(self.query_one("#kind", Select).value)
        return PlanRequest(goal=str(self.query_one("#goal-sel", Select).value),
                           n_ctx=int(ctx) if ctx.isdigit() and int(ctx) >= 256 else None,
                           min_tps=float(tps) if tps.replace(".", "", 1).isdigit() else None,
                           quant=quant or None, program=kind if kind in PROGRAMS else "llama-server")

    # ---- plan ----
    def replan(self) -> None:
        if self.spec is not None and self.hw is not None:
            self._plan_worker(self._request())

    @work(thread=True, exclusive=True, group="plan")
    def _plan_worker(self, req) -> None:
        from planner.api import plan, plan_runnable
        from planner.optimize.cluster import plan_cluster
        try:
            if self.cluster is not None:  # own mixes over the nodes (published files are planned for one box)
                cp = plan_cluster(self.spec, self.cluster, req)
                self.call_from_thread(self._show_plan, cp.result, None, cp)
                return
            res = plan(self.spec, self.hw, req)
            run = plan_runnable(self.spec, self.hw, req, res)
        except Exception as exc:  # noqa: BLE001 - shown in the app
            self.call_from_thread(self._error, exc)
            return
        self.call_from_thread(self._show_plan, res, run)

    def _rows(self) -> list[tuple]:
        """(option, published file ref or None, where it comes from): the published files first, then the own mix."""
        rows = [(p.option, p.file.ref, "published") for p in self.run_plan.published] if self.run_plan else []
        if self.result and self.result.best:
            alts = [] if self.cluster_plan else self.result.alternatives  # a cluster plan: the chosen split only
            rows += [(o, None, "own mix") for o in [self.result.best, *alts]]
        return rows

    def _show_plan(self, res, run=None, cluster_plan=None) -> None:
        self.result, self.run_plan, self.cluster_plan = res, run, cluster_plan
        body = self.query_one("#plan-body", Static)
        alts = self.query_one("#alts", DataTable)
        alts.clear(columns=True)
        rows = self._rows()
        if not rows:
            self.choice = self.choice_ref = None
            near = "\n  ".join(run.nearest) if run and run.nearest else ""
            body.update(f"{self.spec.name} does not fit {self.hw.name}: {res.nearest}"
                        + (f"\nthe nearest things that do:\n  {near}" if near else ""))
            self._show_export()
            return
        alts.add_columns("option", "file", "bits/w", "context", "tok/s", "KLD")
        for i, (o, ref, kind) in enumerate(rows):
            alts.add_row(o.label if kind == "own mix" else kind, (ref or "your own mix")[-44:],
                         f"{o.bits_per_weight:.2f}", f"{o.options.n_ctx:,}", f"{o.estimate.throughput.decode_tps:.1f}",
                         f"{o.predicted_kld:.4f}", key=str(i))
        self._select(*rows[0][:2])

    def _select(self, opt, ref: str | None = None) -> None:
        self.choice, self.choice_ref = opt, ref
        e = opt.estimate
        up = self.run_plan.upgrade if self.run_plan and ref is None and self.run_plan.published else None
        lines = [f"{self.spec.name} on {self.hw.name} — {ref or 'your own mix: ' + opt.label}", opt.why]
        if up is not None:
            lines.append(("worth making: " if up.worth_it else "") + up.why)
        lines += ["",
                 "memory   █ weights ▓ KV ▒ compute ░ overhead · free"]
        lines += [memory_bar(d) for d in e.devices]
        lines += ["", f"decode {e.throughput.decode_tps:.1f} tok/s   prefill {e.throughput.prefill_tps:.0f} tok/s   "
                      f"context {opt.options.n_ctx:,}   predicted KLD {opt.predicted_kld:.4f}   "
                      f"{'FITS' if e.fits else 'DOES NOT FIT'}", layer_map(self.spec, opt.types)]
        self.query_one("#plan-body", Static).update("\n".join(lines))
        self._show_export()

    @on(DataTable.RowSelected, "#alts")
    def _alt(self, ev: DataTable.RowSelected) -> None:
        self._select(*self._rows()[int(str(ev.row_key.value))][:2])

    # ---- export ----
    def _export_text(self) -> str | None:
        """The export of the chosen row: a published file's lines name it; llama-quantize makes the own mix only."""
        if self.choice is None:
            return None
        from planner.export import planned_file, render
        kind = str(self.query_one("#kind", Select).value)
        path = self.query_one("#model-path", Input).value.strip()
        src = self.query_one("#source-path", Input).value.strip() or None
        if self.choice_ref and kind == "llama-quantize":
            return ("# a published file is downloaded as it is, nothing to quantize: pick your own mix in the plan's "
                    "list (F4) for its llama-quantize line\n")
        path = path or self.choice_ref or planned_file(self.spec, self.choice)[0]
        if self.cluster_plan is not None:
            return self._cluster_export(kind, path)
        if kind == "rpc-server":
            return "# rpc-server lines are a cluster's (pick a cluster in F1)\n"
        try:
            legacy = self.query_one("#legacy", Checkbox).value  # -ngl 999, --no-mmap/--mlock: builds before b10114
            return render(kind, self.choice, self.spec, path, threads=self.hw.cpu.cores, src=src, legacy=legacy)
        except PlannerError as exc:
            return f"# {self._here(str(exc))}\n"

    def _cluster_export(self, kind: str, path: str) -> str:
        import json

        import yaml

        from planner.export import cluster as cx
        cp, threads = self.cluster_plan, self.hw.cpu.cores
        if kind in ("json", "yaml"):
            d = cx.cluster_dict(cp, self.spec, path, threads)
            return json.dumps(d, indent=1) + "\n" if kind == "json" else yaml.safe_dump(d, sort_keys=False)
        if kind not in ("llama-server", "llama-cli", "rpc-server"):
            return f"# {kind} is for one machine: a cluster plan exports rpc-server, llama-server, llama-cli, json, yaml\n"
        ls = cx.lines(cp, self.spec, path, threads, binary="llama-server" if kind == "rpc-server" else kind)
        ls = ls[:-1] if kind == "rpc-server" else ls
        return "".join(f"# on {node}\n{line}\n" for node, line in ls) + "".join(f"# {n}\n" for n in cx.copy_notes(cp))

    @on(Select.Changed, "#kind")
    def _kind(self) -> None:
        """A new kind re-plans for its program (estimate/programs.py) and takes its own default file name."""
        kind = str(self.query_one("#kind", Select).value)
        p = self.query_one("#path", Input)
        if not p.value or p.value == file_name(self.last_kind):
            p.value = file_name(kind)
        self.last_kind = kind
        self._show_export()
        self.replan()

    @on(Input.Changed, "#model-path")
    @on(Input.Changed, "#source-path")
    @on(Checkbox.Changed, "#legacy")
    def _show_export(self) -> None:
        text = self._export_text()
        self.query_one("#export-text", Static).update(text if text is not None else "no plan yet")
        if text is not None:
            p = self.query_one("#path", Input)
            if not p.value:
                p.value = file_name(str(self.query_one("#kind", Select).value))

    def action_save(self) -> None:
        from planner.fileio import write_text
        text = self._export_text()
        path = self.query_one("#path", Input).value.strip()
        if text is None or not path:
            self.notify("nothing to save: pick a model and a file name", severity="warning")
            return
        try:
            write_text(path, text, self.query_one("#force", Checkbox).value)
        except PlannerError as exc:
            self._error(exc)
            return
        self.notify(f"wrote {path}")

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        self.action_save()

    @on(Button.Pressed, "#copy")
    def _copy(self) -> None:
        text = self._export_text()
        if text:
            self.copy_to_clipboard(text)
            self.notify("copied to the clipboard (terminals with OSC 52)")

    # ---- verify ----
    @on(Button.Pressed, "#run-verify")
    def _verify(self) -> None:
        if self.choice is None:
            self.notify("no plan to verify yet", severity="warning")
            return
        self.query_one("#verify-out", Static).update("running…")
        # widgets are read here, on the app's thread; the worker only posts updates back
        self._verify_worker(self.query_one("#source", Input).value.strip() or None,
                            self.query_one("#progress", ProgressBar), self.query_one("#verify-out", Static))

    @work(thread=True, exclusive=True, group="verify")
    def _verify_worker(self, source: str | None, bar: ProgressBar, out: Static) -> None:
        import importlib.util

        from planner.api import verify
        if importlib.util.find_spec("llama_cpp") is None:
            msg = 'verify loads the plan with llama.cpp: install it with pip install "planner[verify]" (in the ' \
                  'source folder: pip install ".[verify]"), then run verify again'
            self.call_from_thread(self._error, PlannerError(msg))
            self.call_from_thread(out.update, msg)
            return
        from planner.profile.targets import resolve_target
        from planner.verify.run import report_text
        steps = {"twin": (0, 40), "quantize": (0, 40), "load": (40, 80), "quality": (80, 100)}

        def step(name: str, done: int, total: int, detail: str) -> None:
            lo, hi = steps.get(name, (0, 100))
            self.call_from_thread(bar.update, progress=lo + (hi - lo) * done / max(total, 1))

        try:
            rep = verify(self.spec, self.choice.types, self.choice.options, resolve_target("auto"), source=source,
                         twin=source is None, margin=self.choice.estimate.margin, pp=128, tg=32, reps=1, step=step)
            text = report_text(rep)
        except Exception as exc:  # noqa: BLE001 - shown in the app
            self.call_from_thread(self._error, exc)
            text = f"verify failed: {exc}"
        self.call_from_thread(bar.update, progress=100)
        self.call_from_thread(out.update, text)


def run(model: str | None = None, target: str = "auto") -> int:
    PlannerApp(model, target).run()
    return 0
