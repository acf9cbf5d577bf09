"""benchmarks/engine_peers.py's parts: worker hosting (workers.py), the measured sections (sections.py), the
per-step breakdown (profile.py) and the tables and plot (report.py); what they all share is here."""
from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SECTIONS = ("decode", "agent", "offline", "sweep", "breakdown")
ENGINES = ("native", "vllm", "server")
LABELS = {"native": "native", "vllm": "vLLM", "server": "vLLM server"}
_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"[peers {time.perf_counter() - _T0:6.0f} s] {msg}", file=sys.stderr, flush=True)
