"""The submission checker accepts an honest results tree and catches doctored ones.

The trees are real: harness/lg_run.py's LoadGen runs of the real SUT over a stand-in engine
(tests/oracle_engine.py) in the harness's layout, built once per session (tests/tiny_tree.py, ~40 s),
copied per test and then doctored.
Each doctoring must be caught by a finding naming the file and the rule.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tree  # noqa: E402

from harness import check_submission  # noqa: E402
from harness.compliance import OFFICIAL_MIN_DURATION_MS, OFFICIAL_SEEDS, check_scenario  # noqa: E402


@pytest.fixture(scope="session")
def trees(tmp_path_factory) -> tiny_tree.Trees:
    return tiny_tree.session_trees(tmp_path_factory)


@pytest.fixture
def tree(trees, tmp_path) -> Path:
    """A private copy of the honest tree."""
    return tiny_tree.copy_tree(trees.honest, tmp_path / "results")


def offline(root: Path, scenario: str = "Offline") -> Path:
    return root / tiny_tree.SYSTEM / "nano-codegen-agent" / scenario


def findings(folder: Path, reference: Path) -> list[tuple[str, str, str]]:
    return [(f.rule, f.file.name, f.message) for f in check_scenario(folder, reference).findings]


def assert_caught(found: list[tuple[str, str, str]], rule: str, filename: str) -> None:
    assert any(r == rule and f == filename for r, f, _ in found), f"no [{rule}] on {filename}; got {found}"


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def edit_detail(path: Path, key: str, value) -> None:
    """Set one :::MLLOG key's value, keeping the line well formed."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if f'"key": "{key}"' in line:
            entry = json.loads(line[len(":::MLLOG "):])
            entry["value"] = value
            lines[i] = ":::MLLOG " + json.dumps(entry)
    path.write_text("\n".join(lines) + "\n")


def test_honest_tree_passes_as_quick(trees, tmp_path, capsys):
    rc = check_submission.main([str(trees.honest), "--reference", str(trees.reference), "--csv", str(tmp_path / "s.csv")])
    out = capsys.readouterr().out
    assert rc == 0, out
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert sorted(r["scenario"] for r in rows) == ["Offline", "Server", "SingleStream"]
    assert all(r["class"] == "quick" and r["validity"] == "VALID" and r["passed"] == "yes" for r in rows)
    off = next(r for r in rows if r["scenario"] == "Offline")
    assert [off[t] for t in ("TEST01", "TEST04", "TEST06", "TEST07", "TEST09")] == ["PASS"] * 5
    assert "quick, not official" in out and "not run with --official" in out


def test_official_constants_are_loadgens(tmp_path):
    """The seeds and minimum duration an official run needs are LoadGen's built-in ones."""
    conf = tmp_path / "empty.conf"
    conf.write_text("# nothing\n")
    code = ("import json, mlperf_loadgen as lg; s = lg.TestSettings(); "
            f"s.FromConfig({str(conf)!r}, 'nano-codegen-agent', 'Server'); "
            "print(json.dumps([s.qsl_rng_seed, s.sample_index_rng_seed, s.schedule_rng_seed, s.min_duration_ms]))")
    got = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert got == [*OFFICIAL_SEEDS.values(), OFFICIAL_MIN_DURATION_MS]


def test_edited_summary_figure(tree, trees):
    summary = offline(tree) / "performance/run_1/mlperf_log_summary.txt"
    value = re.search(r"Samples per second: ([\d.]+)", summary.read_text()).group(1)
    edit(summary, f"Samples per second: {value}", f"Samples per second: {float(value) * 2:.2f}")
    assert_caught(findings(offline(tree), trees.reference), "summary-detail", "mlperf_log_summary.txt")


def test_deleted_files(tree, trees):
    (offline(tree) / "performance/run_1/mlperf_log_detail.txt").unlink()
    (offline(tree) / "accuracy/accuracy.txt").unlink()
    found = findings(offline(tree), trees.reference)
    assert_caught(found, "log-format", "mlperf_log_detail.txt")
    assert_caught(found, "accuracy-file", "accuracy.txt")


def test_truncated_detail_log(tree, trees):
    detail = offline(tree) / "performance/run_1/mlperf_log_detail.txt"
    lines = detail.read_text().splitlines()
    detail.write_text("\n".join(lines[: len(lines) // 2]) + "\n" + lines[len(lines) // 2][:40])
    assert_caught(findings(offline(tree), trees.reference), "log-format", "mlperf_log_detail.txt")


def test_changed_accuracy_log(tree, trees):
    log = offline(tree) / "accuracy/mlperf_log_accuracy.json"
    rows = json.loads(log.read_text())
    rows[0]["data"] = rows[1]["data"]   # one response swapped for another's
    log.write_text(json.dumps(rows))
    found = findings(offline(tree), trees.reference)
    assert_caught(found, "accuracy-hash", "accuracy.txt")


def _doctor_accuracy_log(folder: Path, change) -> Path:
    """Apply ``change`` to the accuracy log's entries and re-hash accuracy.txt: only the log rules can catch it."""
    log = folder / "accuracy/mlperf_log_accuracy.json"
    rows = json.loads(log.read_text())
    log.write_text(change(rows) if callable(change) else change)
    txt = folder / "accuracy/accuracy.txt"
    txt.write_text(re.sub(r"hash=[0-9a-f]+", "hash=" + hashlib.sha256(log.read_bytes()).hexdigest(), txt.read_text()))
    return log


def _move_sample(rows: list[dict], key: str, value) -> str:
    next(r for r in rows if r["qsl_idx"] == 1)[key] = value
    return json.dumps(rows)


@pytest.mark.parametrize("change, rule, fragment", [
    (lambda rows: _move_sample(rows, "qsl_idx", True), "accuracy-file", "integer 'qsl_idx'"),   # read as 1 before
    (lambda rows: _move_sample(rows, "qsl_idx", 999), "accuracy-log", "missing e.g. [1]"),     # a sample swapped out
    (lambda rows: _move_sample(rows, "data", "7b7d"), "accuracy-file", "upper-case hex"),
    ("[" * 100_000 + "]" * 100_000, "accuracy-file", "nested deeper"),                          # RecursionError before
], ids=["bool-index", "sample-outside-the-qsl", "lower-case-hex", "deep-nesting"])
def test_malformed_accuracy_log_is_a_finding(tree, trees, change, rule, fragment):
    log = _doctor_accuracy_log(offline(tree), change)
    found = findings(offline(tree), trees.reference)
    assert any(r == rule and f == log.name and fragment in m for r, f, m in found), found


def test_edited_pass_at_final(tree, trees):
    txt = offline(tree) / "accuracy/accuracy.txt"
    text = txt.read_text()
    txt.write_text(re.sub(r"pass@final=[\d.]+", "pass@final=0.500000", text))
    found = findings(offline(tree), trees.reference)
    assert_caught(found, "accuracy-target", "accuracy.txt")
    assert_caught(found, "accuracy-figures", "accuracy.txt")


def test_lowered_min_duration(tree, trees):
    """In user.conf only: the log disagrees. In the logs too: below the quick floor."""
    edit(offline(tree) / "user.conf", "min_duration = 10000", "min_duration = 1000")
    assert_caught(findings(offline(tree), trees.reference), "settings", "user.conf")
    run = offline(tree, "Server") / "performance/run_1"
    edit_detail(run / "mlperf_log_detail.txt", "effective_min_duration_ms", 1000)
    edit(run / "mlperf_log_summary.txt", "min_duration (ms): 10000", "min_duration (ms): 1000")
    found = findings(offline(tree, "Server"), trees.reference)
    assert_caught(found, "min-duration", "mlperf_log_detail.txt")
    assert not any(r == "summary-detail" for r, _, _ in found)   # a consistent edit is caught by the rule itself


def test_swapped_scenario(tree, trees):
    """Offline logs filed under SingleStream/."""
    single = offline(tree, "SingleStream")
    for run in ("performance/run_1", "accuracy"):
        for f in (offline(tree) / run).iterdir():
            (single / run / f.name).write_bytes(f.read_bytes())
    assert_caught(findings(single, trees.reference), "scenario", "mlperf_log_detail.txt")


def test_errors_in_detail_log(tree, trees):
    detail = offline(tree) / "performance/run_1/mlperf_log_detail.txt"
    err = {"key": "error_runtime", "value": "Attempted to complete a sample twice", "time_ms": 1.0,
           "namespace": "mlperf::logging", "event_type": "POINT_IN_TIME", "metadata": {"is_error": True}}
    detail.write_text(":::MLLOG " + json.dumps(err) + "\n" + detail.read_text())
    assert_caught(findings(offline(tree), trees.reference), "errors", "mlperf_log_detail.txt")


def test_unofficial_seeds(tree, trees):
    run = offline(tree) / "performance/run_1"
    seed = OFFICIAL_SEEDS["qsl_rng_seed"]
    edit_detail(run / "mlperf_log_detail.txt", "effective_qsl_rng_seed", 12345)
    edit(run / "mlperf_log_summary.txt", f"qsl_rng_seed : {seed}", "qsl_rng_seed : 12345")
    assert_caught(findings(offline(tree), trees.reference), "seeds", "mlperf_log_detail.txt")


def test_server_p99_over_bound(tree, trees):
    run = offline(tree, "Server") / "performance/run_1"
    summary = (run / "mlperf_log_summary.txt").read_text()
    p99 = re.search(r"99.00 percentile latency \(ns\)\s*: (\d+)", summary).group(1)
    edit_detail(run / "mlperf_log_detail.txt", "result_99.00_percentile_latency_ns", 3_000_000_000)
    edit(run / "mlperf_log_summary.txt", p99, "3000000000")
    assert_caught(findings(offline(tree, "Server"), trees.reference), "server-latency", "mlperf_log_detail.txt")


def test_missing_agent_record(tree, trees):
    records = offline(tree) / "performance/run_1/agent_records.jsonl"
    records.write_text("".join(records.read_text().splitlines(keepends=True)[1:]))
    assert_caught(findings(offline(tree), trees.reference), "agent-records", "agent_records.jsonl")


def test_doctored_audit_verdict(tree, trees):
    """A failing verdict edited to TEST PASS is re-verified and caught."""
    vfile = offline(tree) / "TEST04/verify_performance.txt"
    detail = offline(tree) / "TEST04/performance/run_1/mlperf_log_detail.txt"
    edit_detail(detail, "result_validity", "INVALID")   # the audit run itself now fails
    edit(offline(tree) / "TEST04/performance/run_1/mlperf_log_summary.txt", "Result is : VALID", "Result is : INVALID")
    assert vfile.read_text().strip().endswith("TEST PASS")
    assert_caught(findings(offline(tree), trees.reference), "audit-TEST04", "verify_performance.txt")


def test_false_official_claim(tree, trees):
    m = offline(tree) / "measurements.json"
    m.write_text(m.read_text().replace('"official": false', '"official": true'))
    c = check_scenario(offline(tree), trees.reference)
    assert c.run_class == "invalid"
    assert any(f.rule == "official" and f.file.name == "measurements.json" and "600000" in f.message for f in c.findings)


def test_checker_cli(tree, trees, tmp_path):
    (offline(tree) / "accuracy/accuracy.txt").unlink()
    cmd = [sys.executable, "harness/check_submission.py", str(tree), "--reference", str(trees.reference)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert proc.returncode == 1
    assert re.search(r"FAIL .*Offline/accuracy/accuracy.txt: \[accuracy-file\]", proc.stdout), proc.stdout
    assert (tree / "summary.csv").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    for root in (empty, tmp_path / "missing"):
        proc = subprocess.run([sys.executable, "harness/check_submission.py", str(root)], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1


def test_rescore_catches_an_edited_pass_at_1(tree, trees):
    """pass@1 follows from nothing cheap in the log: only re-running the accuracy pass catches an edit."""
    txt = offline(tree) / "accuracy/accuracy.txt"
    txt.write_text(re.sub(r"pass@1=[\d.]+", "pass@1=0.9000", txt.read_text()))
    assert check_scenario(offline(tree), trees.reference).passed
    c = check_scenario(offline(tree), trees.reference, rescore=True)
    assert any(f.rule == "accuracy-rescore" and f.file.name == "accuracy.txt" and "pass@1=0.9" in f.message
               for f in c.findings), c.findings
