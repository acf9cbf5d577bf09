"""What CPU this is: every report and benchmark prints it beside its figures.

Lives in sut/ (the lowest package that may know about the host) so that harness/,
benchmarks/ and the trainer share one reader.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path


def machine_cpu_s() -> float:
    """Core-seconds every CPU of the machine has been busy (Linux /proc/stat: all but idle and iowait)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def cpu_model(detail: bool = False) -> str:
    """The CPU's model name; ``detail`` adds family/model numbers (VMs often report a terse name)."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()[:30]
        info = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in lines if ":" in line)}
        if "model name" in info:
            name = info["model name"]
            return f"{name} (family {info.get('cpu family', '?')}, model {info.get('model', '?')})" if detail else name
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    """The CPU's feature flags (/proc/cpuinfo), e.g. to key a ``-march=native`` build to what this
    CPU can run: two VMs may share a model name and expose different instruction sets."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()
