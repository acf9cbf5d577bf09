"""Describe the machine a run happened on: the MLPerf ``systems/<system>.json`` fields."""
from __future__ import annotations

import os
import platform
import re
from importlib import metadata
from typing import Any

from sut.platform_info import cpu_model


def memory_gib() -> float:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
        return round(pages * size / 2**30, 1)
    except (ValueError, OSError):
        return 0.0


def accelerator(device: str) -> tuple[str, int]:
    if not device.startswith("cuda"):
        return "N/A", 0
    import torch

    if not torch.cuda.is_available():
        return "N/A", 0
    return torch.cuda.get_device_name(0), torch.cuda.device_count()


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


def default_system_name(device: str = "cpu") -> str:
    """e.g. ``AMD_EPYC_2c_cpu``: readable, filesystem-safe, different per machine class."""
    acc, n = accelerator(device)
    base = acc if n else cpu_model()
    slug = re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_")[:40] or "unknown"
    return f"{slug}_{n}x_gpu" if n else f"{slug}_{os.cpu_count()}c_cpu"


def describe_system(system_name: str, device: str, isolation: str, division: str = "open") -> dict[str, Any]:
    acc, n = accelerator(device)
    return {
        "division": division,
        "submitter": os.environ.get("USER", "unknown"),
        "status": "research",
        "system_name": system_name,
        "system_type": "datacenter" if n else "edge",
        "number_of_nodes": 1,
        "host_processor_model_name": cpu_model(),
        "host_processors_per_node": 1,
        "host_processor_core_count": os.cpu_count(),
        "host_memory_capacity": f"{memory_gib()} GiB",
        "accelerator_model_name": acc,
        "accelerators_per_node": n,
        "framework": f"PyTorch {_version('torch')}",
        "operating_system": f"{platform.system()} {platform.release()}",
        "other_software_stack": {
            "python": platform.python_version(),
            "mlcommons-loadgen": _version("mlcommons-loadgen"),
            "tokenizers": _version("tokenizers"),
            "verifier_isolation": isolation,
        },
    }
