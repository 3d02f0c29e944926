"""Machine state for the system_samples table and the dashboard's system panel.

Shared by the engine (which records samples while it runs, so a run's history exists
even when no dashboard was open) and the dashboard (live view). NVML is optional:
without a driver or GPU, ``gpus()`` returns no GPUs and a reason.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_nvml_lock = threading.Lock()
_nvml_state: dict = {"ready": None, "reason": ""}


@dataclass
class GpuProcess:
    pid: int
    used_mb: float


@dataclass
class GpuInfo:
    index: int
    name: str
    util_pct: float | None
    mem_used_mb: float | None
    mem_total_mb: float | None
    temp_c: float | None
    power_w: float | None
    power_limit_w: float | None
    processes: list[GpuProcess] = field(default_factory=list)


def _nvml():
    """The pynvml module, initialised once; None (with the reason kept) without NVML."""
    with _nvml_lock:
        if _nvml_state["ready"] is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_state.update(ready=pynvml, reason="")
            except Exception as exc:  # no library, no driver, no GPU: all mean "no GPU panel"
                _nvml_state.update(ready=False, reason=f"NVML unavailable ({type(exc).__name__}: {exc})")
        return _nvml_state["ready"] or None


def nvml_reason() -> str:
    _nvml()
    return _nvml_state["reason"]


def _safe(fn, *args, scale: float = 1.0):
    try:
        return fn(*args) / scale
    except Exception:  # one unsupported field reads N/A, never a crash
        return None


def gpus() -> list[GpuInfo]:
    nvml = _nvml()
    if nvml is None:
        return []
    result = []
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception:
        return []
    for i in range(count):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        try:
            name = nvml.nvmlDeviceGetName(handle)
            name = name.decode() if isinstance(name, bytes) else name
        except Exception:
            name = f"GPU {i}"
        util = mem = None
        try:
            util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:
            pass
        try:
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
        except Exception:
            pass
        procs = []
        try:
            for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                procs.append(GpuProcess(p.pid, (p.usedGpuMemory or 0) / 2**20))
        except Exception:
            pass
        result.append(GpuInfo(
            index=i, name=name, util_pct=util,
            mem_used_mb=mem.used / 2**20 if mem else None,
            mem_total_mb=mem.total / 2**20 if mem else None,
            temp_c=_safe(nvml.nvmlDeviceGetTemperature, handle, 0),
            power_w=_safe(nvml.nvmlDeviceGetPowerUsage, handle, scale=1000.0),
            power_limit_w=_safe(nvml.nvmlDeviceGetEnforcedPowerLimit, handle, scale=1000.0),
            processes=procs))
    return result


def sample_system(workspace: str | os.PathLike | None = None) -> dict[str, float]:
    """Flat figures for one system_samples row set: cpu_pct, ram_*, disk_*, gpuN_*."""
    vm = psutil.virtual_memory()
    sample = {
        "cpu_pct": psutil.cpu_percent(interval=None),
        "ram_used_gb": (vm.total - vm.available) / 2**30,
        "ram_total_gb": vm.total / 2**30,
    }
    if workspace is not None and Path(workspace).exists():
        disk = psutil.disk_usage(str(workspace))
        sample["disk_used_gb"] = disk.used / 2**30
        sample["disk_total_gb"] = disk.total / 2**30
    for gpu in gpus():
        for key in ("util_pct", "mem_used_mb", "mem_total_mb", "temp_c", "power_w"):
            value = getattr(gpu, key)
            if value is not None:
                sample[f"gpu{gpu.index}_{key}"] = value
    return sample
