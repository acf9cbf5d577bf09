"""The native token choice (sut/engine/native/sampling.c via sut/engine/native/sampling.py): bit for bit what torch picks.

Every check compares with torch itself, built and run for real: the generator's stream with
``exponential_``, the draw with ``torch.multinomial`` and ``sample_next``, the argmax and the
top-k scores with torch's operators, and the engine's pick on both paths."""
from __future__ import annotations

import pytest
import torch

from sut.engine.native import library as native
from sut.agent import attempt_seed, make_generator, sample_next
from sut.engine.batch import BatchModel, sample_rows
from sut.model.gpt import GPTConfig, NanoCodeGen

ok, why = native.available()
pytestmark = pytest.mark.skipif(not ok, reason=f"native kernels unavailable: {why}")
if ok:
    from sut.engine.native.sampling import NativeGenerator, argmax_rows, race, race_accept, stream_matches_torch, topk_scores

V = 1536


def top_k_probs(logits: torch.Tensor, temperature: float, top_k: int | None) -> torch.Tensor:
    x = logits / temperature
    if top_k is not None:
        x = x.masked_fill(x < torch.topk(x, top_k, dim=-1).values[:, -1:], float("-inf"))
    return torch.softmax(x, dim=-1)


@pytest.mark.parametrize("seed", [0, 5489, 2**32 - 1, 2**32 + 5, attempt_seed(7, "eval-0001", 3, 1)])
def test_the_stream_is_torchs_exponential(seed) -> None:
    """Through several refills of the state, and in pieces of any length (a token draws V at a time)."""
    g = torch.Generator().manual_seed(seed)
    want = torch.empty(4000).exponential_(1, generator=g)
    ng = NativeGenerator(seed)
    got = torch.cat([ng.exponentials(n) for n in (1, 623, 1, 1000, 1375, 1000)])
    assert torch.equal(got, want)
    assert stream_matches_torch()


@pytest.mark.parametrize("top_k", [None, 20, 1])
def test_race_draws_what_multinomial_draws(top_k) -> None:
    """Token after token from the same generators, rows of any batch, ties in the logits included."""
    torch.manual_seed(0)
    for trial in range(40):
        R = 1 + trial % 6
        logits = torch.randn(R, V) * 3
        if trial % 4 == 0:
            logits[:, :50] = logits.max()                         # ties at the top
        probs = top_k_probs(logits, 0.7, top_k)
        seeds = [trial * 101 + r for r in range(R)]
        tg, ng = [torch.Generator().manual_seed(s) for s in seeds], [NativeGenerator(s) for s in seeds]
        for _ in range(3):
            want = [torch.multinomial(probs[r], 1, generator=tg[r]).item() for r in range(R)]
            assert race(probs, ng) == want


def test_race_keeps_torchs_argmax_on_nan() -> None:
    """A NaN probability (a model gone bad) is picked where torch's ``argmax(probs / q)`` picks it: first NaN."""
    probs = top_k_probs(torch.randn(2, V), 1.0, 20)
    probs[0, 700] = probs[0, 900] = float("nan")
    seeds = [11, 12]
    want = sample_rows_with(probs, [torch.Generator().manual_seed(s) for s in seeds])
    assert race(probs, [NativeGenerator(s) for s in seeds]) == want == [700, want[1]]


def sample_rows_with(probs: torch.Tensor, gens: list[torch.Generator]) -> list[int]:
    q = torch.empty_like(probs)
    for i, g in enumerate(gens):
        q[i].exponential_(1, generator=g)
    return (probs / q).argmax(-1).tolist()


@pytest.mark.parametrize("width", [V, 1, 7, 8, 13, 1537])
def test_argmax_rows_is_torchs_argmax(width) -> None:
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
        assert argmax_rows(x) == x.argmax(-1).tolist()


@pytest.mark.parametrize("top_k", [None, 20, 1, V, 256])
def test_topk_scores_are_what_sample_next_scores(top_k) -> None:
    torch.manual_seed(1)
    logits = torch.randn(12, V) * 4
    logits[3, ::5] = logits[3, 0]                           # ties at the cut
    rows = [0, 3, 4, 11]
    x = topk_scores(logits, rows, 0.7, top_k)
    want = logits[rows] / 0.7
    if top_k is not None and top_k < V:
        want = want.masked_fill(want < torch.topk(want, top_k, dim=-1).values[:, -1:], float("-inf"))
    assert torch.equal(x, want)


def test_topk_scores_leave_what_they_cannot_do_to_torch() -> None:
    logits = torch.randn(3, V)
    assert topk_scores(logits, [0, 2], 0.7, 257) is None    # a cut over 256
    logits[2, 9] = float("nan")
    assert topk_scores(logits, [0, 2], 0.7, 20) is None


def test_the_engine_picks_the_same_tokens_on_both_paths() -> None:
    """BatchModel.pick with native draws (argmax, scores, race) against torch's path and sample_next."""
    model = NanoCodeGen(GPTConfig(vocab_size=V, block_size=64, n_layer=1, n_embd=32, n_head=2)).eval()
    bm = BatchModel(model, 4, backend="native")
    assert bm.native_draws and isinstance(bm.generator(1), NativeGenerator)
    torch.manual_seed(2)
    logits = torch.randn(10, V) * 3
    sampled = [1, 4, 5, 9]
    seeds = [attempt_seed(0, f"t{i}", 1) for i in sampled]
    native_gens, torch_gens = [bm.generator(s) for s in seeds], [make_generator(0, f"t{i}", 1) for i in sampled]
    single_gens = [make_generator(0, f"t{i}", 1) for i in sampled]
    for _ in range(5):
        got = bm.pick(logits, sampled, 0.7, 20, native_gens)
        want = logits.argmax(-1).tolist()
        for i, t in zip(sampled, sample_rows(logits[sampled], 0.7, 20, torch_gens)):
            want[i] = t
        assert got == want
        assert [got[i] for i in sampled] == [sample_next(logits[i], 0.7, 20, g) for i, g in zip(sampled, single_gens)]
        logits = logits.roll(1, dims=1)


def test_race_accept_draws_what_sequential_sampling_draws() -> None:
    """Rows drawn one by one while they match the draft: the same tokens and the same generator state
    after, as drawing each row's token in turn and stopping at the first that differs."""
    torch.manual_seed(4)
    for trial in range(60):
        m = 1 + trial % 9
        probs = top_k_probs(torch.randn(m, V) * 4, 0.7, 20)
        seq_gen, acc_gen = NativeGenerator(trial), NativeGenerator(trial)
        want = []
        for j in range(m):                         # the sequential reference, with a draft built to match
            want.append(race(probs[j:j + 1].contiguous(), [seq_gen])[0])
        draft = list(want[:-1])
        cut = trial % m
        if cut < m - 1:                            # make the draft differ at row `cut`
            draft[cut] = (draft[cut] + 1) % V
            want = want[:cut + 1]
        assert race_accept(probs, draft, acc_gen) == want
        again = NativeGenerator(trial)
        for _ in want:
            again.exponentials(V)
        assert torch.equal(again.exponentials(10), acc_gen.exponentials(10))   # advanced exactly as far
