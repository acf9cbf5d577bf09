"""One endpoint against N, in one run: does the harness drive several servers as one system under test?

    python -m benchmarks.endpoint_scaling                      # 2 vLLM servers, each held to one core
    python -m benchmarks.endpoint_scaling --servers 2 --count 128 --json scaling.json

Starts ``--servers`` vLLM OpenAI-compatible servers on the agentic checkpoint, server i held to CPU i
(``taskset`` and vLLM's OpenMP binding; sut/engine/external/vllm_server.py), then runs the same short Offline LoadGen
run (``harness/run.py --engine openai``, performance mode, the first ``--count`` agentic tasks) against
1, 2, ... N endpoints, interleaved ``--reps`` times, and prints samples/s and the ratio to one endpoint.
It also reports the verifier's time per attempt (a verdict's wait, queueing in the sandbox pool included):
when it grows with the endpoints, the verifier, which shares the servers' cores here, is the limit.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from statistics import median
from typing import Any

from benchmarks.bench_util import cpu_model
from harness.mlperf_log import read_detail
from sut.tasks.suites import DEFAULTS
from sut.engine.external.vllm_server import VLLMServer
from verifier.output_guard import add_json_flag, check_json, text_to_stderr, write_json

REPO = Path(__file__).resolve().parent.parent
CONF = """\
nano-codegen-agent.*.min_duration = {min_ms}
nano-codegen-agent.Offline.min_query_count = 1
nano-codegen-agent.Offline.target_qps = {qps}
"""


def offline_run(urls: list[str], count: int, out: Path, min_ms: int, qps: float) -> dict[str, Any]:
    """One Offline performance run against ``urls``; samples/s, validity and the SUT's own counters."""
    conf = out / "user.conf"
    out.mkdir(parents=True)
    conf.write_text(CONF.format(min_ms=min_ms, qps=qps))
    cmd = [sys.executable, str(REPO / "harness" / "run.py"), "--scenario", "Offline", "--mode", "performance",
           "--suite", "agentic", "--count", str(count), "--engine", "openai", "--user-conf", str(conf),
           "--out", str(out / "results"), "--system-name", "scaling", "--no-progress",
           *[x for u in urls for x in ("--base-url", u)]]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"harness/run.py failed ({r.returncode}): {r.stderr.strip()[-500:]}")
    run_dir = out / "results" / "scaling" / "nano-codegen-agent" / "Offline" / "performance" / "run_1"
    detail = read_detail(run_dir / "mlperf_log_detail.txt")
    stats = json.loads((run_dir / "sut_stats.json").read_text())
    engine = stats["engine"]
    return {"endpoints": len(urls), "samples_per_s": float(detail.get("result_samples_per_second")),
            "validity": detail.get("result_validity"), "errors": stats["errors"], "wall_s": stats["wall_s"],
            "samples": stats["completed"], "attempts": stats["attempts"], "verify_s": engine["verify_s"],
            "generate_s": engine["generate_s"],
            "requests_per_endpoint": engine["engine"]["requests_per_endpoint"]}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.endpoint_scaling", description=__doc__.splitlines()[0])
    p.add_argument("--servers", type=int, default=2, help="vLLM servers, server i on CPU i (default 2)")
    p.add_argument("--count", type=int, default=128, help="agentic tasks in the QSL (default 128)")
    p.add_argument("--reps", type=int, default=2, help="interleaved repetitions of each endpoint count")
    p.add_argument("--min-duration-ms", type=int, default=20000)
    p.add_argument("--target-qps", type=float, default=4.0, help="Offline target_qps (sizes the one query)")
    p.add_argument("--max-num-seqs", type=int, default=32, help="each server's batch")
    p.add_argument("--server-nice", type=int, default=10,
                   help="run the servers at this niceness, below the harness they share the cores with (0: off)")
    add_json_flag(p, "the figures")
    p.add_argument("--force", action="store_true", help="replace an existing --json file")
    a = p.parse_args(argv)
    if not 1 <= a.servers <= (os.cpu_count() or 1):
        p.error(f"--servers must be from 1 to this machine's {os.cpu_count()} CPUs (one core each), got {a.servers}")
    check_json(a.json, a.force)
    return a


def measure(a: argparse.Namespace) -> list[dict[str, Any]]:
    """The servers, each held to its core, and the Offline runs against 1..N of them, interleaved --reps times."""
    tmp = Path(tempfile.mkdtemp(prefix="endpoint_scaling_"))
    servers = [VLLMServer(DEFAULTS["agentic"].checkpoint, max_num_seqs=a.max_num_seqs, cpus=str(i),
                          log_path=tmp / f"server{i}.log", nice=a.server_nice) for i in range(a.servers)]
    rows: list[dict[str, Any]] = []
    try:
        for s in servers:
            s.wait_ready()
        for rep in range(a.reps):
            for n in range(1, a.servers + 1):
                print(f"rep {rep + 1}/{a.reps}: {n} endpoint(s) ...", file=sys.stderr, flush=True)
                rows.append(offline_run([s.url for s in servers[:n]], a.count, tmp / f"r{rep}_n{n}",
                                        a.min_duration_ms, a.target_qps))
    finally:
        for s in servers:
            s.stop()
    return rows


def summarize(a: argparse.Namespace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per endpoint count: the median samples/s, its ratio to one endpoint and the verifier's ms per attempt;
    printed as a table."""
    by_n = {n: [r for r in rows if r["endpoints"] == n] for n in range(1, a.servers + 1)}
    one = median(r["samples_per_s"] for r in by_n[1])
    print(f"\nCPU: {cpu_model()}, {os.cpu_count()} cores; {a.servers} vLLM server(s), server i held to CPU i; "
          f"Offline, {a.count} agentic tasks, {a.reps} interleaved rep(s); servers at nice {a.server_nice}")
    print("| endpoints | samples/s (each rep) | median | vs 1 endpoint | verify ms per attempt | errors |")
    print("|---|---|---|---|---|---|")
    summary = []
    for n, rs in by_n.items():
        med = median(r["samples_per_s"] for r in rs)
        verify_ms = median(r["verify_s"] * 1e3 / max(r["attempts"], 1) for r in rs)
        summary.append({"endpoints": n, "samples_per_s": med, "ratio": med / one, "verify_ms_per_attempt": verify_ms})
        each = ", ".join(f"{r['samples_per_s']:.2f}" for r in rs)
        print(f"| {n} | {each} | {med:.2f} | {med / one:.2f}x "
              f"| {verify_ms:.1f} | {sum(r['errors'] for r in rs)} |")
    return summary


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    with text_to_stderr(a.json):
        rows = measure(a)
        summary = summarize(a, rows)
    write_json(a.json, {"cpu": cpu_model(), "cores": os.cpu_count(), "runs": rows, "summary": summary,
                        "command": " ".join(["python -m benchmarks.endpoint_scaling", *(argv or sys.argv[1:])])},
               indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
