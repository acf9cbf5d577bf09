"""Validate and resolve LoadGen-format configuration (user.conf) before LoadGen sees it.

LoadGen's own parser silently ignores lines it cannot split into ``key = value`` (so
``key=99`` does nothing), keys it does not know or does not read in a scenario, and reads
numbers with strtoull/strtod (so ``1e4`` is 1). We refuse every line LoadGen would ignore or
read as another number than it says, naming the file and line (docs/harness.md has the rules).
We also resolve precedence exactly as LoadGen does (``model.scenario`` beats ``*.scenario``
beats ``model.*`` beats ``*.*``), so the harness can merge the scenario YAML defaults with
user.conf overrides into one fully specific effective file: exactly what LoadGen reads.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
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
    "target_qps", "samples_per_query", "max_async_queries", "coalesce_queries", "accuracy_sample_count_override",
}
SEED_KEYS = {"qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed"}   # mlperf.conf's alone (below)
# Keys an --official run may not override: LoadGen's built-in mlperf.conf values apply.
OFFICIAL_LOCKED = SEED_KEYS | {"min_duration", "min_query_count", "max_duration", "max_query_count",
                               "performance_sample_count_override", "sample_concatenate_permutation"}

# How LoadGen 6.0.17 reads each key (test_settings_internal.cc: integers with strtoull, so '1e4' is 1,
# '010' is 8, '0x10' is 16 and '-1' is 2**64 - 1; doubles with strtod, so '1e999' is inf; Server latencies
# as integer ms times 10**6). tests/test_user_conf.py reads values back from LoadGen itself to hold this table to it.
UINT = {"min_duration", "max_duration", "min_query_count", "max_query_count", "accuracy_log_rng_seed",
        "accuracy_log_sampling_target", "performance_issue_same_index", "performance_sample_count_override",
        "max_async_queries", "samples_per_query", "token_latency_scaling_factor"}
BOOL = {"print_timestamps", "performance_issue_unique", "performance_issue_same", "coalesce_queries",
        "use_token_latencies", "infer_token_latencies", "sample_concatenate_permutation"}
INT32 = {"max_async_queries"}   # read as uint64, then cast to a C int
# Whole ms that LoadGen keeps as signed 64-bit nanoseconds (std::chrono): larger ones overflow.
LATENCY_MS = {"target_latency", "ttft_latency", "tpot_latency"}
DURATION_MS = {"min_duration", "max_duration"}
POSITIVE_FLOAT = {"target_qps"}
PERCENT = {"target_latency_percentile"}
# Keys LoadGen reads only from its built-in mlperf.conf: a user.conf line for them is silently ignored.
MLPERF_CONF_ONLY = {"qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed", "accuracy_log_probability",
                    "test05", "test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed"}
# FromConfig looks these keys up under fixed scenarios only: a line for any other scenario is ignored.
READ_IN = {"target_latency_percentile": ("SingleStream", "MultiStream", "Server"),
           "target_latency": ("SingleStream", "MultiStream", "Server"), "samples_per_query": ("MultiStream",),
           "target_qps": ("Server", "Offline"),
           **{k: ("Server",) for k in ("coalesce_queries", "max_async_queries", "ttft_latency", "tpot_latency")}}
# ...and these only while a switch is 1.
NEEDS = {"ttft_latency": "use_token_latencies", "tpot_latency": "use_token_latencies",
         "token_latency_scaling_factor": "infer_token_latencies"}
MAX_BYTES = 1 << 20   # a user.conf is a few lines; refuse a huge file before reading it
UINT_MAX = 2 ** 64 - 1
NS_MAX_MS = (2 ** 63 - 1) // 10 ** 6

# ASCII whitespace only, as LoadGen's tokenizer (a no-break space does not separate "=" from the key).
_LINE = re.compile(r"^(?P<model>[^\s.]+)\.(?P<scenario>[^\s.]+)\.(?P<key>[A-Za-z0-9_]+) = (?P<value>\S+)$", re.ASCII)
_SPACE = " \t\r\f\v"
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
    lines: list[ConfLine] = []
    for lineno, raw in enumerate(_read_text(path).split("\n"), start=1):   # LoadGen splits on newline alone
        text = raw.split("#", 1)[0].strip(_SPACE)
        if not text:
            continue
        where = f"{path}:{lineno}: {raw.strip(_SPACE)[:80]!r}"
        text = re.sub(f"[{_SPACE}]+", " ", text)
        m = _LINE.match(text)
        if not m:
            if "=" in text and " = " not in text:
                raise UserConfError(f"{where}: LoadGen ignores this line silently; write spaces around '=' (model.Scenario.key = value)")
            raise UserConfError(f"{where}: expected 'model.Scenario.key = value' (one value, ASCII spaces)")
        line = ConfLine(m["model"], m["scenario"], m["key"], m["value"], lineno)
        if line.model not in (model, "*"):
            raise UserConfError(f"{where}: model {line.model!r} is not {model!r} or '*', so LoadGen would ignore it")
        if line.scenario not in SCENARIOS + ("*",):
            raise UserConfError(f"{where}: unknown scenario {line.scenario!r}; use one of {', '.join(SCENARIOS)} or '*'")
        if line.key not in KNOWN_KEYS:
            raise UserConfError(f"{where}: unknown key {line.key!r}; LoadGen would ignore it (known: {', '.join(sorted(KNOWN_KEYS))})")
        problem = scenario_problem(line.key, line.scenario) or value_problem(line.key, line.value, audit)
        if problem:
            raise UserConfError(f"{where}: {problem}")
        lines.append(line)
    return lines


def _read_text(path: Path) -> str:
    """The file as text, or UserConfError naming what is wrong (missing, huge, not UTF-8)."""
    try:
        if not path.is_file():
            raise UserConfError(f"{path}: no such user.conf; pass an existing file with --user-conf")
        if path.stat().st_size > MAX_BYTES:
            raise UserConfError(f"{path}: {path.stat().st_size} bytes is not a user.conf (at most {MAX_BYTES}); pass the right file")
        data = path.read_bytes()
    except OSError as e:
        raise UserConfError(f"{path}: cannot read it ({e.strerror}); pass a readable file with --user-conf") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data[:e.start].count(b"\n") + 1
        raise UserConfError(f"{path}:{lineno}: not UTF-8 text (byte 0x{data[e.start]:02x}); "
                            "write the file as plain text") from None


def scenario_problem(key: str, scenario: str) -> str | None:
    """Why LoadGen would ignore ``key`` set for ``scenario`` (None: it reads it there, or ``*``)."""
    where = READ_IN.get(key)
    if where and scenario != "*" and scenario not in where:
        return f"LoadGen reads {key} only for {', '.join(where)} and ignores it for {scenario}; remove this line"
    return None


def value_problem(key: str, value: str, audit: bool = False) -> str | None:
    """Why LoadGen would read ``value`` for ``key`` as something other than what it says (None: it would not)."""
    if key in MLPERF_CONF_ONLY:
        return f"LoadGen reads {key} only from its built-in mlperf.conf and ignores this line; remove it"
    if key == "accuracy_sample_count_override":
        return "the harness chooses the accuracy run's samples (harness/run.py --count N); remove this line"
    if key == "mode":
        if not audit:
            return "the mode is harness/run.py's --mode (performance, accuracy or both); remove this line"
        return None if value in ("0", "1", "2", "3") else f"mode {value!r}: LoadGen knows 0, 1, 2 and 3"
    if key in UINT | BOOL | LATENCY_MS:
        if value.startswith("-"):
            return f"value {value!r} must not be negative (LoadGen would read a huge unsigned number)"
        if not _DECIMAL_INT.match(value):
            what = "Server's target_latency" if key == "target_latency" else key
            return (f"LoadGen reads {what} as an integer and would not read {value!r} as written (e.g. '1e4' is 1, "
                    "'2.5' is 2, '010' is 8, '0x10' is 16): write a plain decimal integer")
        limit = NS_MAX_MS if key in LATENCY_MS | DURATION_MS else 2 ** 31 - 1 if key in INT32 else UINT_MAX
        if len(value) > len(str(limit)) or int(value) > limit:
            return f"value {value[:30]} is out of range for {key} (at most {limit}: LoadGen would overflow it)"
        n = int(value)
        if key in BOOL and n not in (0, 1):
            return f"{key} is a switch: write 0 or 1, not {value}"
        if key in LATENCY_MS and n == 0:
            return f"{key} is a latency in ms: give at least 1"
        return None
    if not _DECIMAL_FLOAT.match(value):
        return f"value {value[:30]!r} is not a plain decimal number (e.g. 12.5 or 1e3): LoadGen would misread it"
    x = float(value)
    if not math.isfinite(x):
        return f"value {value[:30]!r} is not finite for LoadGen (it would read inf)"
    if key in POSITIVE_FLOAT and x <= 0:
        return f"{key} must be greater than 0, got {value[:30]}"
    if key in PERCENT and not 0 < x < 100:
        return ("a percentile is given in percent, strictly between 0 and 100 "
                "(LoadGen indexes its sorted latencies with it: 100 reads past the end)")
    return None


def loadgen_reads(key: str, scenario: str, settings: Mapping[str, str]) -> bool:
    """Whether LoadGen reads ``key`` in a ``scenario`` run whose effective settings are ``settings``."""
    switch = NEEDS.get(key)
    return scenario_problem(key, scenario) is None and (switch is None or settings.get(switch) == "1")


def resolve(lines: list[ConfLine], scenario: str, model: str = MODEL) -> dict[str, ConfLine]:
    """The value LoadGen would use for each key in ``scenario``, with LoadGen's precedence; a wildcard line
    for a key LoadGen does not read in ``scenario`` (``*.*.target_qps`` in SingleStream) does not apply."""
    rank = {(model, scenario): 0, ("*", scenario): 1, (model, "*"): 2, ("*", "*"): 3}
    best: dict[str, tuple[int, ConfLine]] = {}
    for line in lines:
        r = rank.get((line.model, line.scenario))
        if r is None or scenario_problem(line.key, scenario):
            continue
        if line.key not in best or r <= best[line.key][0]:
            best[line.key] = (r, line)  # a later line of equal rank overrides, as in LoadGen's map
    return {k: v for k, (_, v) in best.items()}


def drop_unread(settings: dict[str, str], lines: Mapping[str, ConfLine], path: Path, scenario: str) -> dict[str, str]:
    """``settings`` (scenario defaults overridden by the resolved user.conf ``lines``) less what LoadGen would
    not read: a user.conf line among it is refused (LoadGen would ignore it silently), a scenario default is
    dropped (user.conf turned its switch off). Keeps the effective file equal to what LoadGen reads."""
    for key in sorted(settings):
        line = lines.get(key)
        if line is not None and line.value == settings[key] and not loadgen_reads(key, scenario, settings):
            switch = NEEDS.get(key, "")
            raise UserConfError(f"{path}:{line.lineno}: {key} = {line.value}: LoadGen reads {key} only while "
                                f"{switch} = 1, and it is {settings.get(switch, 'unset')} for {scenario}; "
                                f"remove this line or set {switch} = 1")
    return {k: v for k, v in settings.items() if loadgen_reads(k, scenario, settings)}


def effective_conf_text(settings: dict[str, str], scenario: str, model: str = MODEL) -> str:
    """Fully specific ``model.scenario.key = value`` lines (the file handed to FromConfig)."""
    body = "".join(f"{model}.{scenario}.{k} = {v}\n" for k, v in sorted(settings.items()))
    return "# effective LoadGen settings for this run (scenario YAML + user.conf)\n" + body


def write_effective_conf(path: Path, settings: dict[str, str], scenario: str, model: str = MODEL) -> None:
    Path(path).write_text(effective_conf_text(settings, scenario, model))
