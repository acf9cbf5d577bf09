"""The native matmul's tile shape, chosen at run time for the CPU and the model at hand.

``sut/engine/native/decode_step.c`` builds every tile shape of its vector width into one library (AVX-512:
8x2, 12x2, 14x2, 8x3, 6x4, 4x4 rows x vectors; AVX2: 4x2, 6x2, 5x2, 4x3, 3x4). Which is fastest
depends on the core (registers, load ports, FMA latency, cache sizes), and a shape tuned on one
CPU lost a quarter of the model FLOP/s on another, so nothing is fixed at build time: the first
time a model's matmul shapes meet a machine, each kernel is timed on those shapes at 1, 32 and
128 rows, interleaved, the best of 9 calls each (about 0.1-0.3 s for the reference model), and the
fastest is remembered in the build cache beside the library (keyed by the library, hence the
sources, flags and CPU, and by the shapes). ``NANO_CODEGEN_TILE=6x2`` forces a shape this build
has (another is ignored with a warning).

A tile changes no bits: every output is its bias then one fused multiply-add per input in
order, whatever tile computes it (tests/test_native_step.py compares them all bit for bit).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sut.engine.native import library as native
from sut.platform_info import cpu_model
from verifier import cbuild

log = logging.getLogger(__name__)
ENV = "NANO_CODEGEN_TILE"
ROWS = (1, 32, 128)      # the rows of a step the timing covers: one sequence, a batch, a full Offline batch
Shapes = tuple[tuple[int, int, int], ...]   # (in, out, calls per step) of each distinct matmul


@dataclass(frozen=True)
class Choice:
    """The kernel a model's steps run: its index in the library, its tile, how it was chosen, and each
    candidate's time (ms over the shapes; empty when forced)."""
    kernel: int
    tile: str
    chosen_by: str
    ms: dict[str, float] = field(default_factory=dict)

    def info(self) -> dict[str, Any]:
        """What engine stats and engine_bench report: the CPU, the ISA and the tile."""
        return {"cpu": cpu_model(detail=True), "isa": native.isa(), "vector_width": native._load().vector_width(),
                "tile": self.tile, "chosen_by": self.chosen_by, "candidates_ms": dict(self.ms)}


_chosen: dict[tuple[str, Shapes], Choice] = {}


def choose(shapes: Shapes, cache_dir: Path | None = None, rounds: int = 9) -> Choice:
    """The kernel for matmuls of ``shapes`` on this machine: forced by ``NANO_CODEGEN_TILE``, remembered
    (this process, then the build cache), or timed now and remembered."""
    lib, names = native._load(), native.tiles()
    forced = os.environ.get(ENV, "").strip().lower()
    if forced:
        if forced in names:
            return Choice(names.index(forced), forced, ENV)
        log.warning("%s=%s is not a tile of this %s build (%s): timing them instead", ENV, forced, native.isa(),
                    ", ".join(names))
    key = (lib._name, tuple(shapes))
    if key in _chosen:
        return _chosen[key]
    record = (cache_dir or cbuild.cache_dir()) / f"tile-{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}.json"
    try:
        saved = json.loads(record.read_text())
        choice = Choice(names.index(saved["tile"]), saved["tile"], "cache", saved["ms"])
    except (OSError, ValueError, KeyError, TypeError):
        ms = time_kernels(shapes, rounds)
        best = min(ms, key=ms.__getitem__)
        choice = Choice(names.index(best), best, "timing", ms)
        log.info("native matmul tile for this CPU and model: %s (ms over its shapes: %s)", best, ms)
        _remember(record, {"tile": best, "ms": ms, "cpu": cpu_model(detail=True), "shapes": shapes})
    _chosen[key] = choice
    return choice


def time_kernels(shapes: Shapes, rounds: int = 9) -> dict[str, float]:
    """Milliseconds each built-in kernel takes for one step's matmuls of ``shapes`` at each of ROWS rows
    (random data). Each call's best of ``rounds``, interleaved call by call across the kernels, so
    that a busy spell on a shared machine hits every kernel alike and is then discarded."""
    lib, names = native._load(), native.tiles()
    g = torch.Generator().manual_seed(0)
    cases = []
    for K, N, calls in shapes:
        w, b = torch.randn(N, K, generator=g), torch.randn(N, generator=g)
        packed = [native.pack_panels(w, k) for k in range(len(names))]
        for n in ROWS:
            cases.append((packed, b, torch.randn(n, K, generator=g), torch.empty(n, N), n, K, N, calls))
    best = [[float("inf")] * len(cases) for _ in names]
    for _ in range(rounds):
        for i, (packed, b, x, y, n, K, N, calls) in enumerate(cases):
            for k in range(len(names)):
                t0 = time.perf_counter()
                lib.linear_packed(k, x.data_ptr(), n, K, packed[k].data_ptr(), b.data_ptr(), N, y.data_ptr())
                best[k][i] = min(best[k][i], time.perf_counter() - t0)
    return {name: round(1000 * sum(c[-1] * t for c, t in zip(cases, best[k])), 4) for k, name in enumerate(names)}


def _remember(record: Path, choice: dict[str, Any]) -> None:
    """Write the choice beside the library (atomically); a read-only cache only costs a retiming."""
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(choice))
        os.replace(tmp, record)
    except OSError as e:
        log.warning("could not remember the tile choice in %s: %s", record.parent, e)
