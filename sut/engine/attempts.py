"""One task's attempts inside the engine: how an attempt starts, takes tokens, ends, is redrawn, and
how its verdict becomes the task's end or its next attempt (sut/engine/scheduler.py batches many).

The rules are sut/agent.py's (feedback layout, truncation, redraws, sampling keys); this is their
lifecycle on a ``Seq``, kept apart from the scheduler's batching, slots and thread. ``Engine`` mixes it in;
it relies on the engine's ``cfg``, ``tok``, ``pool``, ``window``, ``prefix_reuse``,
``_kv_token_bytes``, counters ``_n`` and ``_finish``.
"""
from __future__ import annotations

import time
from typing import Any

from sut.agent import append_feedback, attempt_seed, redraw_from, should_redraw
from sut.engine.seq import PARKED, PREFILL, Seq, one_line
from sut.model import transcript as tr
from sut.records import AttemptRecord
from verifier.verdict import Status


class AttemptLifecycle:
    """The attempt methods of ``Engine`` (module docstring)."""

    def _begin_attempt(self, seq: Seq) -> None:
        """Set up attempt ``seq.attempt``: its budget, sampling key and what must be prefilled."""
        k, cfg = seq.attempt, self.cfg
        if seq.draw:   # a redraw (set up by _redraw): the last context token is recomputed
            return     # (sut.agent.redraw_from); the attempt's reuse figures stay those of its first draft
        budget = min(cfg.max_new_tokens, self.window - len(seq) - 1)   # room for a closing <|end|>
        if budget < 1:
            raise ValueError(f"attempt {k} starts at {len(seq)} tokens: no room left in the {self.window}-token window")
        if not self.prefix_reuse:
            seq.cached = 0
        seq.prompt_tokens, seq.reused = len(seq), seq.cached
        self._n["reused"] += seq.reused
        self._n["prefilled"] += seq.prompt_tokens - seq.reused
        self._n["rebuilds"] += seq.truncated
        seq.key = attempt_seed(cfg.seed, seq.task.id, k)   # the draw's key (sut/engine/token_choice.py)
        seq.temperature = cfg.temperature if k > 0 else 0.0
        seq.step, seq.budget, seq.out = tr.step_id(self.tok, k), budget, []

    def _take(self, seq: Seq, token: int) -> None:
        """Append a sampled token; end the attempt at <|end|> or the budget."""
        seq.out.append(token)
        seq.ids.append(token)
        seq.steps.append(seq.step)
        if token == self.tok.end_id or len(seq.out) >= seq.budget:
            self._end_attempt(seq)

    def _end_attempt(self, seq: Seq) -> None:
        if seq.out[-1] != self.tok.end_id:  # cut at the budget: close the attempt (not counted as generated)
            seq.append(tr.Piece([self.tok.end_id], [seq.step], [0]))
        seq.code = self.tok.decode(seq.out)
        if should_redraw(self.cfg, seq.attempt, seq.draw, seq.temperature, seq.code, seq.rejected):
            self._redraw(seq)
            return
        seq.t_submit = time.perf_counter()
        seq.state = PARKED
        try:
            seq.future = self.pool.submit(seq.code, seq.task.check)
        except Exception as e:
            seq.future = None
            self._record(seq, None)
            self._finish(seq, one_line("verifier: ", e))
            return
        seq.future.add_done_callback(lambda _f, seq=seq: self._verdict_arrived(seq))

    def _redraw(self, seq: Seq) -> None:
        """The draft repeats rejected code: drop it and draw the attempt again with the next seed
        (``sut.agent.should_redraw``; the draft's tokens still count as generated)."""
        seq.draw += 1
        seq.redrawn += len(seq.out)
        redraw_from(seq, seq.prompt_tokens)
        seq.grams_of = None   # cut in place: the draft index is rebuilt
        seq.key = attempt_seed(self.cfg.seed, seq.task.id, seq.attempt, seq.draw)
        seq.out = []
        seq.state = PREFILL

    def _next_attempt(self, seq: Seq) -> None:
        try:
            verdict = seq.future.result()
        except Exception as e:  # the pool promises a Verdict; anything else is its failure
            self._record(seq, None)
            self._finish(seq, one_line("verifier: ", e))
            return
        self._record(seq, verdict)
        k = seq.attempt
        if verdict.status is Status.SANDBOX_ERROR:  # the verifier failed, not the code: never a silent fail
            self._finish(seq, f"verifier: {verdict.feedback or verdict.message or 'sandbox error'}".splitlines()[0])
        elif verdict.passed:
            seq.result.passed = True
            self._finish(seq)
        elif k + 1 >= self.cfg.max_attempts:
            self._finish(seq)
        else:
            seq.rejected.add(seq.code)
            seq.attempt, seq.draw, seq.redrawn = k + 1, 0, 0
            seq.truncated = append_feedback(seq, self.tok, seq.prefix, self.cfg.shown(verdict.feedback), k + 1,
                                             self.cfg.max_new_tokens, self.window)
            seq.state = PREFILL

    def _record(self, seq: Seq, verdict: Any) -> None:
        now = seq.t_verdict or time.perf_counter()
        seq.result.attempts.append(AttemptRecord(
            attempt=seq.attempt, context_len=len(seq), prompt_tokens=seq.prompt_tokens, gen_tokens=len(seq.out),
            reused_tokens=seq.reused, prefilled_tokens=seq.prompt_tokens - seq.reused, prefill_ms=seq.prefill_ms,
            decode_ms=(seq.t_submit - seq.t_decode) * 1e3, verify_ms=(now - seq.t_submit) * 1e3,
            status=(verdict.status if verdict is not None else Status.SANDBOX_ERROR).value,
            kv_bytes=self._kv_token_bytes * len(seq), truncated=seq.truncated, code=seq.code,
            feedback=verdict.feedback if verdict is not None else "", token_ids=list(seq.out),
            redraws=seq.draw, redrawn_tokens=seq.redrawn))
        seq.result.n_tokens += len(seq.out) + seq.redrawn
        seq.t_verdict = 0.0
        self._n["attempts"] += 1
        self._n["tokens"] += len(seq.out) + seq.redrawn
