"""Read LoadGen's logs: mlperf_log_detail.txt (``:::MLLOG {json}`` lines), mlperf_log_summary.txt,
mlperf_log_accuracy.json and (when tracing was on) mlperf_log_trace.json.

The detail log is the ground truth (LoadGen's FAQ); the summary is a rendering of it, so
``summary_mismatches`` compares every figure the two share. Truncated or malformed logs are
refused with an error naming the file and the line. This is the one module that parses them.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MLLOG_PREFIX = ":::MLLOG "
PERFORMANCE, ACCURACY = "PerformanceOnly", "AccuracyOnly"


class LogError(ValueError):
    """A missing, truncated or malformed LoadGen log."""


@dataclass
class DetailLog:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)   # last value of each key
    errors: list[str] = field(default_factory=list)         # every "error" entry's message
    warnings: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)       # every "generic_message", in order

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def require(self, key: str) -> Any:
        if key not in self.values:
            raise LogError(f"{self.path}: no '{key}' entry (truncated or not a LoadGen detail log?)")
        return self.values[key]

    @property
    def num_errors(self) -> int:
        return max(int(self.values.get("num_errors", 0) or 0), len(self.errors))

    @property
    def scenario(self) -> str:
        return str(self.get("effective_scenario", ""))

    @property
    def mode(self) -> str:
        return str(self.get("effective_test_mode", ""))


def read_detail(path: Path) -> DetailLog:
    """Parse a detail log; a performance-mode log must hold its results, any log its closing entries."""
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
            log.errors.append(f"{key}: {value}")
        elif key == "warning" or meta.get("is_warning"):
            log.warnings.append(f"{key}: {value}")
        if key == "generic_message":
            log.messages.append(str(value))
        log.values[key] = value
    if not log.values:
        raise LogError(f"{path}: no :::MLLOG entries (empty or not a LoadGen detail log)")
    log.require("effective_test_mode")
    # LoadGen logs power_end when the test ends, then (performance mode) the results, num_errors last.
    log.require("power_end")
    if log.mode == PERFORMANCE:
        log.require("result_validity")
        log.require("num_errors")
    return log


_SUMMARY_LINE = re.compile(r"^([^:*][^:]*?)\s*:\s*(.+?)$")
_ERRORS_LINE = re.compile(r"^(\d+) ERRORS? encountered", re.IGNORECASE)


def read_summary(path: Path, require_result: bool = True) -> dict[str, str]:
    """The summary's ``name : value`` lines, keyed by name (first occurrence wins).

    Early-stopping bullet lines (`` * ...``) are skipped: in token-latency mode the TTFT and
    TPOT sections repeat the same names. ``errors`` holds the count of the closing errors line.
    An accuracy-mode summary holds no results: read it with ``require_result=False``.
    """
    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: missing LoadGen summary log")
    out: dict[str, str] = {}
    errors = None
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("No errors encountered"):
            errors = "0"
        elif m := _ERRORS_LINE.match(line):
            errors = m.group(1)
        elif (m := _SUMMARY_LINE.match(line)) and m.group(1) not in out:
            out[m.group(1)] = m.group(2)
    if require_result and "Result is" not in out:
        raise LogError(f"{path}: no 'Result is' line (truncated or not a LoadGen summary)")
    if errors is None:
        raise LogError(f"{path}: no closing errors line (truncated or not a LoadGen summary)")
    out["errors"] = errors
    return out


# Summary line name -> detail key, for every figure both logs carry.
_SUMMARY_KEYS = {
    "Scenario": "effective_scenario", "Mode": "effective_test_mode", "Result is": "result_validity",
    "Samples per second": "result_samples_per_second", "Tokens per second": "result_tokens_per_second",
    "Completed samples per second": "result_completed_samples_per_sec",
    "Completed tokens per second": "result_completed_tokens_per_second",
    "Scheduled samples per second": "result_scheduled_samples_per_sec",
    "Min duration satisfied": "result_min_duration_met", "Min queries satisfied": "result_min_queries_met",
    "Early stopping satisfied": "early_stopping_met", "Performance constraints satisfied": "result_perf_constraints_met",
    "QPS w/ loadgen overhead": "result_qps_with_loadgen_overhead",
    "QPS w/o loadgen overhead": "result_qps_without_loadgen_overhead",
    "Min latency (ns)": "result_min_latency_ns", "Max latency (ns)": "result_max_latency_ns",
    "Mean latency (ns)": "result_mean_latency_ns",
    "Min First Token latency (ns)": "result_first_token_min_latency_ns",
    "Max First Token latency (ns)": "result_first_token_max_latency_ns",
    "Mean First Token latency (ns)": "result_first_token_mean_latency_ns",
    "target_latency (ns)": "effective_target_latency_ns", "target_qps": "effective_target_qps",
    "samples_per_query": "effective_samples_per_query", "min_duration (ms)": "effective_min_duration_ms",
    "max_duration (ms)": "effective_max_duration_ms", "min_query_count": "effective_min_query_count",
    "max_query_count": "effective_max_query_count", "qsl_rng_seed": "effective_qsl_rng_seed",
    "sample_index_rng_seed": "effective_sample_index_rng_seed", "schedule_rng_seed": "effective_schedule_rng_seed",
    "accuracy_log_rng_seed": "effective_accuracy_log_rng_seed",
    "accuracy_log_sampling_target": "effective_accuracy_log_sampling_target",
    "performance_issue_unique": "effective_performance_issue_unique",
    "performance_issue_same": "effective_performance_issue_same",
    "performance_issue_same_index": "effective_performance_issue_same_index",
    "performance_sample_count": "effective_performance_sample_count",
    "accuracy_sample_count": "effective_accuracy_sample_count", "errors": "num_errors",
}
_PCT = re.compile(r"^(\d+\.\d+)(?:th)? (first token )?percentile (first token )?latency \(ns\)$")
# Figures a performance summary must show (the rest are compared when present).
REQUIRED_SUMMARY = ("Scenario", "Mode", "Result is", "min_duration (ms)", "qsl_rng_seed",
                    "sample_index_rng_seed", "schedule_rng_seed", "performance_sample_count")


def _detail_key(name: str) -> str | None:
    if name in _SUMMARY_KEYS:
        return _SUMMARY_KEYS[name]
    m = _PCT.match(name)
    if m:
        first = "first_token_" if m.group(2) or m.group(3) else ""
        return f"result_{first}{float(m.group(1)):.2f}_percentile_latency_ns"
    return None


def _agrees(text: str, value: Any) -> bool:
    """Does the summary's rendering ``text`` show the detail log's ``value``?"""
    if isinstance(value, bool):
        return text.lower() in (("yes", "true", "1") if value else ("no", "false", "0"))
    if isinstance(value, int):
        try:
            return int(text) == value
        except ValueError:
            return False
    if isinstance(value, float):
        try:
            shown = float(text)
        except ValueError:
            return False
        decimals = len(text.split(".", 1)[1]) if "." in text else 0
        return abs(shown - value) <= max(0.5 * 10 ** -decimals, 1e-9 * abs(value)) + 1e-12
    return text.strip() == str(value).strip()


def summary_mismatches(summary: dict[str, str], detail: DetailLog) -> list[str]:
    """Every figure the summary shows that disagrees with (or is missing from) the detail log."""
    out = []
    if detail.mode == PERFORMANCE:
        out += [f"the summary has no '{name}' line" for name in REQUIRED_SUMMARY if name not in summary]
    for name, text in summary.items():
        key = _detail_key(name)
        if key is None or key not in detail.values:
            continue
        value = detail.num_errors if key == "num_errors" else detail.values[key]
        if not _agrees(text, value):
            out.append(f"summary '{name} : {text}' but detail {key} = {value}")
    return out


@dataclass(frozen=True)
class PerfResult:
    """The figures a performance run is judged on (from its detail log)."""
    scenario: str
    validity: str
    invalid_reason: str
    min_duration_met: bool
    min_queries_met: bool
    early_stopping_met: bool
    perf_constraints_met: bool | None   # Server only
    num_errors: int
    samples: int                        # samples LoadGen issued (and saw completed)
    metric: str                         # the scenario's headline metric, e.g. "samples/s"
    value: float
    mean_latency_ns: float
    p99_latency_ns: float
    target_latency_ns: float


def metric_of(detail: DetailLog) -> tuple[str, float]:
    """The headline metric: Offline samples/s, Server completed samples/s, SingleStream p90 latency (ms).

    SingleStream uses the p90 of whole-task latency, not LoadGen's early_stopping_latency_ss:
    with use_token_latencies, that key holds the time-to-first-token estimate.
    """
    s, v = detail.scenario, detail.get
    if s == "Offline":
        return "samples/s", float(v("result_samples_per_second", 0) or 0)
    if s == "Server":
        return "completed samples/s", float(v("result_completed_samples_per_sec", 0) or 0)
    return "p90 latency ms", float(v("result_90.00_percentile_latency_ns", 0) or 0) / 1e6


def perf_result(detail: DetailLog) -> PerfResult:
    v = detail.get
    metric, value = metric_of(detail)
    pcm = v("result_perf_constraints_met")
    return PerfResult(
        scenario=detail.scenario, validity=str(v("result_validity", "")),
        invalid_reason=str(v("result_invalid_reason", "") or "").strip(),
        min_duration_met=bool(v("result_min_duration_met", False)),
        min_queries_met=bool(v("result_min_queries_met", False)),
        early_stopping_met=bool(v("early_stopping_met", detail.scenario == "Offline")),
        perf_constraints_met=None if pcm is None else bool(pcm), num_errors=detail.num_errors,
        samples=int(v("result_query_count", 0) or 0) * int(v("effective_samples_per_query", 1) or 1),
        metric=metric, value=value, mean_latency_ns=float(v("result_mean_latency_ns", 0) or 0),
        p99_latency_ns=float(v("result_99.00_percentile_latency_ns", 0) or 0),
        target_latency_ns=float(v("effective_target_latency_ns", 0) or 0))


@dataclass(frozen=True)
class AccuracyEntry:
    """One mlperf_log_accuracy.json entry: the response bytes LoadGen logged for one sample."""
    seq_id: int
    qsl_idx: int
    data: str                  # upper-case hex of the response bytes
    token_count: int | None
    token_data: str | None     # hex of the first-token response (SingleStream/Server)


def read_accuracy_log(path: Path) -> list[AccuracyEntry]:
    """Every entry of a LoadGen accuracy log, typed as LoadGen writes it, read by the accuracy pass's own
    reader (``verifier.accuracy.read_accuracy_entries``: size and nesting limits, ``qsl_idx: true`` refused),
    so that the checker and the judge never read one log two ways."""
    from verifier.accuracy import read_accuracy_entries  # noqa: PLC0415
    from verifier.jsonfile import InputError  # noqa: PLC0415

    path = Path(path)
    if not path.is_file():
        raise LogError(f"{path}: missing LoadGen accuracy log")
    try:
        rows = read_accuracy_entries(path)
    except InputError as e:
        raise LogError(str(e)) from None
    return [AccuracyEntry(r["seq_id"], r["qsl_idx"], r["data"], r.get("token_count"), r.get("token_data")) for r in rows]


def read_trace_latencies(path: Path) -> list[float] | None:
    """Per-sample latencies (ns) from mlperf_log_trace.json, or None when there is no trace."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        events = json.loads(path.read_text()).get("traceEvents", [])
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return None
    return [float(e["args"]["complete_ns"]) - float(e["args"].get("issue_start_ns", 0))
            for e in events if e.get("name") == "Sample" and e.get("ph") == "b" and "complete_ns" in e.get("args", {})]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
