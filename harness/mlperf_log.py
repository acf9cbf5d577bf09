"""Read LoadGen's logs: mlperf_log_detail.txt (``:::MLLOG {json}`` lines) and mlperf_log_summary.txt.

The detail log is the ground truth (LoadGen's FAQ); the summary is a rendering of it.
Truncated or malformed logs are refused with an error naming the file and the line.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MLLOG_PREFIX = ":::MLLOG "


class LogError(ValueError):
    """A missing, truncated or malformed LoadGen log."""


@dataclass
class DetailLog:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)   # last value of each key
    errors: list[str] = field(default_factory=list)         # every "error" entry's message
    warnings: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self.values:
            raise LogError(f"{self.path}: no '{key}' entry (truncated or not a LoadGen detail log?)")
        return self.values[key]

    @property
    def num_errors(self) -> int:
        return max(int(self.values.get("num_errors", 0) or 0), len(self.errors))


def read_detail(path: Path) -> DetailLog:
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: missing LoadGen detail log")
    log = DetailLog(path)
    for lineno, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.startswith(MLLOG_PREFIX):
            continue
        try:
            entry = json.loads(line[len(MLLOG_PREFIX):])
            key, value = entry["key"], entry["value"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise LogError(f"{path}:{lineno}: malformed :::MLLOG line ({e.__class__.__name__})") from e
        meta = entry.get("metadata") or {}
        if key == "error" or meta.get("is_error"):
            log.errors.append(str(value))
        elif key == "warning" or meta.get("is_warning"):
            log.warnings.append(str(value))
        log.values[key] = value
    if not log.values:
        raise LogError(f"{path}: no :::MLLOG entries (empty or not a LoadGen detail log)")
    # LoadGen logs the run's results last; without them the run did not finish.
    log.require("result_validity")
    return log


_SUMMARY_LINE = re.compile(r"^\s*([^:]+?)\s*:\s*(.+?)\s*$")


def read_summary(path: Path) -> dict[str, str]:
    """The summary's ``name : value`` lines, keyed by name (first occurrence wins)."""
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: missing LoadGen summary log")
    out: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        m = _SUMMARY_LINE.match(line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    if "Result is" not in out:
        raise LogError(f"{path}: no 'Result is' line (truncated or not a LoadGen summary)")
    return out
