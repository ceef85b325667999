"""The wizard driven by textual's pilot: keys in, screen text out."""

from __future__ import annotations

import pytest

from planner.tui.app import PlannerApp


async def _settle(app, pilot) -> None:
    from textual.worker import WorkerCancelled
    for _ in range(40):
        await pilot.pause()
        try:
            await app.workers.wait_for_complete()
        except WorkerCancelled:  # a newer request superseded it (exclusive workers): by design
            continue
        if not any(w.is_running for w in app.workers):
            await pilot.pause()
            return


def _text(app, sel: str) -> str:
    return str(app.query_one(sel).render())


@pytest.mark.asyncio
async def test_whole_flow_search_plan_goal_export(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = PlannerApp(target="rtx4090")
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        assert "RTX 4090" in _text(app, "#hw-text")
        await pilot.press("f2")  # the tab's first field takes the keys
        await pilot.press(*"llama3.1-8b")
        await pilot.press("enter")
        await _settle(app, pilot)
        body = _text(app, "#plan-body")
        assert "llama3.1-8b on" in body and "FITS" in body and "tok/s" in body
        assert "bits per layer:" in body and "█" in body
        assert app.query_one("#alts").row_count >= 1
        # a goal change re-plans at once
        await pilot.press("f3", "tab")
        await pilot.press(*"32768")
        await _settle(app, pilot)
        assert "context 32,768" in _text(app, "#plan-body")
        # export: preview and save, never a silent overwrite
        await pilot.press("f5")
        await _settle(app, pilot)
        # the published file comes first, by the name llama.cpp's downloader takes
        text = _text(app, "#export-text")
        assert "llama-server -hf bartowski/" in text and "-c 32768" in text, text
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert (tmp_path / "llama-server.sh").read_text().startswith("llama-server")
        (tmp_path / "llama-server.sh").write_text("mine")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert (tmp_path / "llama-server.sh").read_text() == "mine"
        assert any("overwrite" in n.message and "--force" not in n.message for n in app._notifications)
        # another kind takes its own file name; the own mix (a row of the plan's list) has a llama-quantize line
        app.query_one("#kind").value = "ollama"
        await _settle(app, pilot)
        assert app.query_one("#path").value == "Modelfile" and "FROM hf.co/bartowski/" in _text(app, "#export-text")
        app.query_one("#kind").value = "llama-server"
        app.query_one("#legacy").value = True
        await _settle(app, pilot)
        assert "--load-mode" not in _text(app, "#export-text") and "-ngl 999" in _text(app, "#export-text")
        own = next(i for i, r in enumerate(app._rows()) if r[1] is None)
        app._select(*app._rows()[own][:2])
        app.query_one("#kind").value = "llama-quantize"
        await _settle(app, pilot)
        app._select(*next(r for r in app._rows() if r[1] is None)[:2])
        assert app.query_one("#path").value == "llama-quantize.sh"
        assert _text(app, "#export-text").startswith("llama-quantize")


@pytest.mark.asyncio
async def test_the_first_field_takes_keys_and_a_quant_can_be_pinned():
    app = PlannerApp(target="rtx4090", model="llama3.1-8b")
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        assert app.focused is not None and app.focused.id in ("target", "alts")
        app.query_one("#quant").value = "Q4_K_M"
        await _settle(app, pilot)
        rows = app._rows()
        assert rows and all(ref is None for _, ref, _ in rows)  # a pinned quant: the own mix at that ftype
        assert "Q4_K" in str(app.choice.types.values())


@pytest.mark.asyncio
async def test_bad_model_is_a_message_and_too_big_says_what_fits():
    app = PlannerApp(target="rtx4090")
    async with app.run_test(size=(80, 24)) as pilot:
        await _settle(app, pilot)
        app.query_one("#model-q").focus()
        await pilot.press(*"/nope/missing.gguf", "enter")
        await _settle(app, pilot)
        assert any("missing.gguf" in n.message for n in app._notifications)
        app.load_model("llama3.1-405b")
        await _settle(app, pilot)
        assert "does not fit" in _text(app, "#plan-body")


@pytest.mark.llama
@pytest.mark.asyncio
async def test_verify_tab_runs_a_twin(tmp_path, monkeypatch):
    monkeypatch.setenv("PLANNER_CACHE_DIR", str(tmp_path))
    app = PlannerApp(model="smollm2-135m", target="auto")
    async with app.run_test(size=(100, 40)) as pilot:
        await _settle(app, pilot)
        assert app.choice is not None
        await pilot.press("f6")
        await pilot.click("#run-verify")
        await _settle(app, pilot)
        out = _text(app, "#verify-out")
        assert "verify smollm2-135m" in out and "decode tok/s" in out, out


@pytest.mark.asyncio
async def test_verify_without_llama_cpp_python_says_how_to_install_it(monkeypatch):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    app = PlannerApp(model="smollm2-135m", target="laptop-16gb")
    async with app.run_test(size=(100, 40)) as pilot:
        await _settle(app, pilot)
        await pilot.press("f6")
        await pilot.click("#run-verify")
        await _settle(app, pilot)
        out = _text(app, "#verify-out")
        assert 'pip install ".[verify]"' in out and "Traceback" not in out


@pytest.mark.asyncio
async def test_a_cluster_target_plans_over_its_nodes_and_exports_each_nodes_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = PlannerApp(model="llama3.1-70b", target="two-3090-10gbe")
    async with app.run_test(size=(100, 30)) as pilot:
        await _settle(app, pilot)
        assert "cluster two-3090-10gbe" in _text(app, "#hw-text") and "worker 192.168.1.11:50052" in _text(
            app, "#hw-text")
        await _settle(app, pilot)
        body = _text(app, "#plan-body")
        assert "on den: RTX 3090" in body and "FITS" in body, body
        await pilot.press("f5")
        await _settle(app, pilot)
        text = _text(app, "#export-text")
        assert "# on den\nggml-rpc-server -H 192.168.1.11" in text and "--rpc 192.168.1.11:50052" in text, text
