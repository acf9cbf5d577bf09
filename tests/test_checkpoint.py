"""Checkpoint round trip, and every bad input gives a one-line CheckpointError naming the file."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from sut.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.model.tokenizer import train_tokenizer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    tok = train_tokenizer(["def f(x):\n    return x * 2\n", "result = [1, 2, 3]\n"] * 20, vocab_size=300)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=2, n_embd=32, n_head=2)
    torch.manual_seed(0)
    model = NanoCodeGen(cfg)
    out = tmp_path_factory.mktemp("ckpt") / "c"
    save_checkpoint(out, model, tok, cfg, {"steps": 1}, {"pass@1": 0.5})
    return out


def _copy(saved: Path, tmp_path: Path) -> Path:
    d = tmp_path / "copy"
    shutil.copytree(saved, d)
    return d


def test_round_trip(saved: Path) -> None:
    model, tok, meta = load_checkpoint(saved)
    assert {p.name for p in saved.iterdir()} == {"model.safetensors", "config.json", "tokenizer.json", "metrics.json"}
    assert meta["train"] == {"steps": 1} and meta["model"]["n_embd"] == 32
    assert not model.training and model.lm_head.weight is model.wte.weight
    again, _, _ = load_checkpoint(saved)
    idx = torch.tensor([tok.encode("def f(x):")])
    a, _ = model(idx, torch.zeros_like(idx))
    b, _ = again(idx, torch.zeros_like(idx))
    assert torch.equal(a, b)
    sd = NanoCodeGen(GPTConfig(**meta["model"])).state_dict()
    assert all(torch.equal(model.state_dict()[k], again.state_dict()[k]) for k in sd)


def _err(d: Path) -> str:
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d)
    msg = str(e.value)
    assert "\n" not in msg and "sut.train" in msg
    return msg


def test_missing_dir_and_files(saved: Path, tmp_path: Path) -> None:
    assert "checkpoint directory not found" in _err(tmp_path / "nowhere")
    for name in ("config.json", "tokenizer.json", "model.safetensors"):
        d = _copy(saved, tmp_path / name)
        (d / name).unlink()
        msg = _err(d)
        assert name in msg and "missing" in msg


def test_corrupt_weights(saved: Path, tmp_path: Path) -> None:
    d = _copy(saved, tmp_path)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    assert "corrupt safetensors" in _err(d)
    (d / "model.safetensors").write_bytes(b"\x00" * 7)
    assert "corrupt safetensors" in _err(d)


def test_tokenizer_mismatch(saved: Path, tmp_path: Path) -> None:
    d = _copy(saved, tmp_path)
    other = train_tokenizer(["something else entirely\n"] * 20, vocab_size=300)
    other.save(d / "tokenizer.json")
    assert "tokenizer does not match the checkpoint" in _err(d)


def test_shape_mismatch_and_bad_config(saved: Path, tmp_path: Path) -> None:
    d = _copy(saved, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model"]["n_embd"] = 64
    (d / "config.json").write_text(json.dumps(cfg))
    assert "has shape" in _err(d)
    cfg["model"]["n_layer"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    assert "tensors do not fit" in _err(d)
    (d / "config.json").write_text("{")
    assert "not valid JSON" in _err(d)
    (d / "config.json").write_text(json.dumps({"model": {"bogus": 1}}))
    assert "config.json" in _err(d)
