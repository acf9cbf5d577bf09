"""Draft tokens for a retry by prompt lookup: the continuation of the latest earlier occurrence of
the transcript's last three (else two) tokens, as n-gram speculative decoding drafts them.

Why: a retry is conditioned on its task, the earlier attempts' code and the verifier's feedback,
and most of what it writes repeats an earlier attempt (measured on the reference checkpoint: one
sequential step of a retry accepts 3.8 tokens on average with 8-token drafts). The engine verifies
a draft in one forward pass and keeps exactly the tokens sequential decoding would have produced
(``Engine._step``), so drafting changes how many steps a retry takes, never what it writes. Every
retry row drafts, in any batch: the draft rows' extra work costs less than the steps they save
(an interleaved A/B, docs/engine.md).

The index lives on the sequence (``Seq.grams``): each bigram and trigram of the transcript maps to
the position right after its latest occurrence whose next token is known. It is extended as the
transcript grows and rebuilt when the transcript was cut (a new list object, or a shorter one).
"""
from __future__ import annotations

from typing import Any

DRAFT_TOKENS = 8   # the longest draft; the step then holds up to 9 rows for the sequence


def draft(seq: Any, limit: int) -> list[int]:
    """Up to ``limit`` (at most DRAFT_TOKENS) tokens proposed to follow ``seq.ids``; [] when no n-gram matches."""
    ids = seq.ids
    if limit <= 0 or len(ids) < 3:
        return []
    if seq.grams_of is not ids or seq.grams_upto > len(ids):
        seq.grams, seq.grams_upto, seq.grams_of = {}, 2, ids
    grams = seq.grams
    for e in range(max(seq.grams_upto, 3), len(ids)):      # the n-grams ending just before ids[e]
        grams[(ids[e - 3], ids[e - 2], ids[e - 1])] = e
        grams[(ids[e - 2], ids[e - 1])] = e
    seq.grams_upto = len(ids)
    at = grams.get((ids[-3], ids[-2], ids[-1]))
    if at is None:
        at = grams.get((ids[-2], ids[-1]))
    if at is None:
        return []
    return ids[at:at + min(limit, DRAFT_TOKENS)]
