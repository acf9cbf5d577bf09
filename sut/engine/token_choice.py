"""How the engine chooses the next token from a row of logits: the contract, and its reference.

- A greedy row (attempt 0; any row at temperature 0) takes its argmax: the first maximum, or the
  first NaN (torch.argmax's rule).
- A sampled row (a retry) scores its logits: divided by the temperature, every entry below the
  top-k-th largest (counted with repeats) at -inf (``top_k_scores``); ``torch.softmax`` turns the
  scores into float32 probabilities ``p``.
- Its token is the inverse CDF of ``p`` at one uniform ``u``: the first j with
  ``u < p[0] + ... + p[j]``, summed in double precision in index order, entries that are not
  positive skipped (past the end: the last positive entry).
- ``u = uniform(key, n)``: the top 53 bits of the first output of Philox4x64-10 (numpy's
  ``numpy.random.Philox``) with key ``(key, 0)`` and counter ``n``, where ``key`` is
  ``sut.agent.attempt_seed(seed, task id, attempt, redraw)`` and ``n`` the token's index in the draw
  (0 for an attempt's first token).

Why a counter-based generator of our own: a token's randomness is a pure function of (seed, task,
attempt, redraw, index), not a generator's state, so it cannot depend on batching, order or which
engine backend runs; a speculative draft's tokens are checked in one pass with the uniforms that
sequential decoding would use; and the C side (sut/engine/native/sampling.c) implements the same
integer arithmetic and double sums, so it equals this module by construction, on any CPU
(tests/test_token_choice.py holds them to each other), with no torch internals mirrored.

This module is the reference and the torch backend's path; the native backend runs the C twin.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_TOP53 = 1.0 / (1 << 53)


def uniform(key: int, n: int) -> float:
    """The uniform in [0, 1) of token ``n`` of the draw keyed ``key`` (module docstring)."""
    gen = np.random.Philox(key=np.array([key, 0], dtype=np.uint64), counter=np.array([n, 0, 0, 0], dtype=np.uint64))
    return float(int(gen.random_raw()) >> 11) * _TOP53


def inverse_cdf(probs: np.ndarray, u: float) -> int:
    """The first j with u < cumsum(p)[j] over the positive entries of ``probs`` (float32, one row)."""
    p = np.where(probs > 0, probs, 0).astype(np.float64)   # NaN and zero mass: never chosen, add nothing
    j = int(np.searchsorted(np.cumsum(p), u, side="right"))
    if j < len(p):
        return j
    positive = np.flatnonzero(p)
    return int(positive[-1]) if len(positive) else 0


def top_k_scores(logits: Tensor, temperature: float, top_k: int | None) -> Tensor:
    """Rows of logits divided by ``temperature``, entries below the row's top-k-th largest at -inf."""
    x = logits.float() / temperature
    if top_k is not None and top_k < x.shape[-1]:
        x = x.masked_fill(x < torch.topk(x, top_k, dim=-1).values[:, -1:], float("-inf"))
    return x


def draw_rows(probs: Tensor, keys: list[int], counters: list[int]) -> list[int]:
    """Row r's token from its probabilities at ``uniform(keys[r], counters[r])``."""
    rows = probs.detach().float().cpu().numpy()
    return [inverse_cdf(rows[r], uniform(k, n)) for r, (k, n) in enumerate(zip(keys, counters))]


def choose(logits: Tensor, sampled: list[int], temperature: float, top_k: int | None, keys: list[int],
           counters: list[int]) -> list[int]:
    """Every row's token: the argmax, except the rows ``sampled`` (with their ``keys`` and ``counters``),
    which are drawn."""
    tokens = logits.argmax(-1).tolist()
    if sampled:
        probs = torch.softmax(top_k_scores(logits[sampled], temperature, top_k), dim=-1)
        for i, t in zip(sampled, draw_rows(probs, keys, counters)):
            tokens[i] = t
    return tokens


def accept(logits: Tensor, drafts: list[list[int]], temperature: float, top_k: int | None, keys: list[int],
           counters: list[int]) -> list[list[int]]:
    """The tokens each speculative group yields: ``logits`` holds, group after group, len(draft) + 1 rows,
    row j the distribution after the group's first j draft tokens. A group's tokens are drawn row by row
    (greedy: argmaxes), row j at token index ``counters[g] + j``, while they equal its draft: what
    sequential decoding would write, and the first token that departs from the draft."""
    if temperature <= 0:
        return greedy_accept(logits.argmax(-1).tolist(), drafts)
    out, r = [], 0
    for draft, key, n0 in zip(drafts, keys, counters):
        got = []
        for j in range(len(draft) + 1):
            got += choose(logits[r + j:r + j + 1], [0], temperature, top_k, [key], [n0 + j])
            if j == len(draft) or got[-1] != draft[j]:
                break
        out.append(got)
        r += len(draft) + 1
    return out


def greedy_accept(argmax: list[int], drafts: list[list[int]]) -> list[list[int]]:
    """``accept`` at temperature 0 from the rows' argmaxes: each group yields argmaxes while they confirm
    its draft, and the first that departs from it."""
    out, r = [], 0
    for draft in drafts:
        got = []
        for j in range(len(draft) + 1):
            got.append(argmax[r + j])
            if j == len(draft) or argmax[r + j] != draft[j]:
                break
        out.append(got)
        r += len(draft) + 1
    return out
