"""Whole user.conf files written by hypothesis: each is refused with the one documented error
(UserConfError, one line, naming the file and a line of it), or LoadGen itself reads every value
exactly as the harness resolved it, both from the user's file and from the effective file the
harness hands to LoadGen. LoadGen is asked in one subprocess for the whole batch."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.user_conf import (BOOL, INT32, KNOWN_KEYS, LATENCY_MS, MLPERF_CONF_ONLY, MODEL, NS_MAX_MS, READ_IN,
                               SCENARIOS, UINT_MAX, UserConfError, drop_unread, loadgen_reads, parse_user_conf, resolve,
                               write_effective_conf)

GOOD_KEYS = sorted(KNOWN_KEYS - MLPERF_CONF_ONLY - {"mode", "accuracy_sample_count_override"})
FUZZ_KEYS = sorted(KNOWN_KEYS) + ["min_durration", "target_duration", "Min_duration", ""]

# (key, scenario) -> (TestSettings attribute, "u" uint64 | "d" double | "b" bool, multiplier): how FromConfig stores it.
_SAME = {k: (k, "u", 1) for k in ("min_query_count", "max_query_count", "accuracy_log_rng_seed", "accuracy_log_sampling_target",
                                   "performance_issue_same_index", "performance_sample_count_override",
                                   "token_latency_scaling_factor")}
ATTR = {**_SAME, "min_duration": ("min_duration_ms", "u", 1), "max_duration": ("max_duration_ms", "u", 1),
        "max_async_queries": ("server_max_async_queries", "u", 1), "ttft_latency": ("ttft_latency", "u", 10 ** 6),
        "tpot_latency": ("tpot_latency", "u", 10 ** 6), "coalesce_queries": ("server_coalesce_queries", "b", 1),
        **{k: (k, "b", 1) for k in BOOL - {"coalesce_queries"}}}
PER_SCENARIO = {
    ("target_latency", "SingleStream"): ("single_stream_expected_latency_ns", "d", 1e6),
    ("target_latency", "MultiStream"): ("multi_stream_expected_latency_ns", "d", 1e6),
    ("target_latency", "Server"): ("server_target_latency_ns", "u", 10 ** 6),
    ("target_latency_percentile", "SingleStream"): ("single_stream_target_latency_percentile", "d", 0.01),
    ("target_latency_percentile", "MultiStream"): ("multi_stream_target_latency_percentile", "d", 0.01),
    ("target_latency_percentile", "Server"): ("server_target_latency_percentile", "d", 0.01),
    ("target_qps", "Server"): ("server_target_qps", "d", 1.0), ("target_qps", "Offline"): ("offline_expected_qps", "d", 1.0),
    ("samples_per_query", "MultiStream"): ("multi_stream_samples_per_query", "u", 1),
}

READ_BACK = """
import json, sys, mlperf_loadgen as lg
out = []
for conf, scenario, attrs in json.loads(sys.stdin.read()):
    s = lg.TestSettings()
    rc = s.FromConfig(conf, "nano-codegen-agent", scenario)
    out.append([rc, [int(v) if isinstance(v, bool) else v for v in (getattr(s, a) for a in attrs)]])
print(json.dumps(out))
"""


def attr(key: str, scenario: str) -> tuple[str, str, float]:
    found = PER_SCENARIO.get((key, scenario)) or (ATTR.get(key) if scenario in READ_IN.get(key, SCENARIOS) else None)
    assert found, f"accepted {key} for {scenario}, where LoadGen does not read it"
    return found


def expected(key: str, value: str, scenario: str) -> tuple[str, float | int]:
    """The attribute LoadGen stores ``value`` in and the number it must hold: what the line says, in LoadGen's unit."""
    name, kind, mult = attr(key, scenario)
    if kind == "d":
        return name, float(value) * mult
    said = Decimal(value)   # an integer key holding 1e4 must hold 10000; one given 2.5 can hold nothing right
    return name, int(said) * int(mult) if said == said.to_integral_value() else float(said)


def good_value(key: str) -> st.SearchStrategy[str]:
    if key in BOOL:
        return st.sampled_from(["0", "1"])
    if key == "target_qps":
        return st.floats(1e-3, 1e6).map(repr)
    if key == "target_latency_percentile":
        return st.floats(1e-3, 99.999).map(repr)
    top = NS_MAX_MS if key in LATENCY_MS | {"min_duration", "max_duration"} else 2 ** 31 - 1 if key in INT32 else UINT_MAX
    return st.one_of(st.integers(1 if key in LATENCY_MS else 0, 10 ** 7), st.just(top)).map(str)


# A number in the notations LoadGen's strtoull / strtod read differently from Python (or not at all).
NOTATION = st.tuples(st.integers(0, 10 ** 6), st.sampled_from(["{}e0", "{}.0", "{}.5", "0x{}", "+{}", "0{}", "-{}", "{}e3",
                                                             "{}E-1", "{}L", "{:e}", "{}_0", "0b{}", "{}\x00"])
                     ).map(lambda t: t[1].format(t[0]))
ANY_VALUE = st.one_of(
    NOTATION, NOTATION, NOTATION,
    st.sampled_from(["0", "1", "2", "99", "1e4", "1.5", "0x10", "+5", "010", "08", "inf", "nan", "1e999", "1e-400", "100",
                     "99.9", "-0", "5.", ".5", "18446744073709551616", str(NS_MAX_MS + 1), "9" * 5000]),
    st.integers(-5, 2 ** 65).map(str), st.floats().map(repr), st.from_regex(r"[0-9eE.+\-x]{1,8}", fullmatch=True),
    st.text(max_size=5))
SEPS = [(" ", " "), ("", ""), (" ", ""), ("\t", "\t"), ("\xa0", "\xa0"), ("  ", " "), ("\x0b", " "), ("\u2003", " ")]
TRAILS = ["", " # note", "#", " 7", "\r", "\x00", "\u2003"]
JUNK = st.text(st.characters(codec="utf-8") | st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF), max_size=20)


@st.composite
def conf_line(draw: st.DrawFn) -> str:
    """A good line, a good line with one part replaced by fuzz, a blank, a comment or junk."""
    kind = draw(st.sampled_from(["good"] * 4 + ["mutant"] * 8 + ["junk", "blank", "comment"]))
    if kind == "blank":
        return draw(st.sampled_from(["", "   ", "\t", "\r", " \x0b"]))
    if kind == "comment":
        return "#" + draw(JUNK)
    if kind == "junk":
        return draw(JUNK)
    key = draw(st.sampled_from(GOOD_KEYS))
    parts = {"model": draw(st.sampled_from([MODEL, MODEL, "*"])),
             "scenario": draw(st.sampled_from(READ_IN.get(key, SCENARIOS) + ("*",))), "key": key,
             "sep": (" ", " "), "value": draw(good_value(key)), "trail": draw(st.sampled_from(["", "", "", "  ", " # note"]))}
    if kind == "mutant":
        part = draw(st.sampled_from(sorted(parts)))
        parts[part] = draw({"model": st.sampled_from([MODEL, "*", "gpt-j", ""]),
                            "scenario": st.sampled_from(SCENARIOS + ("*", "offline", "")),
                            "key": st.sampled_from(FUZZ_KEYS), "sep": st.sampled_from(SEPS), "value": ANY_VALUE,
                            "trail": st.sampled_from(TRAILS)}[part])
    sep = parts["sep"]
    return f"{parts['model']}.{parts['scenario']}.{parts['key']}{sep[0]}={sep[1]}{parts['value']}{parts['trail']}"


def test_fuzzed_user_conf_files_are_refused_by_line_or_read_by_loadgen_as_resolved(tmp_path: Path) -> None:
    jobs: list[tuple[str, str, list[str]]] = []
    wants: list[tuple[str, list[float | int]]] = []

    def ask(conf: Path, scenario: str, values: dict[str, str], why: str) -> None:
        pairs = [expected(k, v, scenario) for k, v in sorted(values.items())]
        jobs.append((str(conf), scenario, [a for a, _ in pairs]))
        wants.append((f"{why} {conf.read_text(errors='replace')!r} {scenario}", [w for _, w in pairs]))

    @settings(max_examples=300, deadline=None, database=None)
    @given(st.lists(conf_line(), max_size=4))
    def judge(file_lines: list[str]) -> None:
        path = tmp_path / f"user{len(list(tmp_path.iterdir()))}.conf"
        data = "\n".join(file_lines).encode("utf-8", "surrogateescape")
        path.write_bytes(data)
        try:
            lines = parse_user_conf(path)
        except UserConfError as e:
            msg = str(e)
            m = re.match(rf"{re.escape(str(path))}:(\d+): ", msg)
            assert m and 1 <= int(m[1]) <= data.count(b"\n") + 1 and "\n" not in msg, msg
            return
        if len(jobs) >= 400:
            return
        raw_ok = b"#" not in data   # LoadGen refuses a trailing comment; the harness hands it none
        for scenario in SCENARIOS:
            resolved = resolve(lines, scenario)
            values = {k: line.value for k, line in resolved.items()}
            if raw_ok and values:
                ask(path, scenario, {k: v for k, v in values.items() if loadgen_reads(k, scenario, values)}, "raw")
            try:
                effective = drop_unread(values, resolved, path, scenario)
            except UserConfError as e:
                assert re.match(rf"{re.escape(str(path))}:\d+: ", str(e)) and "\n" not in str(e)
                continue
            if effective:
                conf = path.with_suffix(f".{scenario}.effective")
                write_effective_conf(conf, effective, scenario)
                ask(conf, scenario, effective, "effective")

    judge()
    assert len(jobs) >= 30, len(jobs)   # enough accepted files to compare
    r = subprocess.run([sys.executable, "-c", READ_BACK], input=json.dumps(jobs), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for (why, want), (rc, got) in zip(wants, json.loads(r.stdout)):
        assert rc == 0 and got == want, (why, want, got)
