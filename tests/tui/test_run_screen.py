"""The run screen on a frozen workspace: grouped curves, smoothing, x axis, window,
overlay, the system panel with and without GPUs, events and config."""

from __future__ import annotations

import os

import pytest
from textual.widgets import SelectionList

from db import sysinfo
from db.processes import HOST
from db.store import Store
from sage_tui.app import SageApp
from sage_tui.widgets.run_tabs import LogTab
from sage_tui.screens.overlay import OverlayPicker
from sage_tui.screens.run import RunScreen
from sage_tui.widgets.curve import CurvePlot
from sage_tui.widgets.system import SystemPanel

from tests.tui.fixtures import FrozenClock, build_frozen_workspace
from tests.tui.helpers import wait_until


@pytest.fixture
def frozen(tmp_path):
    return build_frozen_workspace(tmp_path / "workspace")


async def open_run(app, pilot, run_id: int = 2) -> RunScreen:
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), timeout=10, what="the run screen")
    screen = app.screen
    await wait_until(pilot, lambda: screen.curves.series.get((run_id, "loss")) is not None
                     and screen.curves.series[(run_id, "loss")].steps, timeout=10, what="the loss curve")
    return screen


def plot_keys(screen) -> list[str]:
    return [plot.key for plot in screen.query(CurvePlot)]


async def test_curves_are_grouped_and_every_key_reaches_a_group(frozen):
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        assert plot_keys(screen) == ["loss", "loss_cosine", "loss_mse", "loss_task"]
        seen = set(plot_keys(screen))
        # Training-batch and held-out figures apart; the baseline is no plot of its own.
        for expected in (["train_cell_acc", "train_exact", "train_fg_acc"], ["val_cell_acc", "val_pass2"],
                         ["epoch", "grad_norm", "lr"], ["examples_per_s"]):
            await pilot.press("g")
            await wait_until(pilot, lambda: plot_keys(screen) == expected, timeout=5,
                             what=f"the group {expected}")
            await wait_until(pilot, lambda: all((2, k) in screen.curves.series for k in expected), timeout=5,
                             what="the group's series")
            seen |= set(expected)
        assert seen == set(screen.curves.keys) - {"val_baseline_cell_acc"}
        await pilot.press("g")
        assert plot_keys(screen)[0] == "loss"


async def test_latest_and_best_beside_each_plot(frozen):
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        loss = screen.curves.series[(2, "loss")]
        # Downsampled to two points per column, first and last kept, each bucket's
        # extremes kept: the best value survives.
        assert len(loss.steps) <= 2 * 80 + 2
        assert loss.steps[0] == 1 and loss.steps[-1] == 300
        with Store.open_readonly(frozen) as store:
            every = store.read_metrics_after(2, "loss")
        assert min(loss.values) == min(every.values)
        title = screen.query_one("#plot-loss", CurvePlot).title_text()
        assert title == f"loss  latest {every.values[-1]:.4g}  best {min(every.values):.4g}"


async def test_smoothing_x_axis_and_window_controls(frozen):
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        plot = screen.query_one("#plot-loss", CurvePlot)
        assert screen.curves.settings.smoothing == 0.6
        await pilot.press("plus", "plus", "plus", "plus")
        assert screen.curves.settings.smoothing == 0.99
        await pilot.press("minus")
        assert screen.curves.settings.smoothing == pytest.approx(0.89)
        await pilot.press("m")
        assert screen.curves.settings.smoothing == 0
        await pilot.press("m")
        assert screen.curves.settings.smoothing == pytest.approx(0.89)
        controls = str(screen.query_one("#curve-controls").render())
        assert "smooth 0.9" in controls

        await pilot.press("x")   # epoch: needs the epoch series
        await wait_until(pilot, lambda: (2, "epoch") in screen.curves.series, timeout=5, what="the epoch series")
        x, label = plot.x_values(plot.lines[0])
        assert label == "epoch" and x[-1] == pytest.approx(6.0)
        await pilot.press("x")
        x, label = plot.x_values(plot.lines[0])
        assert label == "minutes" and x[-1] == pytest.approx(299 * 2 / 60)
        await pilot.press("x")
        assert screen.curves.settings.x_axis == "step"

        await pilot.press("w")   # last 100 steps: read afresh from step 200
        assert screen.curves.settings.window == 100
        await wait_until(pilot, lambda: screen.curves.series.get((2, "loss")) is not None, timeout=5,
                         what="the windowed series")
        assert screen.curves.series[(2, "loss")].steps[0] == 200
        xs, _, _ = plot.points(plot.lines[0], plot.lines[0].series.values, 300 - 100)
        assert min(xs) >= 200


async def test_overlay_another_run(frozen):
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        await wait_until(pilot, lambda: app.run_rows, timeout=5, what="the runs")
        await pilot.press("o")
        assert isinstance(app.screen, OverlayPicker)
        options = app.screen.query_one(SelectionList)
        assert 2 not in [options.get_option_at_index(i).value for i in range(options.option_count)]
        await pilot.press("space")     # toggles the first: run 6
        await pilot.press("space")     # and back off
        app.screen.query_one(SelectionList).select(1)
        await pilot.press("enter")
        assert screen.curves.overlay_ids == [1]
        await wait_until(pilot, lambda: (1, "loss") in screen.curves.series, timeout=5, what="run 1's loss")
        plot = screen.query_one("#plot-loss", CurvePlot)
        await wait_until(pilot, lambda: len(plot.lines) == 2, timeout=5, what="two lines")
        assert [line.label for line in plot.lines] == ["run 2", "run 1"]
        assert "overlay:1" in str(screen.query_one("#curve-controls").render())


async def test_system_tab_without_nvml_says_so_and_shows_the_rest(frozen, monkeypatch):
    monkeypatch.setattr(sysinfo, "gpus", lambda: [])
    monkeypatch.setattr(sysinfo, "nvml_reason", lambda: "NVML unavailable (no driver)")
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        await pilot.press("2")
        panel = screen.query_one(SystemPanel)
        await wait_until(pilot, lambda: panel.snapshot is not None, timeout=10, what="the system panel")
        text = "\n".join(line.plain for line in panel.render_snapshot(panel.snapshot).renderables)
        assert "no GPU panel: NVML unavailable (no driver)" in text
        assert "CPU" in text and "RAM" in text and "Disk" in text
        assert "allocated 40.0 GB" in text          # the engine's torch gauges, from the database
        assert len(panel.snapshot.history["gpu0_util_pct"]) == 60   # history recorded by the engine


async def test_system_tab_marks_our_engine_among_gpu_processes(frozen, monkeypatch):
    # This test process plays the engine of run 2: same pid, host and start time.
    import psutil
    me = psutil.Process()
    with Store.open(frozen) as store:
        store.update_run(2, pid=os.getpid(), host=HOST, proc_start_time=me.create_time())
    fake = sysinfo.GpuInfo(0, "NVIDIA H100 80GB HBM3", 87.0, 61_000.0, 81_559.0, 64.0, 420.0, 700.0,
                           [sysinfo.GpuProcess(os.getpid(), 40_960.0), sysinfo.GpuProcess(1, 512.0)])
    monkeypatch.setattr(sysinfo, "gpus", lambda: [fake])
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        await pilot.press("2")
        panel = screen.query_one(SystemPanel)
        await wait_until(pilot, lambda: panel.snapshot is not None, timeout=10, what="the system panel")
        lines = [line.plain for line in panel.render_snapshot(panel.snapshot).renderables]
        text = "\n".join(lines)
        assert "GPU0 NVIDIA H100 80GB HBM3" in text and "util   87%" in text
        assert "VRAM 59.6/79.6 GB" in text and "64°C" in text and "420/700 W" in text
        ours = [line for line in lines if f"pid {os.getpid()}" in line]
        assert ours and "engine of run 2" in ours[0]
        theirs = [line for line in lines if "pid 1 " in line]
        assert theirs and "engine" not in theirs[0]
        # Per-engine CPU and memory (psutil), beside the GPU's per-process memory.
        await wait_until(pilot, lambda: any(u.cpu_pct is not None for u in panel.snapshot.engines),
                         timeout=10, what="a second CPU sample")
        lines = [line.plain for line in panel.render_snapshot(panel.snapshot).renderables]
        # This process's own line: its children (e.g. a multiprocessing helper an earlier
        # test started) are listed under the same run, as a torchrun rank would be.
        [usage] = [line for line in lines if line.startswith("  run 2") and "CPU" in line
                   and f"pid {os.getpid()} " in line]
        rss_mb = me.memory_info().rss / 2**20
        shown_mb = float(usage.split("RAM")[1].split("MB")[0].replace(",", ""))
        assert f"pid {os.getpid()}" in usage and abs(shown_mb - rss_mb) < 0.5 * rss_mb


async def test_events_and_config_tabs(frozen):
    app = SageApp(frozen, open_run=1, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot, run_id=1)
        await pilot.press("3")
        events = screen.query_one("#events")
        assert [line.text.split()[1] for line in events.lines] == ["started", "checkpoint", "finished"]
        await pilot.press("5")
        assert "lr = 0.003" in str(screen.query_one("#config").render())


async def test_checkpoints_key_reaches_the_app_hook(frozen, monkeypatch):
    opened = []
    monkeypatch.setattr(SageApp, "open_checkpoints", lambda self, run_id: opened.append(run_id))
    app = SageApp(frozen, open_run=1, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(app, pilot, run_id=1)
        await pilot.press("c")
        assert opened == [1]


def test_figures_are_grouped_by_where_they_were_measured():
    from sage_tui.data import baseline_key, keys_by_group

    keys = ["loss", "loss_task_cells", "train_cell_acc", "cell_acc", "val_pass2", "val_cell_acc",
            "val_baseline_cell_acc", "eval_pass2", "eval_baseline_pass2", "lr", "examples_per_s"]
    assert keys_by_group(keys) == {
        "losses": ["loss", "loss_task_cells"],
        "training": ["cell_acc", "train_cell_acc"],        # an older run's unprefixed batch figure
        "validation": ["val_cell_acc", "val_pass2"],
        "evaluation": ["eval_pass2"],
        "optimisation": ["lr"],
        "throughput": ["examples_per_s"],
    }
    assert baseline_key("val_cell_acc") == "val_baseline_cell_acc"
    assert baseline_key("eval_pass2") == "eval_baseline_pass2"
    # A test-time-training evaluation: one point per task.
    ttt = ["ttt_loss", "ttt_first_loss", "ttt_demo_exact", "ttt_task_score", "ttt_pass2", "ttt_pass1",
           "ttt_seconds", "ttt_steps", "ttt_rule"]
    assert keys_by_group(ttt) == {
        "losses": ["ttt_first_loss", "ttt_loss"],
        "training": ["ttt_demo_exact"],                    # the fit to the task's demonstrations
        "evaluation": ["ttt_pass1", "ttt_pass2", "ttt_rule", "ttt_task_score"],
        "throughput": ["ttt_seconds", "ttt_steps"],
    }
    assert baseline_key("train_cell_acc") is None and baseline_key("val_baseline_pass2") is None


async def test_overlay_picker_marks_checked_runs_without_colour(frozen):
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(app, pilot)
        await wait_until(pilot, lambda: app.run_rows, timeout=5, what="the runs")
        await pilot.press("o", "space")   # checks the first: run 6
        await pilot.pause()
        lines = [strip.text for strip in app.screen._compositor.render_strips()]
        checked = next(line for line in lines if "queued-next" in line)
        unchecked = next(line for line in lines if "baseline-tiny" in line)
        assert "[x]" in checked and "[ ]" in unchecked


def add_curve_cases_run(workspace) -> int:
    """A run with a no-learning baseline (val_baseline_cell_acc, as the engine logs it),
    a series that never changes, a rate and the learning rate."""
    rows = []
    for step in range(1, 101):
        rows += [("loss", step, 2.0 / step, 1000.0 + step), ("val_cell_acc", step, 0.5 + step / 400, 1000.0 + step),
                 ("val_baseline_cell_acc", step, 0.42, 1000.0 + step),
                 ("grad_scale", step, 0.33, 1000.0 + step), ("lr", step, 1e-3 * (1 - step / 200), 1000.0 + step)]
    with Store.open(workspace) as store:
        run = store.create_run("curve-cases", "train", {})
        store.update_run(run.id, status="finished", step=100, device="cpu")
        store.append_metrics(run.id, rows)
    return run.id


async def show_group(pilot, screen, key: str) -> CurvePlot:
    for _ in range(6):
        if key in plot_keys(screen):
            break
        await pilot.press("g")
        await pilot.pause(0.2)
    await wait_until(pilot, lambda: (screen.run_id, key) in screen.curves.series, timeout=5, what=key)
    await pilot.pause(0.2)
    return screen.query_one(f"#plot-{key}", CurvePlot)


def plot_text(plot: CurvePlot) -> str:
    return "\n".join(plot.render_line(y).text for y in range(plot.size.height))


async def test_a_baseline_key_is_a_labelled_line_on_its_figures_plot_not_a_plot(frozen):
    run_id = add_curve_cases_run(frozen)
    app = SageApp(frozen, open_run=run_id, clock=FrozenClock())
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_run(app, pilot, run_id=run_id)
        plot = await show_group(pilot, screen, "val_cell_acc")
        assert "val_baseline_cell_acc" not in plot_keys(screen)      # never a plot of its own
        assert "val_baseline_cell_acc" in screen.curves.keys
        await wait_until(pilot, lambda: plot.lines and plot.lines[0].baseline is not None, timeout=5,
                         what="the baseline on the plot")
        assert "baseline 0.42" in plot.title_text()
        assert "no-learning baseline" in plot_text(plot)
        # A rate sits on a fixed 0-1 axis.
        text = plot_text(plot)
        assert ".5" in text and ".75" in text


def test_figures_of_one_point_per_task_have_no_best():
    from sage_tui.widgets.curve import has_best

    assert has_best("loss") and has_best("val_pass2") and has_best("eval_pass2")
    assert not any(has_best(key) for key in ("lr", "epoch", "ttt_pass2", "ttt_loss", "ttt_demo_exact"))


async def test_constant_series_and_schedules_are_drawn_sensibly(frozen):
    run_id = add_curve_cases_run(frozen)
    app = SageApp(frozen, open_run=run_id, clock=FrozenClock())
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_run(app, pilot, run_id=run_id)
        plot = await show_group(pilot, screen, "grad_scale")
        title = plot.title_text()
        assert "(constant)" in title and "best" not in title
        text = plot_text(plot)
        assert "0.33" in text and "1.33" not in text and "-0.67" not in text
        lr = screen.query_one("#plot-lr", CurvePlot)
        assert "latest" in lr.title_text() and "best" not in lr.title_text()


async def test_curve_cursor_reads_each_runs_value_at_a_step_and_log_scale(frozen):
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        plot = screen.query_one("#plot-loss", CurvePlot)
        await pilot.press("left_square_bracket")   # the cursor starts at the last step
        assert plot.title_text().startswith("loss @ step 300: run 2 ")
        for _ in range(10):
            await pilot.press("left_square_bracket")
        step = plot.cursor_step()
        assert step < 300
        series = screen.curves.series[(2, "loss")]
        value = series.values[series.steps.index(step)]
        assert f"run 2 {value:.4g}" in plot.title_text()
        await pilot.press("escape")                 # hides the cursor, stays on the run
        assert isinstance(app.screen, RunScreen) and screen.curves.settings.cursor is None
        await pilot.press("L")
        assert screen.curves.settings.log_scale and "log y" in str(screen.query_one("#curve-controls").render())


async def test_curves_scroll_at_once_and_plots_fill_the_terminal(frozen):
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_run(app, pilot)
        await pilot.pause(0.3)
        scroll = screen.query_one("#plots-scroll")
        assert scroll.has_focus                      # no Tab needed
        await pilot.press("pagedown")
        await pilot.pause(0.2)
        assert scroll.scroll_y > 0
    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(160, 48)) as pilot:
        screen = await open_run(app, pilot)
        await pilot.pause(0.3)
        heights = {plot.size.height for plot in screen.query(CurvePlot)}
        assert min(heights) >= 15                    # two rows of plots share ~40 rows


async def test_log_tab_wraps_long_lines_and_follow_toggles(frozen):
    with Store.open_readonly(frozen) as store:
        log_path = frozen / store.get_run(4).log_path
    long_line = "2025-06-15 14:03:12 INFO engine: " + "x" * 200 + " END"
    log_path.write_text(log_path.read_text() + long_line + "\n")
    app = SageApp(frozen, open_run=4, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen), timeout=10, what="the run")
        screen = app.screen
        await pilot.press("l")
        await wait_until(pilot, lambda: "END" in screen.query_one(LogTab).text, timeout=10, what="the log")
        await pilot.pause(0.3)
        log = screen.query_one("#log")
        assert any(strip.text.rstrip().endswith("END") for strip in log.lines)   # wrapped, not cut
        assert "follow on" in str(screen.query_one("#log-controls").render())
        await pilot.press("f")
        assert not screen.query_one(LogTab).follow and "follow off" in str(screen.query_one("#log-controls").render())


async def test_help_names_every_key_of_the_run_screen_readably(frozen):
    from sage_tui.screens.help import HelpScreen

    app = SageApp(frozen, open_run=2, clock=FrozenClock())
    async with app.run_test(size=(80, 24)) as pilot:
        await open_run(app, pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        keys = app.screen.keys_table().columns[0]._cells
        assert "l, 4" in keys and "+, =" in keys and "q" in keys and "esc" in keys
        assert "[" in keys and "f" in keys and "v" in keys   # incl. the log tab's own keys
        assert not any("equals_sign" in k or "plus" in k for k in keys)
