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
        self.choice = None  # the PlanOption shown

    # ---- layout: one pane per tab (planner/tui/panes.py), styles in app.tcss ----
    def compose(self) -> ComposeResult:
        yield Header()
        with TabbedContent(initial="hardware", id="tabs"):
            for tab_id, title, pane in PANES:
                with TabPane(title, id=tab_id), VerticalScroll():
                    yield from pane(self)
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one("#models", DataTable)
        t.add_columns("model", "params", "arch", "context", "use")
        self._fill_models("")
        self.load_hardware()
        if self.model_name:
            self.load_model(self.model_name)

    # ---- helpers ----
    FOCUS = {"hardware": "#target", "model": "#model-q", "goal": "#goal-sel", "plan": "#alts", "export": "#kind",
             "verify": "#source"}

    def action_tab(self, tab: str) -> None:
        self.query_one("#tabs", TabbedContent).active = tab
        self.query_one(self.FOCUS[tab]).focus()

    def _error(self, exc: BaseException) -> None:
        msg = str(exc) if isinstance(exc, PlannerError) else f"{type(exc).__name__}: {exc}"
        self.notify(msg, severity="error", timeout=8)

    def _fill_models(self, q: str) -> None:
        from planner.model.catalog import search, spec_for
        t = self.query_one("#models", DataTable)
        t.clear()
        for e in search(q or None)[:40]:
            s = spec_for(e.id)
            t.add_row(e.id, f"{s.n_params / 1e9:.1f}B", s.architecture, f"{s.n_ctx_train:,}", ", ".join(e.use[:2]),
                      key=e.id)

    # ---- hardware ----
    def load_hardware(self) -> None:
        """Read the hardware fields here, on the app's thread; resolve the box in a worker."""
        vram = self.query_one("#vram", Input).value.strip() or None
        ram = self.query_one("#ram", Input).value.strip()
        self._hardware_worker(self.target, vram, ram)

    @work(thread=True, exclusive=True, group="hw")
    def _hardware_worker(self, target: str, vram: str | None, ram: str) -> None:
        from planner.api import resolve_hardware
        from planner.views import profile_text
        try:
            hw = resolve_hardware(target, vram_gib=vram, ram_gib=float(ram) if ram else None)
        except (PlannerError, ValueError) as exc:
            self.call_from_thread(self._error, exc)
            return
        self.call_from_thread(self._show_hardware, hw, profile_text(hw))

    def _show_hardware(self, hw, text: str) -> None:
        self.hw = hw
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
    @on(Input.Changed, "#ctx")
    @on(Input.Changed, "#min-tps")
    def _goal(self) -> None:
        self.replan()

    def _request(self):
        from planner.optimize import PlanRequest
        ctx = self.query_one("#ctx", Input).value.strip()
        tps = self.query_one("#min-tps", Input).value.strip()
        return PlanRequest(goal=str(self.query_one("#goal-sel", Select).value),
                           n_ctx=int(ctx) if ctx.isdigit() and int(ctx) >= 256 else None,
                           min_tps=float(tps) if tps.replace(".", "", 1).isdigit() else None)

    # ---- plan ----
    def replan(self) -> None:
        if self.spec is not None and self.hw is not None:
            self._plan_worker(self._request())

    @work(thread=True, exclusive=True, group="plan")
    def _plan_worker(self, req) -> None:
        from planner.api import plan
        try:
            res = plan(self.spec, self.hw, req)
        except Exception as exc:  # noqa: BLE001 - shown in the app
            self.call_from_thread(self._error, exc)
            return
        self.call_from_thread(self._show_plan, res)

    def _show_plan(self, res) -> None:
        self.result = res
        body = self.query_one("#plan-body", Static)
        alts = self.query_one("#alts", DataTable)
        alts.clear(columns=True)
        if res.best is None:
            self.choice = None
            body.update(f"{self.spec.name} does not fit {self.hw.name}: {res.nearest}")
            self._show_export()
            return
        alts.add_columns("option", "bits/w", "context", "tok/s", "KLD", "placement")
        for i, o in enumerate([res.best, *res.alternatives]):
            alts.add_row(o.label, f"{o.bits_per_weight:.2f}", f"{o.options.n_ctx:,}",
                         f"{o.estimate.throughput.decode_tps:.1f}", f"{o.predicted_kld:.4f}", o.placement, key=str(i))
        self._select(res.best)

    def _select(self, opt) -> None:
        self.choice = opt
        e = opt.estimate
        lines = [f"{self.spec.name} on {self.hw.name} — {opt.label}", opt.why, "",
                 "memory   █ weights ▓ KV ▒ compute ░ overhead · free"]
        lines += [memory_bar(d) for d in e.devices]
        lines += ["", f"decode {e.throughput.decode_tps:.1f} tok/s   prefill {e.throughput.prefill_tps:.0f} tok/s   "
                      f"context {opt.options.n_ctx:,}   predicted KLD {opt.predicted_kld:.4f}   "
                      f"{'FITS' if e.fits else 'DOES NOT FIT'}", layer_map(self.spec, opt.types)]
        self.query_one("#plan-body", Static).update("\n".join(lines))
        self._show_export()

    @on(DataTable.RowSelected, "#alts")
    def _alt(self, ev: DataTable.RowSelected) -> None:
        opts = [self.result.best, *self.result.alternatives]
        self._select(opts[int(str(ev.row_key.value))])

    # ---- export ----
    def _export_text(self) -> str | None:
        if self.choice is None:
            return None
        from planner.export import planned_file, render
        kind = str(self.query_one("#kind", Select).value)
        path, _ = planned_file(self.spec, self.choice)
        return render(kind, self.choice, self.spec, path, threads=self.hw.cpu.cores)

    @on(Select.Changed, "#kind")
    def _show_export(self) -> None:
        text = self._export_text()
        self.query_one("#export-text", Static).update(text if text is not None else "no plan yet")
        if text is not None:
            kind = str(self.query_one("#kind", Select).value)
            p = self.query_one("#path", Input)
            if not p.value:
                p.value = file_name(kind)

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
        from planner.api import verify
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
