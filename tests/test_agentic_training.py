"""The agentic recipe: guess-and-fix transcripts judged by the real sandbox, a smoke run that writes an
HF checkpoint recording its suite, and the evaluator's suite rules (one line and exit 2 on a mismatch)."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from sut.agent import AgentConfig
from sut.tasks.agentic.suite import FAMILY_BY_NAME, generate
from sut.train.agentic_data import build_examples, plan, transcript
from sut.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from sut.model.tokenizer import train_tokenizer
from verifier.pool import SandboxPool

REPO = Path(__file__).resolve().parent.parent


def test_plan_guesses_then_fixes_only_what_the_failures_reveal() -> None:
    rng = random.Random(0)
    for task in generate("train", 60, 3):
        fam = FAMILY_BY_NAME[task.family]
        convs = fam.convs(task.params["level"])
        attempts = plan(task, rng, bug_share=0.3)
        policy = [a for a in attempts if a.target]
        assert attempts[-1].target and not any(a.passed for a in attempts[:-1])   # slips run into a policy attempt
        if len(attempts) < 8:
            assert policy[-1].passed and policy[-1].code == task.solution
        written = {fam.solution(task.params, dict(zip([c.name for c in convs], values)))
                   for values in _product([c.values for c in convs])}
        assert all(a.code in written for a in policy)          # every policy attempt is some convention's solution
        assert len(policy) <= 1 + len(convs) and len(attempts) <= 8


def _product(lists: list) -> list:
    out: list = [[]]
    for values in lists:
        out = [o + [v] for o in out for v in values]
    return out


def test_examples_carry_the_real_verifier_feedback() -> None:
    tasks = generate("train", 12, 5)
    with SandboxPool(workers=1, timeout_s=2.0) as pool:
        examples = build_examples(tasks, pool, per_task=1, seed=0, bug_share=0.5)
    assert len(examples) >= 11
    for ex in examples:
        for a in ex.attempts[:-1]:
            assert a.feedback.split("\n")[0].endswith("passed") or a.feedback, a
        assert ex.attempts[-1].feedback == ""
    tok = train_tokenizer([ex.task.prompt + a.code + a.feedback for ex in examples for a in ex.attempts], 600,
                          attempt_markers=True)
    ex = max(examples, key=lambda e: len(e.attempts))
    seq, blind = transcript(tok, ex), transcript(tok, ex, blind=True)
    assert seq.ids.count(tok.feedback_id) == len(ex.attempts) - 1 == blind.ids.count(tok.feedback_id)
    assert tok.decode(blind.ids).count("failed") >= len(ex.attempts) - 1 and len(blind) <= len(seq)
    # every policy attempt is under the loss; a slip only up to where it departs from its fix
    assert sum(seq.mask) >= sum(len(tok.encode(a.code)) + 1 for a in ex.attempts if a.target)


def test_feedback_none_hides_the_verifier_text() -> None:
    assert AgentConfig(feedback="none").shown("3/8 passed\nf(1) returned 2, expected 3") == "failed"
    assert AgentConfig().shown("3/8 passed") == "3/8 passed"


def _evaluate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sut.evaluate", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("agentic") / "smoke"
    proc = subprocess.run([sys.executable, "-m", "sut.train", "--suite", "agentic", "--smoke", "--threads", "1",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def test_agentic_smoke_run_writes_an_hf_checkpoint_for_its_suite(smoke: Path) -> None:
    _, tok, meta = load_checkpoint(smoke)
    assert meta["suite"] == "agentic" and meta["format"] == 2 and tok.attempt_ids
    metrics = json.loads((smoke / "metrics.json").read_text())
    assert metrics["suite"] == "agentic" and metrics["val_pass_curve"] and len(metrics["val_attempts_histogram"]) == 8
    assert (smoke / "loss.png").is_file() and (smoke / "validation.png").is_file()
    assert "## Validation by step" in (smoke / "report.md").read_text()


def test_evaluate_runs_an_agentic_task_file_and_refuses_mismatches(smoke: Path, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks.jsonl"
    proc = subprocess.run([sys.executable, "-m", "sut.tasks", "--suite", "agentic", "--seed", "9", "--count", "3",
                           "--jsonl", str(tasks)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = _evaluate("--suite", "agentic", "--checkpoint", str(smoke), "--tasks", str(tasks), "--json", "-",
                     "--max-new-tokens", "8", "--max-attempts", "2")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads(proc.stdout)
    assert s["tasks"] == 3 and s["suite"] == "agentic" and s["engine"] == "native" and 1 <= s["mean_attempts"] <= 2

    for args, fragment in [
        (["--suite", "nope"], "--suite 'nope': unknown suite"),
        (["--suite", "basic", "--checkpoint", str(smoke)], "trained for the agentic suite, not basic"),
        (["--suite", "agentic", "--checkpoint", str(DEFAULT_CHECKPOINT)], "trained for the basic suite, not agentic"),
        (["--suite", "basic", "--tasks", str(tasks)], "a task file of the agentic suite, but --suite is basic"),
    ]:
        proc = _evaluate(*args, "--count", "1")
        assert proc.returncode == 2 and fragment in proc.stderr, (args, proc.stderr[-2000:])
        assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(tasks.read_text().replace('"suite": "agentic"', '"suite": "agentic", "difficulty": 9', 1))
    proc = _evaluate("--suite", "agentic", "--checkpoint", str(smoke), "--tasks", str(bad))
    assert proc.returncode == 2 and f"{bad}:1: bad task row" in proc.stderr and proc.stderr.count("\n") == 1


def test_a_window_too_small_for_any_transcript_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "small"
    proc = subprocess.run([sys.executable, "-m", "sut.train", "--suite", "agentic", "--smoke", "--threads", "1",
                           "--block-size", "48", "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines()[-1].startswith("error: --block-size 48 cannot hold")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_evaluate_refuses_a_budget_the_window_cannot_hold(smoke: Path) -> None:
    proc = _evaluate("--suite", "agentic", "--checkpoint", str(smoke), "--max-new-tokens", "5000", "--count", "2")
    assert proc.returncode == 2 and "lower --max-new-tokens" in proc.stderr and proc.stderr.count("\n") == 1
