"""The LoadGen child process of a run: started in its own session, stopped with run.py, never orphaned.

harness/run.py and the audits (harness/audits.py) both run LoadGen through ``run_child``: one
``python -m harness.lg_run`` per run, SIGTERM then SIGKILL to its process group on an interruption,
and a parent-death signal so that it cannot outlive run.py even if run.py is killed outright.
"""
from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from harness.results import mark_incomplete
from sut.engine.factory import EngineOptions

REPO = Path(__file__).resolve().parent.parent


class RunError(RuntimeError):
    """A run that could not be carried out; the message says why."""


class Interrupted(Exception):
    """SIGINT or SIGTERM reached run.py; the LoadGen child has been stopped."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum: int, _frame) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):   # one interruption: a second Ctrl-C does not cut short the stop
        signal.signal(sig, signal.SIG_IGN)
    raise Interrupted(signum)


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that has the child sent SIGTERM when run.py dies, even by SIGKILL (Linux prctl
    PR_SET_PDEATHSIG), and exit at once if run.py died before that was armed. prctl is looked up here,
    in the parent, not between fork and exec; None where there is no prctl."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(128 + signal.SIGTERM)
    return arm


def _stop(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM to the child's process group, SIGKILL after ``grace_s``; its sandboxes die with it
    (bubblewrap's --die-with-parent, the zygotes' parent-death signal)."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(scenario: str, mode: str, conf: Path, outdir: Path, opts: EngineOptions, count: int | None,
              no_progress: bool, audit_config: Path | None = None, extra: list[str] | None = None) -> None:
    cmd = [sys.executable, "-m", "harness.lg_run", "--scenario", scenario, "--mode", mode, "--conf", str(conf),
           "--out", str(outdir), *opts.to_argv(), *(extra or [])]
    if count is not None:
        cmd += ["--count", str(count)]
    if no_progress:
        cmd += ["--no-progress"]
    if audit_config is not None:
        cmd += ["--audit-config", str(audit_config)]
    (outdir / "command.txt").write_text(shlex.join(cmd) + "\n")
    mark_incomplete(outdir)   # removed by main() once every run and the accuracy pass are through
    proc = subprocess.Popen(cmd, cwd=REPO, start_new_session=True, preexec_fn=_die_with_parent())
    try:
        rc = proc.wait()
    except BaseException:   # Interrupted, KeyboardInterrupt: never leave the child running on its own
        _stop(proc)
        raise
    if rc != 0:
        raise RunError(f"the {mode} run failed (exit {rc}); see {outdir / 'harness.log'}")
