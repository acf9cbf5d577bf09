"""The retry loop's rules: what an attempt may do and how a failure becomes the next attempt's context.

The loop itself is the engine's (sut/engine/scheduler.py): one task on its own is the engine with
one sequence (``sut.engine.scheduler.run_agent``), many tasks are the same loop batched, and the
external engines (sut/engine/external/engine.py) drive the same rules with another engine's tokens.
What they share lives here, so that every engine lays out a retry, trims a transcript, redraws a
repeated answer and seeds a retry's sampling the same way:

- attempt 0 is greedy, retries are sampled with draws keyed by (seed, task id, attempt, redraw)
  only (``attempt_seed``): a task's result never depends on batching or order;
- a failed attempt's feedback is appended to the same transcript (``append_feedback``), which
  is trimmed to the task and the latest attempt when it would outgrow the context window;
- a retry that writes code the verifier already rejected is drawn again (``should_redraw``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sut.model import transcript as tr
from sut.model.tokenizer import CodeTokenizer


@dataclass
class AgentConfig:
    max_attempts: int = 5
    max_new_tokens: int = 160   # per attempt; longer generations are cut and closed with <|end|>
    temperature: float = 0.7    # retries only: attempt 0 is greedy
    top_k: int | None = 20
    seed: int = 0
    redraws: int = 3            # a retry that writes code the verifier already rejected is redrawn (with its
                                # own seed) up to this many times before it is submitted; 0 = off
    feedback: str = "full"      # what the model reads after a failure: the verifier's text, or "none": a bare
                                # "failed" (the ablation that measures what reading the feedback is worth)

    def shown(self, feedback: str) -> str:
        """The feedback text the model is given for a failed attempt."""
        return BLIND_FEEDBACK if self.feedback == "none" else feedback


BLIND_FEEDBACK = "failed"
FEEDBACK_MODES = ("full", "none")


def should_redraw(cfg: AgentConfig, attempt: int, draws: int, temperature: float, code: str, rejected: set[str]) -> bool:
    """Whether a retry's draft is discarded and drawn again: it repeats code the verifier already rejected, the
    redraw budget is not spent, and the retry is sampled (a greedy redraw would write the same code again)."""
    return attempt > 0 and temperature > 0 and draws < cfg.redraws and code in rejected


def attempt_seed(seed: int, task_id: str, attempt: int, draw: int = 0) -> int:
    """A 63-bit sampling seed from (seed, task id, attempt, redraw) alone."""
    key = f"{seed}:{task_id}:{attempt}" + (f":{draw}" if draw else "")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def redraw_from(buf: tr.TokenBuffer, prompt_tokens: int) -> None:
    """Drop the draft after the attempt's ``prompt_tokens`` context; the last context token is
    recomputed (one token) so that its logits give the new draft's first token."""
    del buf.ids[prompt_tokens:], buf.steps[prompt_tokens:]
    buf.cached = min(buf.cached, prompt_tokens - 1)


def append_feedback(seq: tr.TokenBuffer, tok: CodeTokenizer, prefix: tr.Piece, feedback: str,
                     attempt: int, budget: int, window: int) -> bool:
    """Append the feedback for ``attempt`` leaving room for ``budget`` new tokens (+ <|end|>).

    ``seq`` is the engine's sequence or the external engine's transcript (both TokenBuffers). Returns True if
    older attempts had to be dropped:
    the transcript then keeps the task prompt and the latest attempt (its exact tokens,
    from after the last <|code|>) with its feedback, or, if even that is too long, the
    task and the feedback alone; the caller rebuilds the cache from scratch.
    """
    fb = tr.feedback_extension(tok, feedback, attempt)
    if len(seq) + len(fb) + budget + 1 <= window:
        seq.append(fb)
        return False
    start = len(seq.ids) - seq.ids[::-1].index(tok.code_id)  # first token of the latest attempt
    latest = tr.Piece(seq.ids[start:], seq.steps[start:], [0] * (len(seq.ids) - start))
    kept = tr.Piece(list(prefix.ids), list(prefix.steps), list(prefix.mask)).extend(latest).extend(fb)
    if len(kept) + budget + 1 > window:
        kept = tr.Piece(list(prefix.ids), list(prefix.steps), list(prefix.mask)).extend(fb)
    seq.reset(kept)
    return True
