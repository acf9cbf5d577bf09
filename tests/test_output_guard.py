"""No command overwrites a previous run's output silently: an existing target is refused in one line
(exit 2, nothing written) unless --force, and a checkpoint lands whole or not at all."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from verifier.output_guard import output_problem, staged_folder

REPO = Path(__file__).resolve().parent.parent


def test_output_problem_allows_new_or_empty_and_refuses_the_rest_without_force(tmp_path: Path) -> None:
    assert output_problem(tmp_path / "new" / "deeper", False, "--out") is None
    (tmp_path / "empty").mkdir()
    assert output_problem(tmp_path / "empty", False, "--out") is None
    full = tmp_path / "full"
    full.mkdir()
    (full / "model.safetensors").write_bytes(b"x")
    assert "pass --force" in output_problem(full, False, "--out")
    assert output_problem(full, True, "--out") is None
    f = tmp_path / "figures.json"
    f.write_text("{}")
    assert "pass --force" in output_problem(f, False, "--json", "file")
    assert output_problem(f, True, "--json", "file") is None
    assert "is a file" in output_problem(f, True, "--out")               # --force does not make a file a folder
    assert "is a directory" in output_problem(full, True, "--json", "file")


def test_staged_folder_replaces_whole_or_leaves_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "model.safetensors").write_text("old")
    (out / "stale.txt").write_text("old")
    with pytest.raises(KeyboardInterrupt), staged_folder(out) as scratch:   # a run stopped half-way
        (scratch / "model.safetensors").write_text("half")
        raise KeyboardInterrupt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"] and (out / "model.safetensors").read_text() == "old"
    with staged_folder(out) as scratch:
        assert scratch.parent == tmp_path and scratch.name.startswith(".ckpt.partial-")
        (scratch / "model.safetensors").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    assert [p.name for p in out.iterdir()] == ["model.safetensors"] and (out / "model.safetensors").read_text() == "new"


def test_staged_folder_never_replaces_an_output_that_appeared_meanwhile(tmp_path: Path) -> None:
    out = tmp_path / "ckpt"
    with pytest.raises(FileExistsError, match="appeared while this run was writing"), staged_folder(out) as scratch:
        (scratch / "mine").write_text("mine")
        out.mkdir()
        (out / "theirs").write_text("theirs")   # another run finished first
    assert (out / "theirs").read_text() == "theirs" and (scratch / "mine").read_text() == "mine"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command, flag, held", [
    (["-m", "sut.train", "--smoke", "--out"], "--out", "report.md"),
    (["-m", "sut.train.self_repair", "--smoke", "--init", "checkpoints/reference", "--out"], "--out", "report.md"),
    (["-m", "sut.evaluate", "--count", "1", "--jsonl"], "--jsonl", None),
    (["harness/report.py", "{tmp}", "--out"], "--out", "report.md"),
    (["-m", "benchmarks.engine_bench", "--sections", "decode", "--json"], "--json", None),
    (["-m", "benchmarks.engine_bench", "--sections", "prefill", "--out"], "--out", "prefill_vs_context.png"),
    (["benchmarks/verifier_bench.py", "--cli-only", "--json"], "--json", None),
])
def test_every_writing_command_refuses_existing_output_in_one_line(tmp_path: Path, command: list[str], flag: str,
                                                                   held: str | None) -> None:
    """What each command writes stays as it was: one error line naming the flag and --force, exit 2. ``held``:
    the file an --out folder already holds (None: the flag names a file)."""
    target = tmp_path / ("previous.out" if held is None else "previous")
    previous = target if held is None else target / held
    previous.parent.mkdir(exist_ok=True)
    previous.write_text("previous run")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    r = _cli(*[a.replace("{tmp}", str(tmp_path)) for a in command], str(target))
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {flag} {target}"), r.stderr
    assert "--force" in lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
    assert previous.read_text() == "previous run"
