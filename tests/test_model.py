"""NanoCodeGen: the inference forward over the KV cache gives the full forward's logits; retry steps matter."""
from __future__ import annotations

import pytest
import torch

from sut.engine.batch import BatchModel
from sut.engine.native import library as native
from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.model.torch_step import new_cache

torch.set_num_threads(1)
V, BLOCK = 300, 96


@pytest.fixture(scope="module")
def model() -> NanoCodeGen:
    torch.manual_seed(0)
    m = NanoCodeGen(GPTConfig(vocab_size=V, block_size=BLOCK)).eval()
    with torch.no_grad():  # give the retry-step and position tables real weight, as training would
        m.wse.weight.normal_(0, 0.5)
        m.wpe.weight.normal_(0, 0.2)
    return m


def _seqs(B: int, T: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, V, (B, T), generator=g)
    steps = torch.sort(torch.randint(0, 5, (B, T), generator=g), dim=1).values  # steps grow along a transcript
    return idx, steps


BACKENDS = ["torch"] + (["native"] if native.available()[0] else [])


@torch.no_grad()
@pytest.mark.parametrize("backend", BACKENDS)
def test_cached_steps_match_the_full_forward_mixed_batch(model: NanoCodeGen, backend: str) -> None:
    """The inference forward (sut/model/torch_step.py, and its native twin) against training's full forward:
    prefill three rows to different lengths, extend one with a chunk (a retry's feedback), then decode all
    three one token per step in one batch, rows at different positions, in slots that are not 0..B-1."""
    B, T = 3, 80
    idx, steps = _seqs(B, T)
    full, _ = model(idx, steps)                        # (B, T, V)
    bm = BatchModel(model, 5, backend=backend)
    slots = [4, 0, 2]
    worst = 0.0
    prefill = [12, 20, 31]
    for b in range(B):
        out = bm.prefill(idx[b, :prefill[b]].tolist(), steps[b, :prefill[b]].tolist(), slots[b], 0)
        worst = max(worst, (out - full[b, prefill[b] - 1]).abs().max().item())
    out = bm.prefill(idx[1, 20:27].tolist(), steps[1, 20:27].tolist(), slots[1], 20)  # extend
    worst = max(worst, (out - full[1, 26]).abs().max().item())
    pos = [12, 27, 31]
    for _ in range(40):                                # batched decode, one token a row
        order = sorted(range(B), key=lambda b: slots[b])
        out = bm.decode([slots[b] for b in order], [int(idx[b, pos[b]]) for b in order],
                        [int(steps[b, pos[b]]) for b in order], [pos[b] for b in order])
        for r, b in enumerate(order):
            worst = max(worst, (out[r] - full[b, pos[b]]).abs().max().item())
        pos = [p + 1 for p in pos]
    assert worst < 1e-4, worst


@torch.no_grad()
@pytest.mark.parametrize("backend", BACKENDS)
def test_slot_reuse_ignores_stale_cache(model: NanoCodeGen, backend: str) -> None:
    """A slot that held a longer sequence gives the right logits for a shorter new one."""
    idx, steps = _seqs(2, 60, seed=3)
    bm = BatchModel(model, 1, backend=backend)
    bm.prefill(idx[0].tolist(), steps[0].tolist(), 0, 0)
    out = bm.prefill(idx[1, :25].tolist(), steps[1, :25].tolist(), 0, 0)
    full, _ = model(idx[1:, :25], steps[1:, :25])
    assert (out - full[0, -1]).abs().max().item() < 1e-4


@torch.no_grad()
def test_retry_step_embedding_changes_logits(model: NanoCodeGen) -> None:
    idx, steps = _seqs(1, 30)
    a, _ = model(idx, torch.zeros_like(steps))
    b, _ = model(idx, torch.full_like(steps, 3))
    assert (a - b).abs().max().item() > 1e-2
    with pytest.raises(ValueError, match="retry steps"):
        model(idx, torch.full_like(steps, 16))


def test_loss_mask_selects_targets(model: NanoCodeGen) -> None:
    idx, steps = _seqs(2, 20)
    targets = torch.roll(idx, -1, dims=1)
    mask = torch.zeros_like(idx)
    mask[:, 10:] = 1
    logits, loss = model(idx, steps, targets, mask)
    ce = torch.nn.functional.cross_entropy(logits[:, 10:].reshape(-1, V), targets[:, 10:].reshape(-1))
    assert torch.allclose(loss, ce, atol=1e-5)
    loss.backward()
    assert model.wse.weight.grad is not None and model.lm_head.weight is model.wte.weight  # tied head


def test_window_limits(model: NanoCodeGen) -> None:
    with pytest.raises(ValueError, match="block_size"):
        model(*_seqs(1, BLOCK + 1))
    bm = BatchModel(model, 1, backend="torch")
    with pytest.raises(ValueError, match="cache holds"):
        bm.prefill(list(range(10)), [0] * 10, 0, BLOCK - 5)


def test_cache_layout_and_kv_bytes(model: NanoCodeGen) -> None:
    cfg = model.config
    kv = new_cache(model, 8)
    assert kv.shape == (cfg.n_layer, 2, BLOCK, 8, cfg.n_head, cfg.n_embd // cfg.n_head)   # position-major
    assert model.kv_bytes(10) == 2 * cfg.n_layer * cfg.n_embd * 10 * 4
    assert kv.numel() * kv.element_size() == model.kv_bytes(BLOCK) * 8


def test_training_loss_equals_masked_forward_loss(model: NanoCodeGen) -> None:
    idx, steps = _seqs(3, 25, seed=7)
    targets = torch.roll(idx, -1, dims=1)
    mask = (torch.rand(3, 25, generator=torch.Generator().manual_seed(1)) < 0.3).long()
    _, full = model(idx, steps, targets, mask)
    assert torch.allclose(model.loss(idx, steps, targets, mask), full, atol=1e-5)
