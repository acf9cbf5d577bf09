"""TEST06's per-response rules: what MLPerf checks of LLM outputs, translated to the agent loop.

MLPerf's TEST06 checks that the first token LoadGen was told of is the first token of the
output, that the output ends properly (one end-of-sequence), and that the output length
equals the token_count given to LoadGen. Our responses are a retry loop's attempts, so:

- Decode: every logged response is format v1 (verifier/response_format.py).
- Attempts: between 1 and --max-attempts, and no error responses.
- EOS: the loop stopped where it must: at the first passing attempt, or after max_attempts.
  (A loop cut short when timed fails here, as a truncated LLM output fails MLPerf's check.)
- Sample length: LoadGen's token_count == the response's n_tokens == the sum of its attempts' tokens
  and those of the drafts redrawn for repeating rejected code (generated, so counted, but not submitted;
  the run's agent records say how many; without them, at least the attempts').
- First token (SingleStream/Server): the token sent with FirstTokenComplete is attempt 0's
  first generated token (from the run's agent records) and decodes to a prefix of its code.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.mlperf_log import AccuracyEntry
from harness.scenario_files import FileProblem, decode_entries, max_attempts, read_records
from verifier.response_format import Response

Check = tuple[bool | None, str]   # (passed, or None when skipped; why it failed)


def _first(bad: list, what: str) -> str:
    return f"{len(bad)} response(s) {what}, e.g. sample {bad[0]}" if bad else ""


def _tokenizer(measurements: dict[str, Any]):
    """The run's tokenizer (tokenizer.json of its checkpoint), or None if it cannot be found."""
    from sut.model.tokenizer import CodeTokenizer, TokenizerError  # noqa: PLC0415

    ckpt = (measurements.get("engine") or {}).get("checkpoint")
    if ckpt is None:
        return None
    try:
        return CodeTokenizer.from_file(Path(str(ckpt)) / "tokenizer.json")
    except (OSError, TokenizerError, ValueError):
        return None


def _audit_records(sd: Path) -> dict[int, dict[str, Any]]:
    """qsl_idx -> the TEST06 run's agent record ({} when they cannot be read)."""
    try:
        return {r["qsl_idx"]: r for r in read_records(sd / "TEST06" / "performance" / "run_1" / "agent_records.jsonl")}
    except FileProblem:
        return {}


def _length_ok(e: AccuracyEntry, r: Response, record: dict[str, Any] | None) -> bool:
    """The Sample length rule on one response (see the module docstring); ``record``: its agent record, if any."""
    submitted = sum(a.tokens for a in r.attempts)
    if e.token_count is None or e.token_count != r.n_tokens or any(a.tokens < 1 for a in r.attempts):
        return False
    if record is None:
        return submitted <= r.n_tokens
    return submitted + sum(int(a.get("redrawn_tokens", 0)) for a in record["attempts"]) == r.n_tokens


def _first_token_check(sd: Path, pairs: list, measurements: dict[str, Any],
                       records: dict[int, dict[str, Any]]) -> Check:
    if sd.name == "Offline":
        return None, ""
    tok = _tokenizer(measurements)
    if tok is None and not records:
        return False, "neither the run's tokenizer nor its agent records are available to check first tokens"
    bad = []
    for e, r in pairs:
        if not r.attempts:
            continue
        raw = bytes.fromhex(e.token_data) if e.token_data else b""
        if len(raw) != 4:
            bad.append(e.qsl_idx)
            continue
        first = int.from_bytes(raw, "little")
        ids = (records.get(e.qsl_idx) or {}).get("attempts", [{}])[0].get("token_ids") or []
        if ids and ids[0] != first:
            bad.append(e.qsl_idx)
        elif tok is not None:
            piece = tok.decode([first])
            if "\ufffd" not in piece and not r.attempts[0].code.startswith(piece):
                bad.append(e.qsl_idx)
    return not bad, _first(bad, "whose first-token data is not attempt 0's first token")


def response_checks(sd: Path, entries: list[AccuracyEntry], measurements: dict[str, Any]) -> dict[str, Check]:
    """Name -> (passed, why) for every TEST06 rule over the audit's logged responses."""
    responses = decode_entries(entries)
    undecodable = [e.qsl_idx for e, r in zip(entries, responses) if isinstance(r, str)]
    pairs = [(e, r) for e, r in zip(entries, responses) if not isinstance(r, str)]
    limit = max_attempts(measurements)

    def ended_right(r) -> bool:
        statuses = [a.status for a in r.attempts]
        if "passed" in statuses:
            return statuses.index("passed") == len(statuses) - 1
        return limit is not None and len(statuses) == limit

    attempts_bad = [e.qsl_idx for e, r in pairs if r.error or not 1 <= r.n_attempts <= (limit or 1 << 30)]
    eos_bad = [e.qsl_idx for e, r in pairs if not r.error and not ended_right(r)]
    records = _audit_records(sd)
    length_bad = [e.qsl_idx for e, r in pairs if not _length_ok(e, r, records.get(e.qsl_idx))]
    return {
        "First token": _first_token_check(sd, pairs, measurements, records),
        "EOS": (not eos_bad, _first(eos_bad, "whose loop stopped before passing or reaching max_attempts")),
        "Sample length": (not length_bad, _first(length_bad, "whose token count disagrees with LoadGen's token_count")),
        "Decode": (not undecodable, _first(undecodable, "that are not response format v1")),
        "Attempts": (not attempts_bad, _first(attempts_bad, f"with an error or attempts outside 1..{limit}")),
    }
