"""The retry loop for one task: generate code, verify it, feed the verdict back, retry.

One sequence at a time, with a one-slot KV cache: the prompt is prefilled once, each
attempt is decoded token by token, and a retry only prefills what is new (the tail of
the previous attempt not yet in the cache plus ``<|feedback|> FEEDBACK <|code|>``), so
the cache is reused across attempts. The batched engine (sut/engine/scheduler.py) does the same
for many tasks at once and must produce the same tokens; it shares ``sample_next`` and
``attempt_seed`` with this module for that reason.

Decoding is greedy on attempt 0 and sampled on retries, with a generator seeded from
(seed, task id, attempt) only: a task's result never depends on batching or order.
"""
from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

from sut.model import transcript as tr
from sut.model.gpt import KVCache, NanoCodeGen
from sut.model.tokenizer import CodeTokenizer
from verifier.response_format import AttemptOut, Response

log = logging.getLogger(__name__)


class _Pool(Protocol):  # verifier.pool.SandboxPool; typed structurally to keep imports light
    def verify(self, code: str, check: Any) -> Any: ...


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


@dataclass
class AttemptRecord:
    attempt: int
    context_len: int        # transcript tokens after this attempt (context + generated)
    prompt_tokens: int      # tokens the attempt was conditioned on (task, earlier attempts, feedback)
    gen_tokens: int         # tokens generated, including <|end|> when the model emitted it
    reused_tokens: int      # prompt tokens already in the KV cache
    prefilled_tokens: int   # prompt tokens run through the model before decoding
    prefill_ms: float
    decode_ms: float
    verify_ms: float
    status: str             # verifier.verdict.Status value
    kv_bytes: int           # KV-cache bytes the sequence occupies at the end of the attempt
    truncated: bool         # older attempts were dropped to fit the context window
    code: str
    feedback: str           # what the verifier said ("" when passed)
    token_ids: list[int] = field(default_factory=list)  # the generated ids (what a batched engine must match)
    redraws: int = 0        # drafts discarded because they repeated rejected code (AgentConfig.redraws)
    redrawn_tokens: int = 0  # tokens generated for those drafts (in the task's n_tokens, not in gen_tokens)


@dataclass
class AgentResult:
    task_id: str
    attempts: list[AttemptRecord] = field(default_factory=list)
    passed: bool = False
    n_tokens: int = 0       # every generated token over all attempts, discarded redraws included
    error: str | None = None

    def to_response(self) -> Response:
        """The bytes-to-be the SUT hands LoadGen (verifier/response_format.py)."""
        return Response(self.task_id, [AttemptOut(a.code, a.status, a.gen_tokens) for a in self.attempts],
                        self.n_tokens, self.error)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def should_redraw(cfg: AgentConfig, attempt: int, draws: int, temperature: float, code: str, rejected: set[str]) -> bool:
    """Whether a retry's draft is discarded and drawn again: it repeats code the verifier already rejected, the
    redraw budget is not spent, and the retry is sampled (a greedy redraw would write the same code again)."""
    return attempt > 0 and temperature > 0 and draws < cfg.redraws and code in rejected


def attempt_seed(seed: int, task_id: str, attempt: int, draw: int = 0) -> int:
    """A 63-bit sampling seed from (seed, task id, attempt, redraw) alone."""
    key = f"{seed}:{task_id}:{attempt}" + (f":{draw}" if draw else "")
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") & ((1 << 63) - 1)


def make_generator(seed: int, task_id: str, attempt: int, device: str | torch.device = "cpu",
                   draw: int = 0) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(attempt_seed(seed, task_id, attempt, draw))


def redraw_from(buf: tr.TokenBuffer, prompt_tokens: int) -> None:
    """Drop the draft after the attempt's ``prompt_tokens`` context; the last context token is
    recomputed (one token) so that its logits give the new draft's first token."""
    del buf.ids[prompt_tokens:], buf.steps[prompt_tokens:]
    buf.cached = min(buf.cached, prompt_tokens - 1)


def sample_next(logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None) -> int:
    """Next token from one row's logits (V,): argmax when temperature <= 0, else top-k sampling.

    Works on a single row with that sequence's own generator, so a batched caller that
    applies it row by row draws exactly what the one-sequence agent draws.
    """
    if temperature <= 0:
        return int(torch.argmax(logits))
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.numel():
        kth = torch.topk(logits, top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    return int(torch.multinomial(probs, 1, generator=generator))


class _Sequence(tr.TokenBuffer):
    """The transcript of one task and how much of it the KV cache already holds."""

    def __init__(self, model: NanoCodeGen, cache: KVCache, device: torch.device | str) -> None:
        super().__init__()
        self.model, self.cache, self.device = model, cache, device

    def feed(self) -> Tensor:
        """Run every not-yet-cached token through the model; logits after the last (V,)."""
        new_ids = torch.tensor([self.ids[self.cached:]], device=self.device)
        new_steps = torch.tensor([self.steps[self.cached:]], device=self.device)
        logits = self.model.forward_cached(new_ids, new_steps, torch.zeros(1, dtype=torch.long),
                                           torch.tensor([self.cached]), self.cache)
        self.cached = len(self.ids)
        return logits[0]


def _append_feedback(seq: tr.TokenBuffer, tok: CodeTokenizer, prefix: tr.Piece, feedback: str,
                     attempt: int, budget: int, window: int) -> bool:
    """Append the feedback for ``attempt`` leaving room for ``budget`` new tokens (+ <|end|>).

    ``seq`` is this module's sequence or the engine's (both TokenBuffers). Returns True if
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


@torch.no_grad()
def run_agent(task: Any, model: NanoCodeGen, tokenizer: CodeTokenizer, pool: _Pool, cfg: AgentConfig | None = None,
              device: str | torch.device = "cpu", cache: KVCache | None = None) -> AgentResult:
    """Run the retry loop on ``task`` (sut.tasks.record.Task) with a one-slot cache (``cache`` lets a
    caller reuse one across tasks). Never raises for a model or verifier failure: the
    error is recorded in ``AgentResult.error`` with the attempts made so far."""
    result = AgentResult(task.id)
    try:
        _run(task, model, tokenizer, pool, cfg or AgentConfig(), device, cache, result)
    except Exception as e:  # noqa: BLE001 - one task's failure must not kill the run; it is reported
        log.exception("task %s failed", task.id)
        result.error = f"{type(e).__name__}: {e}".splitlines()[0]
    return result


def _run(task: Any, model: NanoCodeGen, tok: CodeTokenizer, pool: _Pool, cfg: AgentConfig,
         device: str | torch.device, cache: KVCache | None, result: AgentResult) -> None:
    window = model.config.block_size
    cache = cache or model.new_cache(1)
    seq = _Sequence(model, cache, device)
    prefix = tr.prompt_prefix(tok, task.prompt)
    if len(prefix) + 1 >= window:
        raise ValueError(f"prompt is {len(prefix)} tokens: the context window is {window}")
    seq.reset(prefix)
    feedback: str | None = None     # the verifier's feedback on the previous attempt
    rejected: set[str] = set()      # code the verifier has rejected (redraws avoid resubmitting it)
    for k in range(cfg.max_attempts):
        truncated = False
        if k > 0:
            assert feedback is not None
            truncated = _append_feedback(seq, tok, prefix, feedback, k, cfg.max_new_tokens, window)
        budget = min(cfg.max_new_tokens, window - len(seq) - 1)  # room for a closing <|end|>
        if budget < 1:
            raise ValueError(f"attempt {k} starts at {len(seq)} tokens: no room left in the {window}-token window")
        step = tr.step_id(tok, k)
        prompt_tokens, reused = len(seq), seq.cached

        t0 = time.perf_counter()
        logits = seq.feed()
        t1 = time.perf_counter()
        out, code, redraws, redrawn = _draw(seq, tok, task, cfg, k, logits, budget, prompt_tokens, rejected)
        t2 = time.perf_counter()
        if out[-1] != tok.end_id:  # cut at the budget: close the attempt ourselves (not counted as generated)
            seq.append(tr.Piece([tok.end_id], [step], [0]))

        verdict = pool.verify(code, task.check)
        t3 = time.perf_counter()
        result.attempts.append(AttemptRecord(
            attempt=k, context_len=len(seq), prompt_tokens=prompt_tokens, gen_tokens=len(out),
            reused_tokens=reused, prefilled_tokens=prompt_tokens - reused,
            prefill_ms=(t1 - t0) * 1e3, decode_ms=(t2 - t1) * 1e3, verify_ms=(t3 - t2) * 1e3,
            status=verdict.status.value, kv_bytes=model.kv_bytes(len(seq)), truncated=truncated,
            code=code, feedback=verdict.feedback, token_ids=out, redraws=redraws, redrawn_tokens=redrawn))
        result.n_tokens += len(out) + redrawn
        if verdict.passed:
            result.passed = True
            return
        feedback = cfg.shown(verdict.feedback)
        rejected.add(code)


def _draw(seq: _Sequence, tok: CodeTokenizer, task: Any, cfg: AgentConfig, k: int, logits: Tensor,
          budget: int, prompt_tokens: int, rejected: set[str]) -> tuple[list[int], str, int, int]:
    """Attempt k's tokens and code from ``logits`` on, a retry that repeats rejected code redrawn (cfg.redraws):
    the kept draw's tokens and code, the redraws and the tokens they discarded."""
    step = tr.step_id(tok, k)
    temperature = cfg.temperature if k > 0 else 0.0
    redraws = redrawn = 0
    while True:   # one draft; a retry repeating rejected code is redrawn (cfg.redraws)
        gen = make_generator(cfg.seed, task.id, k, logits.device, redraws) if k > 0 else None
        out: list[int] = []
        while True:
            nxt = sample_next(logits, temperature, cfg.top_k, gen)
            out.append(nxt)
            seq.append(tr.Piece([nxt], [step], [0]))
            if nxt == tok.end_id or len(out) >= budget:
                break
            logits = seq.feed()
        code = tok.decode(out)
        if not should_redraw(cfg, k, redraws, temperature, code, rejected):
            return out, code, redraws, redrawn
        redraws, redrawn = redraws + 1, redrawn + len(out)
        redraw_from(seq, prompt_tokens)
        logits = seq.feed()
