"""`python -m sut.train.self_repair`: fine-tuning a checkpoint on its own verified failures."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sut.records import AgentResult, AttemptRecord
from sut.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from sut.train.self_repair import failure_chains, parse_args, repair_transcripts
from sut.tasks.basic import generate_tasks

REPO = Path(__file__).resolve().parent.parent


def _attempt(k: int, code: str, status: str, feedback: str = "", truncated: bool = False) -> AttemptRecord:
    return AttemptRecord(k, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, status, 0, truncated, code, feedback)


def test_chains_hold_the_failed_attempts_in_order_and_only_the_solution_is_a_target() -> None:
    _, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    tasks = generate_tasks("val", 3, 0)
    results = [
        AgentResult(tasks[0].id, [_attempt(0, "result = 1", "wrong_output", "expected 2, got 1"),
                                  _attempt(1, "result = 3", "wrong_output", "expected 2, got 3"),
                                  _attempt(2, tasks[0].solution, "passed")], passed=True),
        AgentResult(tasks[1].id, [_attempt(0, tasks[1].solution, "passed")], passed=True),
        AgentResult(tasks[2].id, [_attempt(0, "x = (", "syntax_error", "SyntaxError: ..."),
                                  _attempt(1, "oops", "sandbox_error", "")]),
    ]
    chains = failure_chains(tasks, results)
    assert [(t.id, [c for c, _ in ch]) for t, ch in chains] == [
        (tasks[0].id, ["result = 1", "result = 3"]), (tasks[2].id, ["x = ("])]
    seqs = repair_transcripts(tok, chains, 512, prefix_loss=False)
    assert len(seqs) == 3                                   # depths 1 and 2 of the first task, 1 of the last
    answer = tok.encode(tasks[0].solution) + [tok.end_id]
    for seq in seqs[:2]:
        targets = [i for i, m in zip(seq.ids, seq.mask) if m]
        assert targets == answer and seq.ids[-len(answer):] == answer
    assert tok.decode(seqs[1].ids).count("expected 2, got") == 2


def test_smoke_run_collects_failures_and_writes_a_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "repaired"
    cmd = [sys.executable, "-m", "sut.train.self_repair", "--init", str(DEFAULT_CHECKPOINT), "--out", str(out),
           "--smoke", "--repair-tasks", "200", "--threads", "1"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["collected"]["tasks"] == 200 and metrics["collected"]["failed_tasks"] > 0
    assert metrics["collected"]["repair_transcripts"] >= metrics["collected"]["failed_tasks"]
    model, tok, meta = load_checkpoint(out)
    assert meta["train"]["self_repair"]["init"] == str(DEFAULT_CHECKPOINT)
    assert (out / "loss.png").is_file()
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)   # never overwrites
    assert again.returncode == 2 and "already exists" in again.stderr and len(again.stderr.strip().splitlines()) == 1


def test_flags(tmp_path: Path) -> None:
    _, _, cfg, rcfg = parse_args(["--init", "a", "--out", str(tmp_path / "b"), "--steps", "9", "--repair-share", "0.3"])
    assert cfg.steps == 9 and rcfg.repair_share == 0.3 and cfg.lr == 5e-4
    with pytest.raises(SystemExit):
        parse_args(["--init", "a", "--out", str(tmp_path / "b"), "--repair-share", "1"])


@pytest.mark.parametrize("bad", [["--retry-mix", "a,b"], ["--retry-mix", "-1,2"], ["--literal-mistakes", "-1"]])
def test_bad_recipe_flags_are_refused_up_front(bad: list[str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A malformed mix is a one-line usage error (exit 2) before any work, as in sut.train."""
    with pytest.raises(SystemExit) as e:
        parse_args(["--init", "a", "--out", str(tmp_path / "b"), *bad])
    assert e.value.code == 2
    assert bad[0] in capsys.readouterr().err.splitlines()[-1]
