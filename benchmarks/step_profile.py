"""Where one decode step of the torch backend spends its time (torch.profiler), beside the native step's time.

    python -m benchmarks.step_profile                    # batch 1 and 32, context 64
    python -m benchmarks.step_profile --batch 1 --rows 12

The engine_bench figures say how fast a step is; this says why the torch backend is slower than
the native one: per-operator self time of ``BatchModel.step`` (``backend="torch"``) with decode
rows only, on random weights of the shipped checkpoint's shape. The native step is one call, so
the profiler has nothing to split there: its time per step is printed beside.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from benchmarks.bench_util import random_model
from sut.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from sut.engine.batch import BatchModel
from sut.platform_info import cpu_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.step_profile", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="decode rows per step")
    p.add_argument("--context", type=int, default=64, help="tokens already in each row's cache")
    p.add_argument("--steps", type=int, default=200, help="timed steps (the profile covers a quarter of them)")
    p.add_argument("--rows", type=int, default=15, help="operators shown per table")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    shipped, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT, "cpu")     # its shape and tokenizer
    model = random_model(shipped.config, tok, "cpu")
    print(f"machine: {cpu_model(detail=True)}, torch {torch.__version__}, {a.threads} thread(s)")
    for n in a.batch:
        dec = [(s, 7, 0, a.context) for s in range(n)]
        ms = {}
        with torch.inference_mode():
            for backend in ("native", "torch"):
                bm = BatchModel(model, n, backend=backend)
                for s in range(n):
                    bm.step([], [(s, [5] * a.context, [0] * a.context, 0)])
                for _ in range(20):
                    bm.step(dec, [])
                t0 = time.perf_counter()
                for _ in range(a.steps):
                    bm.step(dec, [])
                ms[backend] = (time.perf_counter() - t0) / a.steps * 1e3
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(max(a.steps // 4, 1)):
                    bm.step(dec, [])
        print(f"\nbatch {n}: torch backend {ms['torch']:.2f} ms per decode step ({n / ms['torch'] * 1e3:.0f} tokens/s); "
              f"native step {ms['native']:.2f} ms ({n / ms['native'] * 1e3:.0f} tokens/s)")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
