"""One LoadGen run in this process: ``python -m harness.lg_run ...`` (spawned by harness/run.py).

Each run gets its own process because ``TestSettings.FromConfig`` may be called once per
process (a second call skips LoadGen's built-in mlperf.conf). This module wires QSL,
SUT, engine and verifier pool together, runs LoadGen, and writes beside LoadGen's logs
the agent's per-attempt records (``agent_records.jsonl``) and the SUT's counters
(``sut_stats.json``).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg
from tqdm import tqdm

from harness.qsl import TaskQSL
from harness.run_config import checkpoint_sha256
from harness.user_conf import MODEL
from sut.engine.factory import EngineOptions, build_engine
from sut.loadgen_sut import CodegenSUT, SUTStats
from sut.tasks.suites import load_tasks

log = logging.getLogger("harness.lg_run")

SCENARIOS = {"SingleStream": lg.TestScenario.SingleStream, "Offline": lg.TestScenario.Offline,
             "Server": lg.TestScenario.Server}
MODES = {"performance": lg.TestMode.PerformanceOnly, "accuracy": lg.TestMode.AccuracyOnly,
         "find-peak": lg.TestMode.FindPeakPerformance}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--scenario", required=True, choices=list(SCENARIOS))
    p.add_argument("--mode", required=True, choices=list(MODES))
    p.add_argument("--conf", required=True, type=Path, help="effective conf file (validated by harness/run.py)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="the run's folder: LoadGen's logs and ours")
    p.add_argument("--count", type=int, default=None, help="use only the first N evaluation tasks")
    p.add_argument("--audit-config", type=Path, default=None, help="audit.config to copy into --out (cwd)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--find-peak-decimals", type=int, default=1, help="find-peak: QPS precision (decimal places)")
    EngineOptions.add_arguments(p)
    return p.parse_args(argv)


def loadgen_settings(args: argparse.Namespace) -> tuple[lg.TestSettings, lg.LogSettings]:
    """LoadGen's settings from the effective conf (once per process) and its log settings (logs into --out)."""
    settings = lg.TestSettings()
    settings.FromConfig(str(args.conf), MODEL, args.scenario)  # once per process
    settings.scenario = SCENARIOS[args.scenario]
    settings.mode = MODES[args.mode]
    if args.mode == "find-peak":
        # In token mode LoadGen's peak search would judge TTFT/TPOT; without it, it judges the
        # whole task's latency percentile against target_latency: this benchmark's bound.
        settings.use_token_latencies = False
        settings.server_find_peak_qps_decimals_of_precision = args.find_peak_decimals

    log_out = lg.LogOutputSettings()
    log_out.outdir = str(args.out)
    log_out.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_out
    log_settings.enable_trace = False
    return settings, log_settings


def progress_bar(args: argparse.Namespace) -> tuple[tqdm, Callable[[SUTStats], None]]:
    """A progress bar on stderr and the SUT's callback that moves it."""
    bar = tqdm(desc=f"{args.scenario} {args.mode}", unit="sample", disable=args.no_progress, file=sys.stderr,
               mininterval=0.5)

    def progress(stats: SUTStats) -> None:
        elapsed = max(time.perf_counter() - stats.started, 1e-9)
        bar.update(stats.completed - bar.n)
        bar.set_postfix(attempts=stats.attempts, tok_s=f"{stats.tokens / elapsed:.0f}",
                        smp_s=f"{stats.completed / elapsed:.2f}", errors=stats.errors, refresh=False)
    return bar, progress


def write_records(out: Path, sut: CodegenSUT, engine: Any, opts: EngineOptions, wall: float) -> None:
    """Beside LoadGen's logs: the agent's per-attempt records and the SUT's counters."""
    with open(out / "agent_records.jsonl", "w") as f:
        for rec in sorted(sut.records, key=lambda r: (r["qsl_idx"], r["task_id"])):
            f.write(json.dumps(rec) + "\n")
    stats = {**asdict(sut.stats), "wall_s": wall, "unanswered": sut.unanswered,
             "isolation": getattr(engine, "isolation", ""),
             "checkpoint_sha256": checkpoint_sha256(opts.checkpoint),
             "engine": engine.stats()}   # prefix reuse, backend, CPU time, ...
    stats.pop("started")
    (out / "sut_stats.json").write_text(json.dumps(stats, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        filename=str(args.out / "harness.log"))
    args.out.mkdir(parents=True, exist_ok=True)
    opts = EngineOptions.from_args(args)
    tasks = load_tasks(opts.suite)
    if args.count is not None:
        tasks = tasks[: args.count]
    settings, log_settings = loadgen_settings(args)

    # LoadGen reads audit.config from the current working directory.
    os.chdir(args.out)
    if args.audit_config is not None:
        (args.out / "audit.config").write_text(Path(args.audit_config).read_text())

    engine = build_engine(opts)
    qsl = TaskQSL(tasks)
    bar, progress = progress_bar(args)
    first_token = args.scenario != "Offline" and args.mode != "find-peak"
    sut = CodegenSUT(qsl.__getitem__, engine, first_token=first_token, on_progress=progress)
    engine.start()
    t0 = time.perf_counter()
    try:
        lg.StartTestWithLogSettings(sut.sut, qsl.qsl, settings, log_settings, "audit.config" if args.audit_config else "")
    finally:
        wall = time.perf_counter() - t0
        bar.close()
        engine.stop()
        write_records(args.out, sut, engine, opts, wall)
        sut.destroy()
        qsl.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
