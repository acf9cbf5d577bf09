"""harness/report.py turns a real results tree into Markdown and PNG plots with the right figures."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tree  # noqa: E402

from harness.mlperf_log import read_detail  # noqa: E402
from harness.report import attempts_histogram, breakdown, load_scenario_data, write_report  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
PLOTS = ("attempt_cost", "attempts", "tokens_per_attempt", "latency_cdf", "throughput", "time_breakdown")


@pytest.fixture(scope="session")
def trees(tmp_path_factory) -> tiny_tree.Trees:
    return tiny_tree.session_trees(tmp_path_factory)


def test_report_cli_writes_markdown_and_plots(trees, tmp_path):
    out = tmp_path / "report"
    proc = subprocess.run([sys.executable, "harness/report.py", str(trees.honest), "--out", str(out)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    md = (out / "report.md").read_text()
    for stem in PLOTS:
        png = out / f"{tiny_tree.SYSTEM}_{stem}.png"
        assert f"]({png.name})" in md
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    detail = read_detail(trees.scenario(trees.honest) / "performance/run_1/mlperf_log_detail.txt")
    row = next(line for line in md.splitlines() if line.startswith("| Offline | basic | native | VALID"))
    assert f"samples/s {detail.get('result_samples_per_second'):.4g}" in row
    assert "Not shown" not in md


def test_where_the_time_goes(trees):
    d = load_scenario_data(trees.scenario(trees.honest, "Server"))
    b = breakdown(d)
    agent = sum(a["prefill_ms"] + a["decode_ms"] + a["verify_ms"] for r in d.perf_records for a in r["attempts"])
    agent /= len(d.perf_records)
    assert b["prefill"] + b["decode"] + b["verify"] == pytest.approx(agent)
    lg_mean = float(d.detail.get("result_mean_latency_ns")) / 1e6
    assert b["queueing"] == pytest.approx(max(0.0, lg_mean - agent))
    assert agent == pytest.approx(lg_mean, rel=0.25)   # Server at low load: little waiting


def test_attempts_histogram():
    recs = [{"attempts": [1], "passed": True}, {"attempts": [1, 2], "passed": True},
            {"attempts": [1, 2, 3], "passed": False}, {"attempts": [1], "passed": True}]
    assert attempts_histogram(recs, 3) == (["1", "2", "3", "unsolved"], [2, 1, 0, 1])


def test_report_on_partial_tree_notes_what_is_missing(trees, tmp_path):
    root = tiny_tree.copy_tree(trees.honest, tmp_path / "results")
    (trees.scenario(root, "Server") / "performance/run_1/agent_records.jsonl").unlink()
    md = write_report(root).read_text()
    assert re.search(r"Not shown.*\n\n- .*Server/performance/run_1/agent_records.jsonl: missing", md)
    proc = subprocess.run([sys.executable, "harness/report.py", str(tmp_path / "nothing")], capture_output=True,
                          text=True, cwd=REPO)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ")
