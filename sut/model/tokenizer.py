"""Byte-level BPE tokenizer for task prompts, code and verifier feedback.

Built with the `tokenizers` library: a ByteLevel pre-tokenizer and decoder and no
normalizer, so every UTF-8 string round-trips exactly (any byte is a token of the
base alphabet). The vocabulary is learnt from the training distribution (prompts,
solutions, mistakes, feedback), which is what makes templated code short.

Special tokens are only ever inserted by id (sut/model/transcript.py). Ordinary text that
happens to contain "<|end|>" is encoded as plain bytes (``encode_special_tokens``), so
a task prompt or a piece of feedback can never forge a transcript boundary.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, START, END, TASK, CODE, FEEDBACK = "<|pad|>", "<|start|>", "<|end|>", "<|task|>", "<|code|>", "<|feedback|>"
SPECIAL_TOKENS = [PAD, START, END, TASK, CODE, FEEDBACK]  # ids 0..5, in this order
# Attempt markers: ``<|attempt_k|>`` opens retry k (1..15; later retries reuse the last). A tokenizer that
# has them marks each attempt in the text itself, as deployed agents do, so the model needs no retry-step
# embedding and is a plain GPT-2 (sut/model/hf_format.py); one without them is a format-1 tokenizer.
ATTEMPT_MARKERS = [f"<|attempt_{k}|>" for k in range(1, 16)]
DEFAULT_VOCAB_SIZE = 1536


class TokenizerError(ValueError):
    """A tokenizer file that is missing, unreadable or lacks our special tokens."""


class CodeTokenizer:
    """Thin wrapper over a `tokenizers.Tokenizer` that knows our special tokens."""

    def __init__(self, tok: Tokenizer) -> None:
        tok.encode_special_tokens = True  # text never produces special tokens (see module doc)
        self._tok = tok
        ids = {s: tok.token_to_id(s) for s in SPECIAL_TOKENS}
        missing = [s for s, i in ids.items() if i is None]
        if missing:
            raise TokenizerError(f"tokenizer lacks special tokens {missing}; retrain it with sut.model.tokenizer.train_tokenizer")
        self.pad_id, self.start_id, self.end_id = ids[PAD], ids[START], ids[END]
        self.task_id, self.code_id, self.feedback_id = ids[TASK], ids[CODE], ids[FEEDBACK]
        markers = [tok.token_to_id(m) for m in ATTEMPT_MARKERS]
        self.attempt_ids: list[int] = markers if all(i is not None for i in markers) else []
        self.special_ids = frozenset([*ids.values(), *self.attempt_ids])

    def attempt_marker(self, attempt: int) -> list[int]:
        """The marker tokens that open retry ``attempt`` (>= 1): one token, or none for a format-1 tokenizer."""
        if not self.attempt_ids:
            return []
        return [self.attempt_ids[min(attempt, len(self.attempt_ids)) - 1]]

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (never special ids)."""
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``; special tokens are dropped (they are structure, not text)."""
        return self._tok.decode([i for i in ids if i not in self.special_ids], skip_special_tokens=False)

    def to_str(self) -> str:
        """The tokenizer.json text (deterministic for a given tokenizer)."""
        return self._tok.to_str()

    def sha256(self) -> str:
        """Fingerprint pinned in a checkpoint's config.json."""
        return hashlib.sha256(self.to_str().encode("utf-8")).hexdigest()

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_str(), encoding="utf-8")

    @classmethod
    def from_str(cls, text: str) -> "CodeTokenizer":
        try:
            return cls(Tokenizer.from_str(text))
        except Exception as e:  # tokenizers raises a bare Exception on bad JSON
            raise TokenizerError(f"not a tokenizer.json: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e

    @classmethod
    def from_file(cls, path: str | Path) -> "CodeTokenizer":
        path = Path(path)
        if not path.is_file():
            raise TokenizerError(f"{path}: tokenizer file not found")
        return cls.from_str(path.read_text(encoding="utf-8"))


def train_tokenizer(texts: Iterable[str], vocab_size: int = DEFAULT_VOCAB_SIZE,
                    attempt_markers: bool = False) -> CodeTokenizer:
    """Learn a byte-level BPE on ``texts``; the 256-byte alphabet is always included, and the
    attempt markers (ids 6..20) when ``attempt_markers``.

    (Splitting numbers into single digits first was tried: at the same training budget it
    halved validation pass@1, 14% against 28%, so numbers stay whole BPE tokens.)
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + (ATTEMPT_MARKERS if attempt_markers else []),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return CodeTokenizer(tok)


def describe(tok: CodeTokenizer) -> str:
    """One line for logs and reports."""
    return json.dumps({"vocab_size": tok.vocab_size, "sha256": tok.sha256()[:12]})
