"""benchmarks.answer_agreement: the counts that docs/engines.md quotes for two engines' answers."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.answer_agreement import agreement, main, read_results


def _task(tid: str, codes: list[str], passed: bool) -> dict:
    return {"task_id": tid, "passed": passed, "attempts": [{"code": c} for c in codes]}


def test_counts_identical_trajectories_verdicts_and_the_first_difference(tmp_path: Path) -> None:
    a = [_task("t0", ["x"], True), _task("t1", ["y", "z"], True), _task("t2", ["u", "v"], False), _task("t3", ["w"], True)]
    b = [_task("t0", ["x"], True), _task("t1", ["y", "q"], False), _task("t2", ["u", "v"], False)]
    files = []
    for name, rows in (("a", a), ("b", b)):
        files.append(tmp_path / f"{name}.jsonl")
        files[-1].write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = agreement(read_results(files[0]), read_results(files[1]))
    assert (s["tasks"], s["identical_trajectories"], s["same_verdict"]) == (3, 2, 2)   # t3 is in one file only
    assert (s["solved_only_by_a"], s["solved_only_by_b"]) == (1, 0)
    assert s["first_difference"] == {"task": "t1", "attempt": 1}
    assert s["pass@final_a"] == pytest.approx(2 / 3) and s["pass@final_b"] == pytest.approx(1 / 3)


def test_a_file_that_is_not_a_results_file_is_refused_in_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"}\n')
    with pytest.raises(SystemExit, match="not a results file"):
        main([str(bad), str(bad)])
