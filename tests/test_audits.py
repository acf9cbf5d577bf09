"""The audits pass an honest SUT and fail the cheats they exist to catch.

Audit runs are real LoadGen runs of harness/lg_run.py over tests/oracle_engine.py's stand-in engine,
with the audit.config that harness/audits.py writes, verified by harness/audit_verify.py (trees built
once per session by tests/tiny_tree.py). The cheating engines behave honestly in the accuracy run and cheat only
when timed: ``cache`` answers a sample repeated back to back instantly, ``giveup`` stops
retrying, ``differ`` returns different (still correct) code.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tree  # noqa: E402

from harness.audit_verify import AUDIT_TESTS, VERIFY_FILES, audit_settings, choose_test04_sample  # noqa: E402
from harness.user_conf import parse_user_conf  # noqa: E402
from harness.mlperf_log import read_detail  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def trees(tmp_path_factory) -> tiny_tree.Trees:
    return tiny_tree.session_trees(tmp_path_factory)


def last_line(path: Path) -> str:
    return path.read_text().strip().splitlines()[-1]


def test_honest_audits_pass_in_mlperf_layout(trees):
    off = trees.scenario(trees.honest)
    for test in AUDIT_TESTS:
        assert trees.verdicts[("honest/Offline", test)], (off / test / VERIFY_FILES[test][0]).read_text()
        d = off / test
        for name in VERIFY_FILES[test]:
            assert last_line(d / name) == "TEST PASS"
        assert (d / "performance/run_1/mlperf_log_summary.txt").is_file()
        assert (d / "performance/run_1/mlperf_log_detail.txt").is_file()
        assert (d / "accuracy/mlperf_log_accuracy.json").is_file() == (test != "TEST04")
    assert (off / "TEST07/accuracy/accuracy.txt").is_file()
    mlperf_lines = (off / "TEST06/verify_accuracy.txt").read_text().splitlines()
    for line in ("First token check pass: Skipped", "EOS check pass: True", "Sample length check pass: True"):
        assert line in mlperf_lines   # what MLPerf's submission checker looks for
    for scen, test in (("SingleStream", "TEST04"), ("SingleStream", "TEST06"), ("Server", "TEST04")):
        assert trees.verdicts[(f"honest/{scen}", test)], (trees.scenario(trees.honest, scen) / test).iterdir()
    assert "First token check pass: True" in (trees.scenario(trees.honest, "SingleStream") / "TEST06/verify_accuracy.txt").read_text()


def test_audit_config_is_loadgen_format_and_was_applied(trees):
    off = trees.scenario(trees.honest)
    for test in AUDIT_TESTS:
        lines = parse_user_conf(off / test / "audit.config", audit=True)   # every line is one LoadGen would read
        assert all(line.model == "*" and line.scenario == "*" for line in lines)
        # Offline TEST04 also asks for a larger query (audit_verify.OFFLINE_TEST04_QPS_FACTOR)
        assert {line.key for line in lines} == set(audit_settings(test, 16, offline_qps=1.0 if test == "TEST04" else None))
    detail = read_detail(off / "TEST04/performance/run_1/mlperf_log_detail.txt")
    perf = read_detail(off / "performance/run_1/mlperf_log_detail.txt")
    assert float(detail.get("effective_target_qps")) == 4 * float(perf.get("effective_target_qps"))
    # LoadGen itself says it read it
    assert "Found Audit Config file" in (off / "TEST06/performance/run_1/mlperf_log_detail.txt").read_text()


def test_caching_sut_fails_test04(trees):
    assert not trees.verdicts[("cheat_cache/Offline", "TEST04")]
    text = (trees.scenario(trees.cheats["cache"]) / "TEST04/verify_performance.txt").read_text()
    # Offline: the cached answers end the run before min_duration, so LoadGen itself judges it INVALID
    assert ("faster" in text or "INVALID" in text) and text.strip().endswith("TEST FAIL")


def test_sut_giving_up_when_timed_fails_test01_06_07_09(trees):
    off = trees.scenario(trees.cheats["giveup"])
    for test in ("TEST01", "TEST06", "TEST07", "TEST09"):
        assert not trees.verdicts[("cheat_giveup/Offline", test)], test
    assert "EOS check pass: False" in (off / "TEST06/verify_accuracy.txt").read_text()
    assert "Accuracy check pass: False" in (off / "TEST07/verify_accuracy.txt").read_text()
    assert "Min check pass: False" in (off / "TEST09/verify_output_len.txt").read_text()
    # TEST01: responses differ, and their accuracy on the same samples drops by more than 1%
    assert (off / "TEST01/accuracy/baseline_accuracy.txt").is_file()
    assert last_line(off / "TEST01/verify_accuracy.txt") == "TEST FAIL"


def test_nondeterministic_but_correct_sut_passes_test01(trees):
    """Different code when timed, equally correct: MLPerf's part III (accuracy on the same samples) passes it."""
    off = trees.scenario(trees.cheats["differ"])
    text = (off / "TEST01/verify_accuracy.txt").read_text()
    assert "num_perf_log_data_mismatch = 0" not in text and "delta_pct = 0.000" in text
    assert trees.verdicts[("cheat_differ/Offline", "TEST01")]


def test_test04_sample_choice():
    def rec(idx: int, ms: float) -> dict:
        return {"qsl_idx": idx, "attempts": [{"prefill_ms": 0.0, "decode_ms": ms, "verify_ms": 0.0}]}

    records = [rec(i, ms) for i, ms in enumerate([10, 10, 10, 20, 30, 50, 50, 50, 90, 100])]
    mean = choose_test04_sample(records, "Server")
    assert (mean.qsl_idx, mean.target_ms) == (5, 42.0)       # nearest the mean cost, 42 ms (Server: ms)
    p90 = choose_test04_sample(records, "SingleStream")
    assert (p90.qsl_idx, p90.target_ms) == (9, 100.0)        # nearest the 90th-percentile cost
    # Offline queues every sample at once, so its agent ms are the shared batch's: the cost there is the
    # rows the model computed for a sample, generated and prefilled (a short task admitted with 63 others
    # takes as long as a long one)
    for r, tokens, ms in zip(records, [40, 40, 200, 220, 230, 500, 40, 40, 40, 40], [2000] * 10):
        r["n_tokens"], r["attempts"][0]["decode_ms"] = tokens, ms
    offline = choose_test04_sample(records, "Offline")
    assert (offline.qsl_idx, offline.target_ms, offline.unit) == (2, 139.0, "tokens")
    records[0]["attempts"][0]["prefilled_tokens"] = 100   # rows the model computed: prefilled ones count too
    assert (choose_test04_sample(records, "Offline").qsl_idx, choose_test04_sample(records, "Offline").target_ms) == (0, 149.0)
    assert choose_test04_sample(records, "Server").unit == "ms"


def run_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "harness/run.py", "--suite", "basic", *args], capture_output=True, text=True, cwd=REPO)


def test_audit_refusals(trees, tmp_path):
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text("{}")   # run.py checks a checkpoint exists before anything else
    base = ["--scenario", "Offline", "--checkpoint", str(ckpt), "--system-name", tiny_tree.SYSTEM]
    proc = run_py(*base, "--out", str(tmp_path / "none"), "--audit", "TEST01")
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
    assert "needs the Offline performance and accuracy runs first" in proc.stderr
    assert "python harness/run.py --scenario Offline" in proc.stderr
    proc = run_py(*base, "--out", str(trees.honest), "--audit", "TEST04")
    assert proc.returncode == 2 and "already holds an audit" in proc.stderr


SS_CONF = """\
nano-codegen-agent.*.min_duration = 10000
nano-codegen-agent.SingleStream.min_query_count = 64
nano-codegen-agent.SingleStream.target_latency = 1
"""


def test_real_harness_run_and_audit_pass_the_checker(tmp_path):
    """The real pipeline (run.py, engine, model, sandbox) writes what the checker accepts.

    SingleStream lasts max(10 s, 64 tasks) whatever the machine's speed, and its TEST06 checks
    the first tokens the SUT reported against the reference tokenizer.
    """
    conf = tmp_path / "user.conf"
    conf.write_text(SS_CONF)
    # 24 tasks: the checker judges the subset against the reference's own outcomes on the same
    # 24 tasks (metrics.json eval.failed_final), so the harness must reproduce sut.evaluate's verdicts.
    base = ["--scenario", "SingleStream", "--count", "24", "--out", str(tmp_path / "results"),
            "--system-name", "e2e", "--no-progress", "--threads", "1", "--user-conf", str(conf)]
    proc = run_py(*base)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_py(*base, "--audit", "TEST06")
    assert proc.returncode == 0 and "TEST06 SingleStream: TEST PASS" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    folder = tmp_path / "results/e2e/nano-codegen-agent/SingleStream"
    assert "First token check pass: True" in (folder / "TEST06/verify_accuracy.txt").read_text()
    proc = subprocess.run([sys.executable, "harness/check_submission.py", str(tmp_path / "results")],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stdout
    assert "quick" in proc.stdout.splitlines()[2] and "PASS" in proc.stdout.splitlines()[2]
