"""What the SUT hands the harness for one task: plain dataclasses, no torch.

The engines fill them, ``sut/loadgen_sut.py`` turns an ``AgentResult`` into LoadGen's response bytes
(``to_response``, verifier/response_format.py), and the harness writes them to agent_records.jsonl; so the
harness's checker, report, accuracy pass and audits read them without importing a model.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from verifier.response_format import AttemptOut, Response


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
