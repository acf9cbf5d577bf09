"""How the engine groups decode rows into attention calls, against fixed runs of 16 slots, in one run.

    python -m benchmarks.attention_runs

``TorchStep._runs`` merges adjacent slots into one attention call while that is cheaper
than opening another (a fixed call cost against rows x the run's longest key length). The
baseline is the engine's earlier rule: runs of at most 16 slots, holes of up to 2 bridged.
Both rules give bitwise identical logits (tests/test_engine.py); this times a decode step
of ``BatchModel.step`` under each, interleaved rep by rep, on random weights of the shipped
checkpoint's shape. It also sweeps the call cost on mixed lengths.
"""
from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

import torch

from benchmarks.bench_util import random_model
from sut.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from sut.engine.batch import BatchModel
from sut.model.torch_step import KEY_ALIGN, TorchStep, round_up
from sut.platform_info import cpu_model

Runs = Callable[[list[int], list[int]], list[tuple[int, int]]]


def fixed_runs(rows: list[int], keys: list[int], gap: int = 2, most: int = 16) -> list[tuple[int, int]]:
    """The baseline: runs of at most ``most`` slots, holes of up to ``gap`` idle slots bridged."""
    runs = [[rows[0], rows[0] + 1]]
    for r in rows[1:]:
        if r - runs[-1][1] <= gap and r + 1 - runs[-1][0] <= most:
            runs[-1][1] = r + 1
        else:
            runs.append([r, r + 1])
    return [(lo, hi) for lo, hi in runs]


def time_rules(bm: BatchModel, ctx: list[int], rules: dict[str, Runs], reps: int, steps: int) -> dict[str, float]:
    """Best ms per decode step of ``len(ctx)`` rows under each run rule, the rules interleaved."""
    dec = [(s, 7, 0, c) for s, c in enumerate(ctx)]
    best = {name: float("inf") for name in rules}
    with torch.inference_mode():
        for s, c in enumerate(ctx):
            bm.step([], [(s, [5] * c, [0] * c, 0)])
        for _ in range(reps):
            for name, rule in rules.items():
                bm._runs = rule  # type: ignore[method-assign]  # instance attribute shadows the staticmethod
                t = time.perf_counter()
                for _ in range(steps):
                    bm.step(dec, [])
                best[name] = min(best[name], (time.perf_counter() - t) / steps * 1e3)
    return best


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.attention_runs", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[8, 32, 128])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    shipped, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT, "cpu")
    model = random_model(shipped.config, tok, "cpu")
    print(f"machine: {cpu_model(detail=True)}, torch {torch.__version__}, {a.threads} thread(s)")
    print(f"{'batch':>5} {'lengths':>14} {'fixed 16':>9} {'engine':>8} {'fixed/engine':>13}")
    rules: dict[str, Runs] = {"fixed": fixed_runs, "engine": TorchStep._runs}
    for n in a.batch:
        rng = random.Random(0)
        for label, ctx in (("all 128", [128] * n), ("mixed 20-300", [rng.randint(20, 300) for _ in range(n)])):
            t = time_rules(BatchModel(model, n), ctx, rules, a.reps, a.steps)
            print(f"{n:>5} {label:>14} {t['fixed']:>7.2f}ms {t['engine']:>6.2f}ms {t['fixed'] / t['engine']:>12.2f}x")
    n = max(a.batch)
    ctx = [random.Random(0).randint(20, 300) for _ in range(n)]
    keys = [min(round_up(c + 1, KEY_ALIGN), shipped.config.block_size) for c in ctx]
    costs = (0, 128, 512, 2048, 8192)
    sweep: dict[str, Runs] = {str(c): (lambda rows, ks, c=c: TorchStep._runs(rows, ks, c)) for c in costs}
    t = time_rules(BatchModel(model, n), ctx, sweep, a.reps, a.steps)
    print(f"\ncall cost sweep, batch {n}, mixed lengths (the engine uses 512):")
    for c in costs:
        print(f"  {c:>5} row-keys: {len(TorchStep._runs(list(range(n)), keys, c)):>4} calls a layer, "
              f"{t[str(c)]:.2f} ms a step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
