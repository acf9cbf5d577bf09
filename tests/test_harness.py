"""The main job for real: harness/run.py drives real LoadGen over the real engine, model and sandbox.

Tiny settings (a few tasks, a 1-2 s min_duration) keep each scenario to seconds; the
closing checks are what a user relies on: VALID results, the MLPerf file layout, the
accuracy pass, and one-line errors with a nonzero exit for bad input.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.mlperf_log import read_detail

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "harness" / "run.py"), "--suite", "basic"]   # the fast suite (run.py's default is agentic)

# Server: 470 arrivals (LoadGen's early stopping vouches for a p99 from ~460) at 100/s last under 5 s; the
# 20 s bound holds even where the engine serves well below 100/s and a queue builds.
QUICK_CONF = """\
nano-codegen-agent.*.min_duration = 1500
nano-codegen-agent.SingleStream.min_query_count = 64
nano-codegen-agent.SingleStream.target_latency = 1
nano-codegen-agent.Offline.min_query_count = 1
nano-codegen-agent.Offline.target_qps = 800
nano-codegen-agent.Server.min_query_count = 470
nano-codegen-agent.Server.target_qps = 100
nano-codegen-agent.Server.target_latency = 20000
nano-codegen-agent.Server.ttft_latency = 20000
nano-codegen-agent.Server.tpot_latency = 20000
"""


# For tests that need a finished Offline performance run but do not judge its result: LoadGen issues
# 1.1 x target_qps x min_duration samples, so 10/s makes a run of 16 samples, a fraction of a second
# (INVALID: it ends before min_duration; these tests ask for no VALID run, test_scenario_runs_valid does).
SHORT_OFFLINE_CONF = QUICK_CONF.replace("Offline.target_qps = 800", "Offline.target_qps = 10")


def run(args: list[str], tmp_path: Path, conf: str = QUICK_CONF) -> subprocess.CompletedProcess:
    user_conf = tmp_path / "user.conf"
    if not user_conf.exists():
        user_conf.write_text(conf)
    cmd = [*RUN, "--user-conf", str(user_conf), "--out", str(tmp_path / "results"),
           "--system-name", "testsys", "--no-progress", "--threads", "1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def scenario_dir(tmp_path: Path, scenario: str) -> Path:
    return tmp_path / "results" / "testsys" / "nano-codegen-agent" / scenario


@pytest.mark.parametrize("scenario, mode", [("Offline", "both"), ("SingleStream", "performance"),
                                            ("Server", "performance")])
def test_scenario_runs_valid_with_mlperf_layout(tmp_path, scenario, mode):
    r = run(["--scenario", scenario, "--mode", mode, "--count", "16", "--max-attempts", "3"], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    d = scenario_dir(tmp_path, scenario)
    perf = d / "performance" / "run_1"
    for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "agent_records.jsonl", "sut_stats.json"):
        assert (perf / name).is_file(), name
    detail = read_detail(perf / "mlperf_log_detail.txt")
    assert detail.get("result_validity") == "VALID", detail.get("result_invalid_reason")
    assert detail.num_errors == 0, detail.errors
    assert detail.get("effective_scenario") == scenario
    stats = json.loads((perf / "sut_stats.json").read_text())
    assert stats["completed"] == stats["issued"] > 0 and stats["unanswered"] == 0 and stats["duplicate_completions"] == 0
    assert stats["engine"]["backend"] == "native" and stats["engine"]["tasks_done"] == stats["completed"]
    records = [json.loads(line) for line in (perf / "agent_records.jsonl").read_text().splitlines()]
    assert len(records) == stats["completed"]
    assert all(1 <= len(r["attempts"]) <= 3 for r in records)
    assert (d / "user.conf").is_file() and (d / "measurements.json").is_file()
    assert (tmp_path / "results" / "systems" / "testsys.json").is_file()
    assert "result        VALID" in r.stdout
    if mode == "both":
        acc = d / "accuracy"
        lines = (acc / "accuracy.txt").read_text().splitlines()
        assert "pass@final=" in lines[0] and "samples=16" in lines[0]
        import hashlib
        assert lines[1] == "hash=" + hashlib.sha256((acc / "mlperf_log_accuracy.json").read_bytes()).hexdigest()
        assert "pass@final" in r.stdout


def test_second_run_never_overwrites_the_first(tmp_path):
    first = run(["--scenario", "Offline", "--mode", "performance", "--count", "4"], tmp_path, SHORT_OFFLINE_CONF)
    assert first.returncode == 0, first.stderr[-2000:]
    summary = scenario_dir(tmp_path, "Offline") / "performance" / "run_1" / "mlperf_log_summary.txt"
    before = summary.read_bytes()
    second = run(["--scenario", "Offline", "--mode", "performance", "--count", "4"], tmp_path)
    assert second.returncode == 2
    assert "already holds a run" in second.stderr and len(second.stderr.strip().splitlines()) == 1
    assert summary.read_bytes() == before


@pytest.mark.parametrize("args, conf, fragment", [
    (["--scenario", "Ofline"], QUICK_CONF, "unknown scenario 'Ofline'"),
    (["--scenario", "Offline"], "nano-codegen-agent.Offline.min_duration=100\n", "spaces around '='"),
    (["--scenario", "Offline"], "# LoadGen would read 1 ms\nnano-codegen-agent.Offline.min_duration = 1e4\n",
     "user.conf:2: 'nano-codegen-agent.Offline.min_duration = 1e4': LoadGen reads min_duration as an integer"),
    (["--scenario", "Offline"], "nano-codegen-agent.Offline.target_qps = 1e999\n", "user.conf:1:"),
    (["--scenario", "Server"], "*.*.use_token_latencies = 0\nnano-codegen-agent.Server.ttft_latency = 500\n",
     "user.conf:2: ttft_latency = 500: LoadGen reads ttft_latency only while use_token_latencies = 1"),
    (["--scenario", "Offline", "--checkpoint", "/nonexistent/ckpt"], QUICK_CONF, "no checkpoint there"),
    (["--scenario", "Offline", "--max-attempts", "0"], QUICK_CONF, "--max-attempts"),
    (["--scenario", "Offline", "--redraws", "-1"], QUICK_CONF, "--redraws"),
    (["--scenario", "Offline", "--find-peak"], QUICK_CONF, "does not apply to Offline"),
])
def test_bad_input_is_one_line_and_nonzero(tmp_path, args, conf, fragment):
    r = run(args, tmp_path, conf)
    assert r.returncode == 2
    assert fragment in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").rglob("mlperf_log_*"))


# Each trial lasts min_duration plus the drain of its backlog (up to the bound near the peak), and the trials
# number about twice log2(peak / start rate): a short trial, a tight bound and a start rate well above 1/s keep
# the search to ~15 short trials. The start rate meets the bound with room (its p99 is a task's latency, ~0.1 s).
FIND_PEAK_CONF = """\
nano-codegen-agent.Server.min_duration = 500
nano-codegen-agent.Server.min_query_count = 10
nano-codegen-agent.Server.target_qps = 16
nano-codegen-agent.Server.target_latency = 500
"""


def test_find_peak_searches_with_loadgen_and_records_the_peak(tmp_path):
    """LoadGen's own peak search over the real engine; every trial's verdict follows from the peak."""
    args = ["--scenario", "Server", "--find-peak", "--find-peak-decimals", "0", "--count", "24"]
    r = run(args, tmp_path, FIND_PEAK_CONF)
    assert r.returncode == 0, r.stderr[-2000:]
    out = scenario_dir(tmp_path, "Server") / "find_peak"
    rec = json.loads((out / "find_peak.json").read_text())
    rates = [t["qps"] for t in rec["trials"]]
    assert rates[:2] == [16.0, 32.0]                # the configured start, then LoadGen doubles it
    assert rec["peak_qps"] >= 16 and rec["peak_qps"] in rates
    assert any(not t["met"] for t in rec["trials"])  # the search ends at a rate that missed the bound
    assert all(t["met"] == (t["qps"] <= rec["peak_qps"]) for t in rec["trials"])
    assert rec["target_latency_ms"] == 500 and rec["peak_run_p99_ms"] <= 500
    detail = read_detail(out / "mlperf_log_detail.txt")
    assert detail.get("effective_test_mode") == "FindPeakPerformance"
    assert not any("first_token" in k for k in detail.values)   # judged on whole tasks, not TTFT/TPOT
    assert f"target_qps = {rec['peak_qps']:g}" in r.stdout
    again = run(args, tmp_path, FIND_PEAK_CONF)
    assert again.returncode == 2 and "already holds a run" in again.stderr


def test_find_peak_refuses_a_start_rate_that_misses_the_bound(tmp_path):
    conf = FIND_PEAK_CONF.replace("target_latency = 500", "target_latency = 1")
    assert conf != FIND_PEAK_CONF
    r = run(["--scenario", "Server", "--find-peak", "--count", "8"], tmp_path, conf)
    assert r.returncode == 1
    assert "already misses the latency bound" in r.stderr and "lower nano-codegen-agent.Server.target_qps" in r.stderr
