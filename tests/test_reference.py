"""The reference checkpoint's recorded figures and the accuracy target a run is judged by.

A --count run covers the first N evaluation tasks; its target is 99% of what the reference
solved on those same tasks, not of its whole-set figure (easy and hard tasks are not spread
evenly, so a 24-task subset can sit several points either side of the whole set).
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.scenario_files import EVAL_SIZE, FileProblem, load_reference, reference_checkpoint

REFERENCE_CHECKPOINT = reference_checkpoint("basic")


def write_metrics(path: Path, ev: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"eval": ev}))
    return path


def test_subset_target_counts_the_reference_on_the_same_tasks(tmp_path):
    ref = load_reference(write_metrics(tmp_path, {"pass@final": 1 - 4 / EVAL_SIZE, "failed_final": [1, 2, 3, 900]}))
    assert ref.pass_final_over(range(10)) == pytest.approx(0.7)          # 3 of the first 10 failed
    target, basis = ref.target_over(range(10))
    assert target == pytest.approx(0.99 * 0.7) and "same 10 tasks" in basis
    assert ref.target_over(range(EVAL_SIZE))[0] == pytest.approx(0.99 * (1 - 4 / EVAL_SIZE))
    assert ref.target_over([500, 501])[0] == pytest.approx(0.99)


def test_a_reference_without_per_task_outcomes_judges_only_the_whole_set(tmp_path):
    ref = load_reference(write_metrics(tmp_path, {"pass@final": 0.9}))
    assert ref.target_over(range(EVAL_SIZE))[0] == pytest.approx(0.891)
    target, basis = ref.target_over(range(24))
    assert target is None and "no per-task outcomes" in basis


def test_unreadable_reference_is_one_clear_problem(tmp_path):
    with pytest.raises(FileProblem, match="pass --reference"):
        load_reference(tmp_path / "missing")
    with pytest.raises(FileProblem, match="no eval.pass@final"):
        load_reference(write_metrics(tmp_path / "bad", {"pass@1": 0.5}))


def test_shipped_reference_records_its_failures_consistently():
    ev = json.loads((REFERENCE_CHECKPOINT / "metrics.json").read_text())["eval"]
    failed = ev["failed_final"]
    assert ev["tasks"] == EVAL_SIZE and sorted(set(failed)) == failed and all(0 <= i < EVAL_SIZE for i in failed)
    assert len(failed) == round((1 - ev["pass@final"]) * EVAL_SIZE)
