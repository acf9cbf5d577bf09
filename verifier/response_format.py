"""The bytes the SUT hands LoadGen for one sample, and their decoding.

One small versioned module imported by both sides: the SUT encodes, the accuracy pass
decodes what LoadGen logged (``mlperf_log_accuracy.json`` holds these bytes as upper-case
hex). Format version 1 is compact UTF-8 JSON:

    {"v": 1, "task_id": "eval-0007", "n_tokens": 57, "error": null,
     "attempts": [{"code": "...", "status": "runtime_error", "tokens": 23},
                  {"code": "...", "status": "passed", "tokens": 34}]}

``status`` is the in-loop verifier's verdict (``verifier.verdict.Status`` values) and is
informational: the accuracy pass re-executes ``code`` and trusts only its own verdict.
``error`` is a one-line reason when the SUT could not run the task (model exception,
dead verifier worker); such a response has the attempts made so far, maybe none.
``n_tokens`` is every token generated over all attempts, the figure given to LoadGen.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

FORMAT_VERSION = 1


@dataclass
class AttemptOut:
    code: str
    status: str
    tokens: int


@dataclass
class Response:
    task_id: str
    attempts: list[AttemptOut] = field(default_factory=list)
    n_tokens: int = 0
    error: str | None = None

    @property
    def n_attempts(self) -> int:
        return len(self.attempts)


def encode(resp: Response) -> bytes:
    """Serialize a response to the bytes given to LoadGen: always valid UTF-8 JSON. Text holding a
    lone surrogate (which UTF-8 cannot carry; a plug-in engine's JSON could hand one over) is written
    with JSON's ``\\uXXXX`` escapes, so ``decode`` gives back the same string and the sample is
    still completed."""
    obj = {
        "v": FORMAT_VERSION,
        "task_id": resp.task_id,
        "n_tokens": resp.n_tokens,
        "error": resp.error,
        "attempts": [{"code": a.code, "status": a.status, "tokens": a.tokens} for a in resp.attempts],
    }
    try:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(obj, separators=(",", ":")).encode("ascii")


def decode(data: bytes) -> Response:
    """Parse response bytes; raises ValueError with the reason if they are not format v1."""
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"response is not UTF-8 JSON: {e}") from e
    except (RecursionError, MemoryError) as e:   # bytes from the SUT: any nesting, any size
        raise ValueError(f"response is not format {FORMAT_VERSION} JSON ({type(e).__name__})") from None
    if not isinstance(obj, dict) or obj.get("v") != FORMAT_VERSION:
        raise ValueError(f"response format version {obj.get('v') if isinstance(obj, dict) else '?'} is not {FORMAT_VERSION}")
    try:
        attempts = [AttemptOut(str(a["code"]), str(a["status"]), int(a["tokens"])) for a in obj["attempts"]]
        return Response(str(obj["task_id"]), attempts, int(obj["n_tokens"]), obj.get("error"))
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"response is missing or mistypes a field: {e}") from e


def decode_hex(hex_data: str) -> Response:
    """Decode the ``data`` field of one mlperf_log_accuracy.json entry."""
    return decode(bytes.fromhex(hex_data))
