"""The engine's token choice in native code (``sut/engine/native/sampling.c``): the greedy argmax, a retry's
top-k scores and its counter-based draw, the contract of sut/engine/token_choice.py (the reference),
bit for bit. The softmax in between stays torch's.

Why: in an agent run nearly every step holds sampled retry rows, and torch's argmax over a 64-row
step takes ~100 us and topk plus masking ~45 us at 4 rows, more than these calls
(``python -m benchmarks.step_variants``, section 7, times a step's token choice both ways).
"""
from __future__ import annotations

import array
import ctypes

import torch
from torch import Tensor

from sut.engine.native.library import _load, int64_rows


def draw_rows(probs: Tensor, keys: list[int], counters: list[int]) -> list[int]:
    """Row r's token from its probabilities at ``uniform(keys[r], counters[r])`` (token_choice.draw_rows)."""
    assert probs.dtype == torch.float32 and probs.is_contiguous() and probs.device.type == "cpu"
    R, V = probs.shape
    assert len(keys) == R == len(counters)
    out = torch.empty(R, dtype=torch.int64)
    k, n = _uint64_rows(keys), _uint64_rows(counters)   # held: the call reads them
    _load().draw_rows(probs.data_ptr(), R, V, k.data_ptr(), n.data_ptr(), out.data_ptr())
    return out.tolist()


def draw_accept(probs: Tensor, draft: list[int], key: int, n0: int) -> list[int]:
    """A draft checked as sequential sampling would check it: ``probs`` (len(draft) + 1, V), row j the
    distribution after draft[:j], drawn at token index n0 + j, while the tokens equal the draft.
    Returns the tokens drawn: the accepted draft tokens, then the first that differs (or a last one)."""
    assert probs.dtype == torch.float32 and probs.is_contiguous() and probs.shape[0] == len(draft) + 1
    out = torch.empty(len(draft) + 1, dtype=torch.int64)
    d = int64_rows(draft) if draft else torch.zeros(1, dtype=torch.int64)   # held: the call reads it
    n = _load().draw_accept(probs.data_ptr(), probs.shape[0], probs.shape[1], d.data_ptr(), key, n0, out.data_ptr())
    return out[:n].tolist()


def uniform(key: int, n: int) -> float:
    """The C side's ``token_choice.uniform`` (for tests)."""
    return _load().philox_uniform(key, n)


def _uint64_rows(values: list[int]) -> Tensor:
    return torch.frombuffer(array.array("Q", values), dtype=torch.uint64) if values else torch.empty(0, dtype=torch.uint64)


def argmax_rows(logits: Tensor) -> list[int]:
    """``logits.argmax(-1).tolist()`` for (R, V) float32 CPU logits: first maximum, first NaN."""
    assert logits.dtype == torch.float32 and logits.is_contiguous() and logits.device.type == "cpu"
    R, V = logits.shape
    out = torch.empty(R, dtype=torch.int64)
    _load().argmax_rows(logits.data_ptr(), R, V, out.data_ptr())
    return out.tolist()


def topk_scores(logits: Tensor, rows: list[int], temperature: float, top_k: int | None) -> Tensor | None:
    """Rows ``rows`` of ``logits`` as ``token_choice.top_k_scores`` scores them: divided by the
    temperature, entries below the top-k-th largest at -inf. None where torch must do it (a NaN,
    a top_k over 256)."""
    assert logits.dtype == torch.float32 and logits.is_contiguous() and logits.device.type == "cpu"
    V = logits.shape[1]
    x = torch.empty(len(rows), V)
    idx = int64_rows(rows)   # held: the call reads it
    rc = _load().topk_scores(logits.data_ptr(), V, idx.data_ptr(), len(rows), ctypes.c_float(temperature),
                             top_k or 0, x.data_ptr())
    return x if rc == 0 else None
