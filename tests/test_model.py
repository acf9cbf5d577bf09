"""NanoCodeGen: the KV-cache path gives the full forward's logits; retry steps matter."""
from __future__ import annotations

import pytest
import torch

from sut.model.gpt import GPTConfig, NanoCodeGen

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


@torch.no_grad()
def test_cached_matches_full_forward_mixed_batch(model: NanoCodeGen) -> None:
    """Prefill three rows to different lengths, extend one with a chunk (a retry's feedback),
    then decode all three one token per step in one batch, rows at different positions."""
    B, T = 3, 80
    idx, steps = _seqs(B, T)
    full, _ = model(idx, steps)                        # (B, T, V)
    cache = model.new_cache(max_slots=5)
    slots = torch.tensor([4, 0, 2])                   # arbitrary slots, not 0..B-1
    worst = 0.0
    prefill = [12, 20, 31]
    for b in range(B):                                 # prefill: B=1, T>1
        out = model.forward_cached(idx[b:b + 1, :prefill[b]], steps[b:b + 1, :prefill[b]], slots[b:b + 1],
                                   torch.tensor([0]), cache)
        worst = max(worst, (out[0] - full[b, prefill[b] - 1]).abs().max().item())
    out = model.forward_cached(idx[1:2, 20:27], steps[1:2, 20:27], slots[1:2], torch.tensor([20]), cache)  # extend
    worst = max(worst, (out[0] - full[1, 26]).abs().max().item())
    pos = torch.tensor([12, 27, 31])
    rows = torch.arange(B)
    for _ in range(40):                                # batched decode: T=1
        out = model.forward_cached(idx[rows, pos][:, None], steps[rows, pos][:, None], slots, pos, cache)
        worst = max(worst, (out - full[rows, pos]).abs().max().item())
        pos = pos + 1
    assert worst < 1e-4, worst


@torch.no_grad()
def test_slot_reuse_ignores_stale_cache(model: NanoCodeGen) -> None:
    """A slot that held a longer sequence gives the right logits for a shorter new one."""
    idx, steps = _seqs(2, 60, seed=3)
    cache = model.new_cache(1)
    model.forward_cached(idx[:1], steps[:1], torch.tensor([0]), torch.tensor([0]), cache)
    out = model.forward_cached(idx[1:, :25], steps[1:, :25], torch.tensor([0]), torch.tensor([0]), cache)
    full, _ = model(idx[1:, :25], steps[1:, :25])
    assert (out[0] - full[0, -1]).abs().max().item() < 1e-4


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
    cache = model.new_cache(1)
    with pytest.raises(ValueError, match="cache holds"):
        model.forward_cached(*_seqs(1, 10), torch.tensor([0]), torch.tensor([BLOCK - 5]), cache)


def test_setup_cache_is_idempotent_and_kv_bytes(model: NanoCodeGen) -> None:
    c1 = model.setup_cache(4, 64)
    assert model.setup_cache(2, 32) is c1           # smaller request: same buffers
    c2 = model.setup_cache(8)
    assert c2 is not c1 and c2.max_slots == 8 and c2.max_seq == BLOCK
    cfg = model.config
    assert model.kv_bytes(10) == 2 * cfg.n_layer * cfg.n_embd * 10 * 4
    assert c2.nbytes() == model.kv_bytes(BLOCK) * 8
    model.kv_cache = None


def test_training_loss_equals_masked_forward_loss(model: NanoCodeGen) -> None:
    idx, steps = _seqs(3, 25, seed=7)
    targets = torch.roll(idx, -1, dims=1)
    mask = (torch.rand(3, 25, generator=torch.Generator().manual_seed(1)) < 0.3).long()
    _, full = model(idx, steps, targets, mask)
    assert torch.allclose(model.loss(idx, steps, targets, mask), full, atol=1e-5)
