"""The token choice: sut/engine/token_choice.py's contract, its reference, and the native twin
(sut/engine/native/sampling.c) held to it bit for bit.

The reference draws with numpy's own Philox; the C side is compared with it, with torch's argmax and
with the reference's scores, built and run for real."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from sut.agent import attempt_seed
from sut.engine import token_choice
from sut.engine.batch import BatchModel
from sut.engine.native import library as native
from sut.model.gpt import GPTConfig, NanoCodeGen

ok, why = native.available()
needs_native = pytest.mark.skipif(not ok, reason=f"native kernels unavailable: {why}")
if ok:
    from sut.engine.native import sampling as ns

V = 1536


def probs_of(logits: torch.Tensor, temperature: float = 0.7, top_k: int | None = 20) -> torch.Tensor:
    return torch.softmax(token_choice.top_k_scores(logits, temperature, top_k), dim=-1).contiguous()


def test_uniform_is_numpys_philox_and_a_pure_function_of_key_and_index() -> None:
    raw = np.random.Philox(key=np.array([7, 0], dtype=np.uint64), counter=np.array([3, 0, 0, 0], dtype=np.uint64))
    assert token_choice.uniform(7, 3) == (int(raw.random_raw()) >> 11) / 2**53
    us = [token_choice.uniform(attempt_seed(0, "t", 1), n) for n in range(2000)]
    assert us == [token_choice.uniform(attempt_seed(0, "t", 1), n) for n in range(2000)]
    assert all(0.0 <= u < 1.0 for u in us) and abs(sum(us) / len(us) - 0.5) < 0.03
    assert len(set(us)) == len(us)
    assert token_choice.uniform(attempt_seed(0, "t", 2), 0) != token_choice.uniform(attempt_seed(0, "t", 1), 0)


def test_inverse_cdf_follows_the_contract() -> None:
    p = np.array([0.0, 0.25, 0.0, 0.5, 0.25], dtype=np.float32)
    assert [token_choice.inverse_cdf(p, u) for u in (0.0, 0.2499, 0.25, 0.7499, 0.75, 0.9999)] == [1, 1, 3, 3, 4, 4]
    short = np.array([0.3, 0.3, 0.0], dtype=np.float32)      # sums below u: the last positive entry
    assert token_choice.inverse_cdf(short, 0.9) == 1
    assert token_choice.inverse_cdf(np.array([np.nan, 0.5, 0.5], dtype=np.float32), 0.1) == 1   # NaN: no mass


def test_draws_follow_the_top_k_softmax_distribution() -> None:
    """20,000 token indices of one key: each frequency within 0.015 of its probability, nothing outside the top k."""
    logits = torch.tensor([[0.5, 2.0, -1.0, 1.2, 1.9, -3.0]])
    n = 20_000
    got = token_choice.draw_rows(probs_of(logits, 0.8, 4).expand(n, 6), [11] * n, list(range(n)))
    counts = torch.bincount(torch.tensor(got), minlength=6)
    expected = probs_of(logits, 0.8, 4)[0]
    assert counts[[2, 5]].sum() == 0
    assert torch.allclose(counts / n, expected, atol=0.015), (counts / n, expected)


@needs_native
def test_native_uniform_is_the_references() -> None:
    r = random.Random(0)
    for _ in range(3000):
        key = r.getrandbits(63)
        n = r.choice([0, 1, r.getrandbits(12), r.getrandbits(64), 2**64 - 1])
        assert ns.uniform(key, n) == token_choice.uniform(key, n)


@needs_native
@pytest.mark.parametrize("top_k", [None, 20, 1])
def test_native_draws_are_the_references(top_k) -> None:
    """Rows of any batch, ties in the logits and a NaN row included."""
    torch.manual_seed(0)
    for trial in range(40):
        R = 1 + trial % 6
        logits = torch.randn(R, V) * 3
        if trial % 4 == 0:
            logits[:, :50] = logits.max()                         # ties at the top
        probs = probs_of(logits, 0.7, top_k)
        if trial % 9 == 0:
            probs[0, 100:200] = float("nan")
        keys, counters = [attempt_seed(trial, f"t{r}", 1) for r in range(R)], [trial * 3 + r for r in range(R)]
        assert ns.draw_rows(probs, keys, counters) == token_choice.draw_rows(probs, keys, counters)


@needs_native
def test_native_accept_draws_what_sequential_sampling_draws() -> None:
    """A draft checked in one pass yields the tokens drawing each row in turn would, up to the first that differs."""
    torch.manual_seed(4)
    for trial in range(60):
        m = 1 + trial % 9
        probs = probs_of(torch.randn(m, V) * 4)
        key, n0 = attempt_seed(trial, "t", 2), trial
        want = [token_choice.draw_rows(probs[j:j + 1], [key], [n0 + j])[0] for j in range(m)]
        draft = list(want[:-1])
        cut = trial % m
        if cut < m - 1:                            # make the draft differ at row `cut`
            draft[cut] = (draft[cut] + 1) % V
            want = want[:cut + 1]
        assert ns.draw_accept(probs, draft, key, n0) == want


@needs_native
def test_the_engine_picks_the_same_tokens_on_both_backends() -> None:
    """BatchModel.pick and accept on the native backend (C argmax, scores, draws) against the reference."""
    model = NanoCodeGen(GPTConfig(vocab_size=V, block_size=64, n_layer=1, n_embd=32, n_head=2)).eval()
    bm = BatchModel(model, 4, backend="native")
    assert bm.native_draws
    torch.manual_seed(2)
    logits = torch.randn(10, V) * 3
    sampled = [1, 4, 5, 9]
    keys = [attempt_seed(0, f"t{i}", 1) for i in sampled]
    for step in range(5):
        counters = [step] * len(sampled)
        assert bm.pick(logits, sampled, 0.7, 20, keys, counters) == \
            token_choice.choose(logits, sampled, 0.7, 20, keys, counters)
        logits = logits.roll(1, dims=1)
    drafts = [[5, 9, 2], [], [7]]
    rows = torch.randn(sum(len(d) + 1 for d in drafts), V) * 3
    for temperature in (0.0, 0.7):
        assert bm.accept(rows, drafts, temperature, 20, keys[:3], [0, 4, 9]) == \
            token_choice.accept(rows, drafts, temperature, 20, keys[:3], [0, 4, 9])


@needs_native
@pytest.mark.parametrize("width", [V, 1, 7, 8, 13, 1537])
def test_native_argmax_rows_is_torchs_argmax(width) -> None:
    torch.manual_seed(width)
    for trial in range(60):
        x = torch.randn(1 + trial % 9, width)
        if trial % 3 == 0:
            x = x.round()                                   # ties: the first maximum
        if trial % 5 == 0:
            x[0, trial % width] = float("nan")              # the first NaN
            x[0, (trial * 7) % width] = float("nan")
        if trial % 7 == 0:
            x[-1] = float("-inf")
        if trial % 11 == 0:
            x[-1, (trial * 3) % width] = float("inf")
        assert ns.argmax_rows(x) == x.argmax(-1).tolist()


@needs_native
@pytest.mark.parametrize("top_k", [None, 20, 1, V, 256])
def test_native_topk_scores_are_the_references(top_k) -> None:
    torch.manual_seed(1)
    logits = torch.randn(12, V) * 4
    logits[3, ::5] = logits[3, 0]                           # ties at the cut
    rows = [0, 3, 4, 11]
    x = ns.topk_scores(logits, rows, 0.7, top_k)
    assert torch.equal(x, token_choice.top_k_scores(logits[rows], 0.7, top_k))


@needs_native
def test_topk_scores_leave_what_they_cannot_do_to_torch() -> None:
    logits = torch.randn(3, V)
    assert ns.topk_scores(logits, [0, 2], 0.7, 257) is None    # a cut over 256
    logits[2, 9] = float("nan")
    assert ns.topk_scores(logits, [0, 2], 0.7, 20) is None
