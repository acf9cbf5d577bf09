"""How a task, its attempts and the verifier's feedback become model inputs.

Token layout (one sequence per task):

    <|start|> <|task|> PROMPT <|code|> CODE_0 <|end|> <|feedback|> FEEDBACK_0 <|code|> CODE_1 <|end|> ...

With a tokenizer that has attempt markers (the HF-format checkpoints, sut/model/hf_format.py) a
retry's feedback ends ``FEEDBACK_k-1 <|attempt_k|> <|code|>``: the attempt number is in the
text and every retry-step id is 0. With a format-1 tokenizer every token instead carries a
retry-step id (the learned retry-step embedding): the start/task/prompt tokens are step 0,
and attempt k's tokens (the <|feedback|> and feedback text before it, its <|code|>, its code
and its <|end|>) are step k, capped at MAX_STEP. The model only ever *writes* code and <|end|>; everything else is written by
the agent, so the training loss is masked to code + <|end|> tokens.

The agent uses the incremental pieces (``prompt_prefix``, ``feedback_extension``,
``code_piece``); the trainer uses ``build_transcript`` for whole sequences. Both go
through the same pieces, so training and inference sequences agree token for token.
"""
from __future__ import annotations

import os

from collections.abc import Sequence
from dataclasses import dataclass, field

from sut.model.tokenizer import CodeTokenizer

MAX_STEP = 15  # retry-step embedding has 16 rows: steps 0..15


def step_id(tok: CodeTokenizer, attempt: int) -> int:
    """Retry-step id for attempt ``attempt`` (0-based), capped at MAX_STEP; always 0 where the
    tokenizer's attempt markers carry the attempt number instead."""
    return 0 if tok.attempt_ids else min(attempt, MAX_STEP)


@dataclass
class Piece:
    """A run of tokens with their retry-step ids and loss mask (1 = model output)."""

    ids: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, other: "Piece") -> "Piece":
        self.ids += other.ids
        self.steps += other.steps
        self.mask += other.mask
        return self


def prompt_prefix(tok: CodeTokenizer, prompt: str) -> Piece:
    """``<|start|> <|task|> PROMPT <|code|>``: everything attempt 0 is conditioned on."""
    ids = [tok.start_id, tok.task_id, *tok.encode(prompt), tok.code_id]
    return Piece(ids, [0] * len(ids), [0] * len(ids))


def feedback_extension(tok: CodeTokenizer, feedback: str, attempt: int) -> Piece:
    """``<|feedback|> FEEDBACK [<|attempt_k|>] <|code|>`` appended before attempt ``attempt`` (>= 1)."""
    ids = [tok.feedback_id, *tok.encode(feedback), *tok.attempt_marker(attempt), tok.code_id]
    return Piece(ids, [step_id(tok, attempt)] * len(ids), [0] * len(ids))


def code_piece(tok: CodeTokenizer, code: str, attempt: int, train: bool | int = True) -> Piece:
    """``CODE <|end|>`` of attempt ``attempt``. ``train`` puts it under the loss: all of it
    (True), none (False), or only its first ``train`` tokens (an int)."""
    ids = [*tok.encode(code), tok.end_id]
    n = len(ids) if train is True else int(train)
    return Piece(ids, [step_id(tok, attempt)] * len(ids), [1] * n + [0] * (len(ids) - n))


def build_transcript(
    tok: CodeTokenizer,
    prompt: str,
    attempts: Sequence[str],
    feedbacks: Sequence[str],
    prefix_loss: bool = False,
) -> Piece:
    """A whole transcript: ``attempts[k]`` is followed by ``feedbacks[k]`` when k < last.

    The last attempt (the correct answer) is under the loss. The wrong attempts are
    context, never targets, so the model is never taught to write a mistake; with
    ``prefix_loss`` a wrong attempt's tokens *before* it first departs from the correct
    answer are targets too (they are what the correct policy writes there as well).
    """
    if len(feedbacks) != len(attempts) - 1:
        raise ValueError(f"{len(attempts)} attempts need {len(attempts) - 1} feedbacks, got {len(feedbacks)}")
    answer = tok.encode(attempts[-1])
    seq = prompt_prefix(tok, prompt)
    for k, code in enumerate(attempts):
        if k > 0:
            seq.extend(feedback_extension(tok, feedbacks[k - 1], k))
        if k == len(attempts) - 1:
            seq.extend(code_piece(tok, code, k, True))
        else:
            seq.extend(code_piece(tok, code, k, len(os.path.commonprefix([tok.encode(code), answer])) if prefix_loss else False))
    return seq


def training_arrays(seq: Piece) -> tuple[list[int], list[int], list[int], list[int]]:
    """(inputs, steps, targets, target_mask) for next-token prediction on ``seq``.

    Position t predicts token t+1; the target is under the loss iff token t+1 is model
    output. The step ids are those of the input tokens.
    """
    return seq.ids[:-1], seq.steps[:-1], seq.ids[1:], seq.mask[1:]


class TokenBuffer:
    """A task's transcript as the model sees it, and how much of it the KV cache already holds.

    The native engine's per-task state and the external engine's transcript both extend it, so the
    retry and truncation logic (``sut.agent.append_feedback``) works on either.
    """

    def __init__(self) -> None:
        self.ids: list[int] = []
        self.steps: list[int] = []
        self.cached = 0  # tokens of ids[] whose keys/values are in the cache

    def __len__(self) -> int:
        return len(self.ids)

    def reset(self, piece: Piece) -> None:
        self.ids, self.steps, self.cached = list(piece.ids), list(piece.steps), 0

    def append(self, piece: Piece) -> None:
        self.ids += piece.ids
        self.steps += piece.steps
