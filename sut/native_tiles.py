"""The native matmul's tile shape, chosen at run time for the CPU at hand.

``sut/decode_step.c`` computes a tile of TR rows x TV vectors of outputs with TR x TV accumulator
registers; the best shape depends on the vector width (AVX2: 16 registers of 8 floats; AVX-512: 32
of 16) and on the core (load ports, FMA latency). A shape tuned on one CPU lost a quarter of the
model FLOP/s on another, so nothing is fixed at build time: on first use on a machine each
candidate of the compiler's vector width is built (``-DTR= -DTV=``, cached by verifier.cbuild),
timed on the model's matmul shapes, interleaved, and the fastest is remembered in the build cache
(keyed by the sources, flags and CPU). ``NANO_CODEGEN_TILE=RxV`` forces one (e.g. ``6x2``).

A tile's shape changes no bits: every output is its bias then one fused multiply-add per input in
order, whatever tile computes it (tests/test_native_step.py compares the shapes bit for bit).
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

# (rows, vectors) per vector width: accumulators + vectors + one broadcast fit the register file
CANDIDATES: dict[int, list[tuple[int, int]]] = {
    1: [(4, 2)],
    8: [(4, 2), (6, 2), (4, 3), (3, 4), (8, 1)],            # 16 ymm registers
    16: [(8, 2), (12, 2), (8, 3), (6, 4), (4, 4)],          # 32 zmm registers
}
# the reference model's matmuls (in, out) at decode batch sizes: what a step spends its time on
SHAPES = [(128, 384), (128, 128), (128, 512), (512, 128)]
ROWS = (1, 32, 128)
ENV = "NANO_CODEGEN_TILE"


def parse(text: str) -> tuple[int, int]:
    """'6x2' -> (6, 2); ValueError naming the variable otherwise."""
    try:
        r, v = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"{ENV}={text!r}: give rows x vectors, e.g. 6x2") from None
    if not (1 <= r <= 12 and 1 <= v <= 4):
        raise ValueError(f"{ENV}={text!r}: rows 1..12, vectors 1..4")
    return r, v


def time_tile(lib: ctypes.CDLL, repeats: int = 3) -> float:
    """Seconds ``lib``'s linear_packed takes over SHAPES x ROWS (best of ``repeats``), on random data."""
    import torch  # noqa: PLC0415 - the engine imports torch anyway; this module is light without it

    g = torch.Generator().manual_seed(0)
    cases = []
    for K, N in SHAPES:
        w, b = torch.randn(K * N, generator=g), torch.randn(N, generator=g)
        for n in ROWS:
            cases.append((torch.randn(n, K, generator=g), w, b, torch.empty(n, N), n, K, N))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for x, w, b, y, n, K, N in cases:
            lib.linear_packed(x.data_ptr(), n, K, w.data_ptr(), b.data_ptr(), N, y.data_ptr())
        best = min(best, time.perf_counter() - t0)
    return best


def choose(vector_width: int, build: Callable[[tuple[int, int]], ctypes.CDLL], cache_key: str,
           cache_dir: Path, rounds: int = 5) -> tuple[tuple[int, int], dict[str, float]]:
    """The tile to use and each candidate's time (ms): forced by ENV, remembered, or measured now."""
    forced = os.environ.get(ENV)
    if forced:
        return parse(forced), {}
    cands: Sequence[tuple[int, int]] = CANDIDATES.get(vector_width, CANDIDATES[1])
    record = cache_dir / f"tile-{hashlib.sha256(cache_key.encode()).hexdigest()[:16]}.json"
    try:
        saved = json.loads(record.read_text())
        return tuple(saved["tile"]), saved["ms"]   # type: ignore[return-value]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    libs = {c: build(c) for c in cands}
    ms = {c: float("inf") for c in cands}
    for _ in range(rounds):                       # interleaved, so a noisy neighbour hurts all alike
        for c, lib in libs.items():
            ms[c] = min(ms[c], 1000 * time_tile(lib, repeats=1))
    tile = min(cands, key=lambda c: ms[c])
    times = {f"{r}x{v}": round(t, 3) for (r, v), t in ms.items()}
    log.info("native matmul tile for this CPU: %dx%d (ms over the model's shapes: %s)", *tile, times)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = record.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"tile": list(tile), "ms": times}))
        os.replace(tmp, record)
    except OSError as e:
        log.warning("could not remember the tile choice in %s: %s", cache_dir, e)
    return tile, times
