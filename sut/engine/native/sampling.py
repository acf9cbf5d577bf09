"""The engine's token choice in native code (``sut/engine/native/sampling.c``), bit for bit what torch computes:
the greedy argmax, a retry's top-k scores, and its draw from torch's CPU generator stream without
the logarithms of entries top-k has zeroed. The softmax in between stays torch's.

Why: a sampled token is ``torch.multinomial(probs, 1, generator=g)``, which draws one Exp(1)
per vocabulary entry (1,536 here) and takes their ratio's argmax (``sample_rows``). In torch that
is ~36 us a row, almost all of it the 1,536 logarithms, and in an agent run nearly every step
holds a sampled retry row. Top-k leaves 20 entries nonzero; the others only advance the stream.
Around it, torch's argmax over a 64-row step takes ~100 us and topk plus masking ~45 us at 4 rows
(`python -m benchmarks.step_variants`, section 7, times a step's token choice both ways).

``NativeGenerator(seed)`` starts where ``torch.Generator().manual_seed(seed)`` starts; ``race``
draws each row's token from its generator and advances it exactly as torch's draw would. Before
the first use in a process, ``stream_matches_torch`` compares a stretch of the stream with
torch's own ``exponential_``; if they differ (another torch, another generator), ``enabled()`` is
False and the engine keeps torch's generators (a warning says so).
"""
from __future__ import annotations

import ctypes
import logging
from functools import lru_cache

import torch
from torch import Tensor

from sut.engine.native.library import _load, int64_rows

log = logging.getLogger(__name__)


class NativeGenerator:
    """The state of torch's CPU generator (MT19937) after ``manual_seed(seed)``, in a tensor the C draws update."""

    def __init__(self, seed: int) -> None:
        lib = _load()
        self.state = torch.empty(lib.mt_state_words(), dtype=torch.int32)
        self.ptr = self.state.data_ptr()
        lib.mt_seed(self.ptr, seed)

    def exponentials(self, n: int) -> Tensor:
        """The next ``n`` Exp(1) draws: what ``torch.empty(n).exponential_(1, generator=g)`` returns."""
        out = torch.empty(n)
        _load().mt_exponentials(self.ptr, n, out.data_ptr())
        return out


def race(probs: Tensor, gens: list[NativeGenerator]) -> list[int]:
    """Row r's token: ``argmax(probs[r] / q)`` with ``q`` the next ``V`` Exp(1) draws of ``gens[r]``."""
    assert probs.dtype == torch.float32 and probs.is_contiguous() and probs.device.type == "cpu"
    R, V = probs.shape
    assert len(gens) == R
    out = torch.empty(R, dtype=torch.int64)
    states = int64_rows([g.ptr for g in gens])   # held: the call reads it
    _load().sample_race(probs.data_ptr(), R, V, states.data_ptr(), out.data_ptr())
    return out.tolist()


def race_accept(probs: Tensor, draft: list[int], gen: NativeGenerator) -> list[int]:
    """A draft checked as sequential sampling would check it: ``probs`` (len(draft) + 1, V), row j the
    distribution after draft[:j]; tokens are drawn from ``gen`` row by row while they equal the draft.
    Returns the tokens drawn: the accepted draft tokens, then the first that differs (or a last one)."""
    assert probs.dtype == torch.float32 and probs.is_contiguous() and probs.shape[0] == len(draft) + 1
    out = torch.empty(len(draft) + 1, dtype=torch.int64)
    d = int64_rows(draft) if draft else torch.zeros(1, dtype=torch.int64)   # held: the call reads it
    n = _load().race_accept(probs.data_ptr(), probs.shape[0], probs.shape[1], d.data_ptr(), gen.ptr, out.data_ptr())
    return out[:n].tolist()


def argmax_rows(logits: Tensor) -> list[int]:
    """``logits.argmax(-1).tolist()`` for (R, V) float32 CPU logits: first maximum, first NaN."""
    assert logits.dtype == torch.float32 and logits.is_contiguous() and logits.device.type == "cpu"
    R, V = logits.shape
    out = torch.empty(R, dtype=torch.int64)
    _load().argmax_rows(logits.data_ptr(), R, V, out.data_ptr())
    return out.tolist()


def topk_scores(logits: Tensor, rows: list[int], temperature: float, top_k: int | None) -> Tensor | None:
    """Rows ``rows`` of ``logits`` as ``sample_next`` scores them before its softmax: divided by the
    temperature, entries below the top-k-th largest at -inf. None where torch must do it (a NaN,
    a top_k over 256)."""
    assert logits.dtype == torch.float32 and logits.is_contiguous() and logits.device.type == "cpu"
    V = logits.shape[1]
    x = torch.empty(len(rows), V)
    idx = int64_rows(rows)   # held: the call reads it
    rc = _load().topk_scores(logits.data_ptr(), V, idx.data_ptr(), len(rows), ctypes.c_float(temperature),
                             top_k or 0, x.data_ptr())
    return x if rc == 0 else None


@lru_cache(maxsize=1)
def stream_matches_torch() -> bool:
    """Does the native stream equal torch's ``exponential_`` here? Three seeds (one past 32 bits), 5,000
    draws each: more than three refills of the state, through the first and the later ones."""
    for seed in (0, 1234567, (1 << 40) + 77):
        g = torch.Generator().manual_seed(seed)
        want = torch.empty(5000).exponential_(1, generator=g)
        if not torch.equal(NativeGenerator(seed).exponentials(5000), want):
            return False
    return True


@lru_cache(maxsize=1)
def enabled() -> bool:
    """Native draws apply: the stream is torch's (warns once when it is not)."""
    if stream_matches_torch():
        return True
    log.warning("native sampling disabled: its stream differs from torch %s's generator; sampling with torch",
                torch.__version__)
    return False
