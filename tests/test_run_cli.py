"""harness/run.py as a user meets it: options checked before anything is written, a results folder
bound to one configuration, one judge of the accuracy target, and an interrupted run that stops
and is never taken for a result. Real runs of the real engine, LoadGen and sandbox."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.compliance import check_scenario
from test_harness import QUICK_CONF, RUN, SHORT_OFFLINE_CONF, run, scenario_dir

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("args, fragment", [
    (["--threads", "-3"], "--threads must be at least 0"),
    (["--device", "bogus"], "--device 'bogus'"),
    (["--max-batch", "0"], "--max-batch must be at least 1"),
    (["--workers", "-1"], "--workers must be at least 0"),
    (["--batch-wait-ms", "nan"], "--batch-wait-ms"),
    (["--seed", "-1"], "--seed"),
    (["--count", "0"], "--count"),
    (["--system-name", "../../x"], "--system-name '../../x'"),
    (["--system-name", "a/b"], "--system-name 'a/b'"),
    (["--system-name", ".hidden"], "--system-name '.hidden'"),
    (["--system-name", ""], "--system-name ''"),
    (["--threads", "100000"], "--threads must be at most"),          # torch segfaulted in the child
    (["--workers", "100000"], "--workers must be at most"),          # the child hung starting sandboxes
    (["--max-batch", "100000000"], "--max-batch must be at most 1024"),   # the child ran out of memory
    (["--batch-wait-ms", "1e308"], "--batch-wait-ms"),
    (["--device", "cuda:99"], "--device cuda:99"),                   # no CUDA here, or not 100 devices
    (["--max-attempts", "0"], "--max-attempts must be at least 1"),
    (["--checkpoint", "no-such-dir"], "--checkpoint"),
])
def test_bad_options_are_one_line_exit_2_and_write_nothing(tmp_path, args, fragment):
    cmd = [*RUN, "--scenario", "Offline", "--user-conf", str(tmp_path / "user.conf"),
           "--out", str(tmp_path / "results"), *args]
    (tmp_path / "user.conf").write_text(QUICK_CONF)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and fragment in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path.parent / "x").exists()


@pytest.fixture(scope="module")
def relative_run(tmp_path_factory) -> Path:
    """An Offline performance run of the reference checkpoint made with relative paths (the caller's directory,
    returned); test_relative_paths_... checks it, test_a_folder_is_bound_... continues a copy of its folder."""
    where = tmp_path_factory.mktemp("relative")
    (where / "ckpt").symlink_to(REPO / "checkpoints" / "reference")
    (where / "quick.conf").write_text(SHORT_OFFLINE_CONF)
    r = subprocess.run([*RUN, "--scenario", "Offline", "--mode", "performance", "--count", "8", "--checkpoint", "ckpt",
                        "--user-conf", "quick.conf", "--out", "results", "--system-name", "testsys",
                        "--no-progress", "--threads", "1"], capture_output=True, text=True, timeout=600, cwd=where)
    assert r.returncode == 0, r.stderr[-2000:]
    return where


def test_relative_paths_are_found_from_any_directory(relative_run):
    """--checkpoint, --user-conf and --out relative to the caller's directory (the LoadGen child runs in
    another)."""
    d = scenario_dir(relative_run, "Offline")
    config = json.loads((d / "run_config.json").read_text())
    assert config["checkpoint"]["path"] == str((relative_run / "ckpt").resolve())
    assert config["loadgen_settings"]["min_duration"] == "1500"       # quick.conf was read
    assert (d / "performance" / "run_1" / "mlperf_log_detail.txt").is_file()   # results/ under the caller's directory


def _target_line(stdout: str) -> tuple[float, bool]:
    m = re.search(r"target >= ([0-9.]+): (MET|NOT MET)", stdout)
    assert m, stdout
    return float(m[1]), m[2] == "MET"


def test_a_folder_is_bound_to_one_configuration_and_one_target_judges_it(tmp_path, relative_run):
    """A performance run of one checkpoint and an accuracy run of another never share a folder;
    run.py's closing verdict on the accuracy target is check_submission's."""
    # the performance run: relative_run's (the reference checkpoint, --count 8), in a copy of its results folder
    shutil.copytree(relative_run / "results", tmp_path / "results", symlinks=True)
    (tmp_path / "user.conf").write_text((relative_run / "quick.conf").read_text())    # what run() passes from here on
    d = scenario_dir(tmp_path, "Offline")
    before = {p: p.read_bytes() for p in d.rglob("*") if p.is_file()}
    other = run(["--scenario", "Offline", "--mode", "accuracy", "--count", "8",
                 "--checkpoint", str(REPO / "checkpoints" / "retry-small")], tmp_path)
    assert other.returncode == 2 and "another configuration" in other.stderr and "checkpoint.sha256" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1
    assert {p: p.read_bytes() for p in d.rglob("*") if p.is_file()} == before      # nothing written

    same = run(["--scenario", "Offline", "--mode", "accuracy", "--count", "8"], tmp_path)
    assert same.returncode == 0, same.stderr[-2000:]
    check = check_scenario(d)
    assert not [f for f in check.findings if f.rule in ("configuration", "isolation", "incomplete")], check.findings
    target, met = _target_line(same.stdout)
    assert check.accuracy_target == pytest.approx(target, abs=1e-4)
    assert met == (not any(f.rule == "accuracy-target" for f in check.findings))

    # a run dir whose recorded configuration is not the folder's fails the checker
    cfg = d / "accuracy" / "run_config.json"
    doctored = json.loads(cfg.read_text())
    doctored["checkpoint"]["sha256"] = "0" * 64
    cfg.write_text(json.dumps(doctored))
    assert any(f.rule == "configuration" for f in check_scenario(d).findings)


def test_the_target_is_the_reference_s_whatever_checkpoint_ran(tmp_path):
    """The accuracy run of another checkpoint is judged against the reference's figures (the accuracy pass and
    its closing line; no performance run is needed for either)."""
    r = run(["--scenario", "Offline", "--mode", "accuracy", "--count", "24", "--checkpoint",
             str(REPO / "checkpoints" / "retry-small")], tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    target, met = _target_line(r.stdout)
    check = check_scenario(scenario_dir(tmp_path, "Offline"))
    assert check.accuracy_target == pytest.approx(target, abs=1e-4)
    assert met == (not any(f.rule == "accuracy-target" for f in check.findings))


def test_weaker_isolation_is_not_compliant(tmp_path):
    r = run(["--scenario", "Offline", "--mode", "performance", "--count", "4", "--isolation", "process"], tmp_path,
            SHORT_OFFLINE_CONF)
    assert r.returncode == 0, r.stderr[-2000:]
    findings = check_scenario(scenario_dir(tmp_path, "Offline")).findings
    assert any(f.rule == "isolation" for f in findings), findings


def _process_table() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, start time) of every process visible here."""
    table = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(pid)] = (int(fields[1]), fields[19])
    return table


def _descendants(root: int) -> dict[int, str]:
    """pid -> start time of every process below ``root`` (the LoadGen child, its sandboxes' bubblewraps and zygotes)."""
    table, found, todo = _process_table(), {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, start) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def _survivors(procs: dict[int, str], wait_s: float = 10.0) -> list[int]:
    """Those of ``procs`` still alive (the same pid and start time) after up to ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        table = _process_table()
        alive = [pid for pid, start in procs.items() if pid in table and table[pid][1] == start]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_a_signal_stops_the_run_and_marks_it_incomplete(tmp_path, sig):
    """SIGTERM and SIGINT are passed on and reported (exit 143, 130); on SIGKILL the child dies with run.py
    (its parent-death signal). Nothing below run.py survives; both run folders stay marked incomplete."""
    conf = tmp_path / "user.conf"
    conf.write_text(QUICK_CONF.replace("*.min_duration = 1500", "*.min_duration = 60000"))
    results = tmp_path / "results"
    proc = subprocess.Popen([*RUN, "--scenario", "Offline", "--mode", "both", "--count", "16", "--user-conf", str(conf),
                             "--out", str(results), "--system-name", "testsys", "--no-progress",
                             "--threads", "1"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    perf = scenario_dir(tmp_path, "Offline") / "performance" / "run_1"
    deadline = time.monotonic() + 120
    while not (perf / "mlperf_log_detail.txt").exists() and time.monotonic() < deadline:  # LoadGen has started
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    time.sleep(1.0)
    below = _descendants(proc.pid)
    assert any(b"harness.lg_run" in Path(f"/proc/{pid}/cmdline").read_bytes() for pid in below)
    assert len(below) > 1, below                                             # the child and its sandboxes
    t0 = time.monotonic()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 15, "run.py took too long to stop"
    if sig == signal.SIGKILL:
        assert proc.returncode == -sig
    else:
        assert proc.returncode == 128 + sig and "interrupted" in err and "Traceback" not in err, err
        assert "marked incomplete" in err and len(err.strip().splitlines()) == 1, err
    assert _survivors(below) == []                                           # no LoadGen child, no zygote
    assert _processes_mentioning(str(results)) == []
    accuracy = scenario_dir(tmp_path, "Offline") / "accuracy"
    assert (perf / "INCOMPLETE").is_file() and (accuracy / "INCOMPLETE").is_file()   # accuracy: claimed, not begun
    assert any(f.rule == "incomplete" for f in check_scenario(scenario_dir(tmp_path, "Offline")).findings)
    for mode in ("performance", "accuracy"):
        again = run(["--scenario", "Offline", "--mode", mode, "--count", "16"], tmp_path)
        assert again.returncode == 2 and "incomplete run" in again.stderr and "move it away" in again.stderr, again.stderr


def test_a_signal_stops_an_audit_and_marks_it_incomplete(tmp_path):
    """--audit runs its LoadGen child through harness.run while run.py is __main__: one Interrupted class."""
    # TEST04 issues 4x the performance run's samples (1.1 x target_qps x min_duration): 660 make a short
    # performance run and an audit run of 2640 copies that lasts seconds, long enough to be stopped
    conf = QUICK_CONF.replace("*.min_duration = 1500", "*.min_duration = 60000").replace(
        "Offline.target_qps = 800", "Offline.target_qps = 10")
    r = run(["--scenario", "Offline", "--mode", "both", "--count", "4"], tmp_path, conf)
    assert r.returncode == 0, r.stderr[-2000:]
    results = tmp_path / "results"
    proc = subprocess.Popen([*RUN, "--scenario", "Offline", "--audit", "TEST04", "--user-conf", str(tmp_path / "user.conf"),
                             "--out", str(results), "--system-name", "testsys", "--no-progress"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    audit = scenario_dir(tmp_path, "Offline") / "TEST04" / "performance" / "run_1"
    deadline = time.monotonic() + 120
    while not (audit / "mlperf_log_detail.txt").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    below = _descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and "interrupted by SIGTERM" in err and f"{audit} is marked incomplete" in err, err
    assert "Traceback" not in err, err
    assert _survivors(below) == [] and (audit / "INCOMPLETE").is_file()


def test_an_unwritable_results_folder_is_one_line(tmp_path):
    (tmp_path / "afile").write_text("not a folder")
    cmd = [*RUN, "--scenario", "Offline", "--user-conf", str(tmp_path / "user.conf"),
           "--out", str(tmp_path / "afile" / "results")]
    (tmp_path / "user.conf").write_text(QUICK_CONF)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 2 and "cannot create the results folder" in r.stderr and "--out" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
