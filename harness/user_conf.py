"""Validate and resolve LoadGen-format configuration (user.conf) before LoadGen sees it.

LoadGen's own parser silently ignores lines it cannot split into ``key = value`` (so
``key=99`` does nothing), and silently ignores keys it does not know. We refuse both,
naming the line. We also resolve precedence exactly as LoadGen does (``model.scenario``
beats ``*.scenario`` beats ``model.*`` beats ``*.*``), so the harness can merge the
scenario YAML defaults with user.conf overrides into one fully specific effective file.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

MODEL = "nano-codegen-agent"
SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")

# Keys LoadGen 6.0 reads from a conf file (test_settings_internal.cc, FromConfig).
KNOWN_KEYS = {
    "mode", "min_duration", "max_duration", "min_query_count", "max_query_count",
    "qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed",
    "accuracy_log_rng_seed", "accuracy_log_probability", "accuracy_log_sampling_target",
    "print_timestamps", "performance_issue_unique", "performance_issue_same",
    "performance_issue_same_index", "performance_sample_count_override",
    "sample_concatenate_permutation", "test05", "test05_qsl_rng_seed",
    "test05_sample_index_rng_seed", "test05_schedule_rng_seed",
    "use_token_latencies", "ttft_latency", "tpot_latency", "infer_token_latencies",
    "token_latency_scaling_factor", "target_latency", "target_latency_percentile",
    "target_qps", "samples_per_query", "max_async_queries", "coalesce_queries",
}
SEED_KEYS = {"qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed"}   # mlperf.conf's alone (below)
# Keys an --official run may not override: LoadGen's built-in mlperf.conf values apply.
OFFICIAL_LOCKED = SEED_KEYS | {"min_duration", "min_query_count", "max_duration", "max_query_count",
                               "performance_sample_count_override", "sample_concatenate_permutation"}

# How LoadGen 6.0.17 reads each key (test_settings_internal.cc: integers with strtoull, so '1e4' is 1,
# '010' is 8 and '-1' is 2**64 - 1; doubles with strtod, so '1e999' is inf; latencies as integer ms
# times 10**6). tests/test_user_conf.py reads values back from LoadGen itself to hold this table to it.
UINT = {"min_duration", "max_duration", "min_query_count", "max_query_count", "accuracy_log_rng_seed",
        "accuracy_log_sampling_target", "performance_issue_same_index", "performance_sample_count_override",
        "max_async_queries", "samples_per_query"}
BOOL = {"print_timestamps", "performance_issue_unique", "performance_issue_same", "coalesce_queries",
        "use_token_latencies", "infer_token_latencies", "sample_concatenate_permutation"}
INT32 = {"max_async_queries", "samples_per_query"}   # read as uint64, then cast to a C int
LATENCY_MS = {"target_latency", "ttft_latency", "tpot_latency"}
POSITIVE_FLOAT = {"target_qps"}
PERCENT = {"target_latency_percentile"}
# Keys LoadGen reads only from its built-in mlperf.conf: a user.conf line for them is silently ignored.
MLPERF_CONF_ONLY = {"qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_probability",
                    "test05", "test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed",
                    "token_latency_scaling_factor"}
UINT_MAX = 2 ** 64 - 1

_LINE = re.compile(r"^(?P<model>[^\s.]+)\.(?P<scenario>[^\s.]+)\.(?P<key>[A-Za-z0-9_]+) = (?P<value>\S+)$")
_DECIMAL_INT = re.compile(r"^(0|[1-9][0-9]*)$")
_DECIMAL_FLOAT = re.compile(r"^([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")


class UserConfError(ValueError):
    """A user.conf problem; the message names the file, the line and the fix."""


@dataclass(frozen=True)
class ConfLine:
    model: str
    scenario: str
    key: str
    value: str
    lineno: int


def parse_user_conf(path: Path, model: str = MODEL, audit: bool = False) -> list[ConfLine]:
    """Parse and validate every line of a LoadGen conf file; raise UserConfError on the first bad one.
    ``audit``: an audit.config, where LoadGen reads ``mode`` too (2: performance)."""
    path = Path(path)
    if not path.is_file():
        raise UserConfError(f"{path}: no such user.conf; pass an existing file with --user-conf")
    lines: list[ConfLine] = []
    for lineno, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.split("#", 1)[0].strip()
        if not text:
            continue
        where = f"{path}:{lineno}: {raw.strip()!r}"
        text = re.sub(r"\s+", " ", text)
        m = _LINE.match(text)
        if not m:
            if "=" in text and " = " not in text:
                raise UserConfError(f"{where}: LoadGen ignores this line silently; write spaces around '=' (model.Scenario.key = value)")
            raise UserConfError(f"{where}: expected 'model.Scenario.key = value'")
        line = ConfLine(m["model"], m["scenario"], m["key"], m["value"], lineno)
        if line.model not in (model, "*"):
            raise UserConfError(f"{where}: model {line.model!r} is not {model!r} or '*', so LoadGen would ignore it")
        if line.scenario not in SCENARIOS + ("*",):
            raise UserConfError(f"{where}: unknown scenario {line.scenario!r}; use one of {', '.join(SCENARIOS)} or '*'")
        if line.key not in KNOWN_KEYS:
            raise UserConfError(f"{where}: unknown key {line.key!r}; LoadGen would ignore it (known: {', '.join(sorted(KNOWN_KEYS))})")
        problem = value_problem(line.key, line.value, audit)
        if problem:
            raise UserConfError(f"{where}: {problem}")
        lines.append(line)
    return lines


def value_problem(key: str, value: str, audit: bool = False) -> str | None:
    """Why LoadGen would read ``value`` for ``key`` as something other than what it says (None: it would not)."""
    if key in MLPERF_CONF_ONLY:
        return f"LoadGen reads {key} only from its built-in mlperf.conf and ignores this line; remove it"
    if key == "mode":
        if not audit:
            return "the mode is harness/run.py's --mode (performance, accuracy or both); remove this line"
        return None if value in ("0", "1", "2", "3") else f"mode {value!r}: LoadGen knows 0, 1, 2 and 3"
    if key in UINT | BOOL | LATENCY_MS:
        if value.startswith("-"):
            return f"value {value!r} must not be negative (LoadGen would read a huge unsigned number)"
        if not _DECIMAL_INT.match(value):
            return (f"LoadGen reads {key} as an integer and would not read {value!r} as written (e.g. '1e4' is 1, "
                    "'2.5' is 2, '010' is 8): write a plain decimal integer")
        n = int(value)
        if key in BOOL and n not in (0, 1):
            return f"{key} is a switch: write 0 or 1, not {value}"
        if n > (UINT_MAX // 10 ** 6 if key in LATENCY_MS else 2 ** 31 - 1 if key in INT32 else UINT_MAX):
            return f"value {value} is out of range for {key} (LoadGen would overflow it)"
        return None
    if not _DECIMAL_FLOAT.match(value):
        return f"value {value!r} is not a plain decimal number (e.g. 12.5 or 1e3): LoadGen would misread it"
    x = float(value)
    if not math.isfinite(x):
        return f"value {value!r} is not finite for LoadGen (it would read inf)"
    if key in POSITIVE_FLOAT and x <= 0:
        return f"{key} must be greater than 0, got {value}"
    if key in PERCENT and not 0 < x < 100:
        return "a percentile is given in percent, strictly between 0 and 100"
    return None


def resolve(lines: list[ConfLine], scenario: str, model: str = MODEL) -> dict[str, ConfLine]:
    """The value LoadGen would use for each key in ``scenario``, with LoadGen's precedence."""
    rank = {(model, scenario): 0, ("*", scenario): 1, (model, "*"): 2, ("*", "*"): 3}
    best: dict[str, tuple[int, ConfLine]] = {}
    for line in lines:
        r = rank.get((line.model, line.scenario))
        if r is None:
            continue
        if line.key not in best or r <= best[line.key][0]:
            best[line.key] = (r, line)  # a later line of equal rank overrides, as in LoadGen's map
    return {k: v for k, (_, v) in best.items()}


def write_effective_conf(path: Path, settings: dict[str, str], scenario: str, model: str = MODEL) -> None:
    """Write fully specific ``model.scenario.key = value`` lines (the file handed to FromConfig)."""
    body = "".join(f"{model}.{scenario}.{k} = {v}\n" for k, v in sorted(settings.items()))
    Path(path).write_text("# effective LoadGen settings for this run (scenario YAML + user.conf)\n" + body)
