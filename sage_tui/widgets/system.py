"""The system panel: GPUs (utilisation, VRAM, temperature, power, per-process memory
with our engines marked), the engine's torch memory, CPU, RAM and the workspace disk,
with short history sparklines. Without NVML the GPU part says so and the rest works."""

from __future__ import annotations

from collections import deque

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from sage_tui.data import SystemSnapshot
from sage_tui.format import bar, number, sparkline

HISTORY_POINTS = 120


def _gb(mb: float | None) -> str:
    return "-" if mb is None else f"{mb / 1024:.1f}"


class SystemPanel(Static):
    DEFAULT_CSS = """
    SystemPanel { height: auto; padding: 0 1; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("reading system figures…", **kwargs)
        # The panel's own recent samples, for sparklines when no run history exists.
        self.own_history: dict[str, deque] = {}
        self.snapshot: SystemSnapshot | None = None

    def show(self, snapshot: SystemSnapshot) -> None:
        self.snapshot = snapshot
        live = dict(snapshot.live)
        for gpu in snapshot.gpus:
            live[f"gpu{gpu.index}_util_pct"] = gpu.util_pct
            live[f"gpu{gpu.index}_mem_used_mb"] = gpu.mem_used_mb
        for key, value in live.items():
            if value is not None:
                self.own_history.setdefault(key, deque(maxlen=HISTORY_POINTS)).append(value)
        self.update(self.render_snapshot(snapshot))

    def history(self, key: str) -> list[float]:
        recorded = self.snapshot.history.get(key) if self.snapshot else None
        return list(recorded) if recorded else list(self.own_history.get(key, ()))

    def spark(self, key: str, low: float | None = None, high: float | None = None) -> str:
        width = max(8, min(40, self.size.width - 52))
        return sparkline(self.history(key), width, low, high)

    def render_snapshot(self, snapshot: SystemSnapshot) -> Group:
        lines: list[Text] = [Text("GPUs", style="bold")]
        if not snapshot.gpus:
            lines.append(Text(f"  no GPU panel: {snapshot.nvml_reason}", style="yellow"))
        for gpu in snapshot.gpus:
            lines.append(self.gpu_line(gpu))
            used, total = gpu.mem_used_mb, gpu.mem_total_mb
            fraction = used / total if used is not None and total else None
            power = f"{number(gpu.power_w, 3)}/{number(gpu.power_limit_w, 3)} W"
            temp = f"{gpu.temp_c:.0f}°C" if gpu.temp_c is not None else "-"
            lines.append(Text(f"       VRAM {_gb(used)}/{_gb(total)} GB {bar(fraction, 10)}  "
                              f"{temp}  {power}  "
                              f"{self.spark(f'gpu{gpu.index}_mem_used_mb', 0, total)}"))
            for proc in sorted(gpu.processes, key=lambda p: -p.used_mb):
                run_id = snapshot.our_pids.get(proc.pid)
                mark = f"  ◀ engine of run {run_id}" if run_id is not None else ""
                lines.append(Text(f"       pid {proc.pid:<8} {_gb(proc.used_mb)} GB{mark}",
                                  style="bold green" if mark else ""))
        if snapshot.engine:
            gauges = "  ".join(f"{name} {_gb(snapshot.engine.get(f'torch_{name}_mb'))} GB"
                               for name in ("allocated", "reserved", "peak"))
            lines.append(Text(f"Engine torch  {gauges}", style="bold"))
        if snapshot.engines:
            lines.append(Text("Engines (this host)", style="bold"))
            for usage in snapshot.engines:
                cpu = f"{usage.cpu_pct:5.0f}%" if usage.cpu_pct is not None else "    -%"
                lines.append(Text(f"  run {usage.run_id:<5} pid {usage.pid:<8} CPU {cpu}  "
                                  f"RAM {usage.rss_mb:,.0f} MB"))
        live = snapshot.live
        cpu = live.get("cpu_pct")
        lines.append(Text(f"CPU  {number(cpu, 3):>5}%   {bar(cpu / 100 if cpu is not None else None, 10)}  "
                          f"{self.spark('cpu_pct', 0, 100)}"))
        used, total = live.get("ram_used_gb"), live.get("ram_total_gb")
        lines.append(Text(f"RAM  {number(used, 3)}/{number(total, 3)} GB  "
                          f"{bar(used / total if used is not None and total else None, 10)}  "
                          f"{self.spark('ram_used_gb', 0, total)}"))
        used, total = live.get("disk_used_gb"), live.get("disk_total_gb")
        if total:
            lines.append(Text(f"Disk {number(used, 3)}/{number(total, 3)} GB  "
                              f"{bar(used / total, 10)}  (workspace)"))
        return Group(*lines)

    def gpu_line(self, gpu) -> Text:
        util = gpu.util_pct
        return Text(f"  GPU{gpu.index} {gpu.name[:22]:<22} util {number(util, 3):>4}% "
                    f"{bar(util / 100 if util is not None else None, 10)}  "
                    f"{self.spark(f'gpu{gpu.index}_util_pct', 0, 100)}")
