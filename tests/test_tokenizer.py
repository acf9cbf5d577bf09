"""The tokenizer round-trips any UTF-8 text and never lets text forge a special token."""
from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sut.model.tokenizer import SPECIAL_TOKENS, CodeTokenizer, TokenizerError, train_tokenizer

CORPUS = [
    "Write a function `add(a, b)` that returns a + b.",
    "def add(a, b):\n    return a + b\n",
    "result = sum([1, 2, 3, 4, 5])\n",
    "result = 'hello'[::-1]\n",
    "wrong output: expected 15, got 14",
    "NameError: name 'x' is not defined (line 2)",
    "f(3): expected 6, got 5",
]


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    return train_tokenizer(CORPUS * 20, vocab_size=400)


def _random_text(rng: random.Random, n: int) -> str:
    pools = [
        "abcxyz ABC 0123456789_()[]{}:=+-*/%<>!'\"#.,;\\",
        " \t\n\r\x0b\x0c",
        "éüßøπλжщ漢字かな한글",
        "😀🚀🧪👩‍💻🏳️‍🌈",
        "\u200b\u00a0\ufeff\u202e",
    ]
    out = []
    for _ in range(n):
        if rng.random() < 0.1:
            out.append(chr(rng.randrange(0x20, 0x10FFFF)) if rng.random() < 0.5 else "    " * rng.randrange(1, 4))
        else:
            out.append(rng.choice(rng.choice(pools)))
    return "".join(c for c in "".join(out) if not 0xD800 <= ord(c) <= 0xDFFF)


def test_special_tokens_have_fixed_ids(tok: CodeTokenizer) -> None:
    assert [tok.pad_id, tok.start_id, tok.end_id, tok.task_id, tok.code_id, tok.feedback_id] == list(range(6))
    assert tok.vocab_size <= 400


@pytest.mark.parametrize("text", CORPUS + ["", " ", "\n\n\n", "\t\tx = 1\n", "a  b   c    d", "def f():\n\treturn '😀'\n",
                                          "    \n  \t \n", "Ω≈ç√∫˜µ≤≥÷", "\x00\x01\x7f"])
def test_round_trip_fixed(tok: CodeTokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


def test_round_trip_random_unicode(tok: CodeTokenizer) -> None:
    rng = random.Random(1234)
    for _ in range(300):
        text = _random_text(rng, rng.randrange(0, 80))
        assert tok.decode(tok.encode(text)) == text, repr(text)


def test_text_cannot_forge_special_tokens(tok: CodeTokenizer) -> None:
    for s in SPECIAL_TOKENS:
        ids = tok.encode(f"x = '{s}'")
        assert not set(ids) & tok.special_ids
        assert tok.decode(ids) == f"x = '{s}'"


def _byte_token(tok: CodeTokenizer, byte: int) -> int:
    """The base-alphabet token of one byte (the ByteLevel pre-tokenizer's byte-to-character map)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    char = chr(byte) if byte in printable else chr(256 + [b for b in range(256) if b not in printable].index(byte))
    return tok._tok.token_to_id(char)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ids=st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=40))
def test_generated_text_is_always_valid_utf8(tok: CodeTokenizer, ids: list[int]) -> None:
    """Whatever ids the model emits decode to text UTF-8 can carry (bytes that are not UTF-8 become
    U+FFFD), so generated code never brings a lone surrogate to the verifier or the response format."""
    text = tok.decode([i % tok.vocab_size for i in ids])
    text.encode("utf-8")


def test_surrogate_bytes_decode_to_replacement_characters(tok: CodeTokenizer) -> None:
    ids = [_byte_token(tok, b) for b in (0xED, 0xA0, 0x80)]   # U+D800 as (invalid) UTF-8
    assert tok.decode(ids) == "\ufffd" * 3


def test_training_compresses_the_training_distribution(tok: CodeTokenizer) -> None:
    text = "def add(a, b):\n    return a + b\n"
    assert len(tok.encode(text)) < len(text.encode()) / 2


def test_save_load_and_sha(tok: CodeTokenizer, tmp_path) -> None:
    p = tmp_path / "tokenizer.json"
    tok.save(p)
    again = CodeTokenizer.from_file(p)
    assert again.sha256() == tok.sha256()
    assert again.encode("result = 1") == tok.encode("result = 1")
    assert train_tokenizer(CORPUS * 20, vocab_size=400).sha256() == tok.sha256()  # training is deterministic


def test_bad_files(tmp_path) -> None:
    with pytest.raises(TokenizerError, match="not found"):
        CodeTokenizer.from_file(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="not a tokenizer.json"):
        CodeTokenizer.from_file(tmp_path / "bad.json")
