"""Do the engine's two backends write the same code? Every attempt of every task, compared.

    python -m benchmarks.backend_agreement [--checkpoint DIR] [--count N]

Runs the engine over the evaluation tasks once with the native step and once with torch's
operators, and prints how many tasks' attempts differ, each run's pass@final and wall time, and
whether each run fails exactly the tasks the checkpoint's recorded reference
(``sut.evaluate --record``: ``run_agent``, metrics.json ``eval.failed_final``) failed. docs/engine.md
quotes it for both shipped checkpoints.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from benchmarks.engine_bench import run_engine
from sut.agent import AgentConfig
from sut.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from sut.tasks.basic import load_eval_tasks
from verifier.pool import SandboxPool


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.backend_agreement", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    p.add_argument("--count", type=int, default=None, help="first N evaluation tasks (default: all)")
    p.add_argument("--max-batch", type=int, default=64)
    a = p.parse_args(argv)
    if a.count is not None and a.count < 1:
        p.error(f"--count must be at least 1, got {a.count}")
    torch.set_num_threads(1)
    model, tok, _ = load_checkpoint(a.checkpoint)
    tasks = load_eval_tasks()[: a.count]
    recorded = json.loads((a.checkpoint / "metrics.json").read_text()).get("eval", {}).get("failed_final")
    recorded = None if recorded is None else [i for i in recorded if i < len(tasks)]
    codes = {}
    with SandboxPool() as pool:
        for backend in ("native", "torch"):
            results, wall, _ = run_engine(model, tok, pool, tasks, AgentConfig(), "cpu", backend, progress=False,
                                          max_batch=a.max_batch, backend=backend)
            codes[backend] = [[x.code for x in r.attempts] for r in results]
            failed = [i for i, r in enumerate(results) if not r.passed]
            print(f"{backend:>6}: pass@final {1 - len(failed) / len(tasks):.4f}, {wall:.1f} s, fails the recorded "
                  f"reference's tasks: {'n/a' if recorded is None else failed == recorded}")
    differ = [tasks[i].id for i, (x, y) in enumerate(zip(codes["native"], codes["torch"])) if x != y]
    print(f"tasks whose attempts differ between the two: {len(differ)} of {len(tasks)}"
          + (f" ({', '.join(differ[:10])})" if differ else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
