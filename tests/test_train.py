"""`python -m sut.train --smoke` writes a checkpoint that loads and runs, with its report."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sut.model.checkpoint import load_checkpoint
from sut.train.loop import TrainConfig, lr_at, parse_args

REPO = Path(__file__).resolve().parent.parent


def test_smoke_run_writes_loadable_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    proc = subprocess.run([sys.executable, "-m", "sut.train", "--out", str(out), "--smoke", "--threads", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert {"model.safetensors", "config.json", "tokenizer.json", "report.md", "loss.png", "metrics.json"} <= {
        p.name for p in out.iterdir()}
    model, tok, meta = load_checkpoint(out)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["tokens_seen"] > 0 and 0 <= metrics["val_pass@final"] <= 1 and metrics["wall_s"] < 60
    assert meta["train"]["steps"] == 30 and meta["tokenizer_sha256"] == tok.sha256()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    idx = torch.tensor([[tok.start_id, tok.task_id, *tok.encode("Return 2 plus 3."), tok.code_id]])
    logits, _ = model(idx, torch.zeros_like(idx))
    assert torch.isfinite(logits).all()

    # a second run into the same folder is refused, and the checkpoint is untouched, unless --force
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    again = subprocess.run([sys.executable, "-m", "sut.train", "--out", str(out), "--smoke", "--threads", "1"],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"error: --out {out} already exists and holds a previous run's output: pick a new directory, or pass --force "
        "to replace it"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before

    # --force replaces the checkpoint whole: no stale file of the old one, no scratch folder left beside it
    (out / "stale.bin").write_bytes(b"old")
    # (a shorter smoke run: what is checked here is the replacement, not the training)
    forced = subprocess.run([sys.executable, "-m", "sut.train", "--out", str(out), "--smoke", "--threads", "1",
                             "--seed", "7", "--force", "--steps", "2", "--warmup", "1", "--eval-every", "2",
                             "--train-tasks", "40"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert forced.returncode == 0, forced.stderr[-2000:]
    assert {p.name for p in out.iterdir()} == set(before) and [p.name for p in tmp_path.iterdir()] == ["smoke"]
    assert load_checkpoint(out)[2]["train"]["seed"] == 7


def test_schedule_and_flags() -> None:
    cfg = TrainConfig(steps=100, warmup=10, lr=1e-3, min_lr_frac=0.1)
    assert lr_at(0, cfg) < lr_at(9, cfg) == 1e-3
    assert abs(lr_at(99, cfg) - 1e-4) < 2e-5
    _, c, m = parse_args(["--out", "x", "--smoke", "--steps", "7", "--n-embd", "96", "--n-head", "3"])
    assert c.steps == 7 and m.n_embd == 96 and m.n_head == 3 and m.n_layer == 2


def test_retry_recipe_flags_default_to_the_shipped_recipe() -> None:
    from sut.train.loop import retry_mix
    from sut.train.data import DEFAULT_MIX
    _, c, _m = parse_args(["--out", "x"])
    assert c.literal_mistakes == 0.0 and retry_mix(c) == DEFAULT_MIX
    _, c, _m = parse_args(["--out", "x", "--literal-mistakes", "6", "--retry-mix", "0.3,0.3,0.2,0.1,0.1"])
    assert c.literal_mistakes == 6.0 and retry_mix(c) == (0.3, 0.3, 0.2, 0.1, 0.1)
    for bad in (["--retry-mix", "a,b"], ["--retry-mix", "-1,2"], ["--literal-mistakes", "-1"]):
        with pytest.raises(SystemExit):
            parse_args(["--out", "x", *bad])
