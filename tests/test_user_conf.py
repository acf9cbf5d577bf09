"""user.conf validation: every line LoadGen would silently ignore or misread is refused, naming the line."""
from pathlib import Path

import pytest

from harness.scenario_config import ScenarioError, load_scenario
from harness.user_conf import UserConfError, parse_user_conf, resolve

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "user.conf"
    p.write_text(text)
    return p


def test_shipped_user_conf_is_valid():
    lines = parse_user_conf(REPO / "user.conf")
    assert resolve(lines, "Offline")["min_duration"].value == "10000"


@pytest.mark.parametrize("line, fragment", [
    ("nano-codegen-agent.Offline.min_duration=5", "spaces around '='"),
    ("nano-codegen-agent.Offline.min_durration = 5", "unknown key 'min_durration'"),
    ("gpt-j.Offline.min_duration = 5", "model 'gpt-j'"),
    ("nano-codegen-agent.Ofline.min_duration = 5", "unknown scenario 'Ofline'"),
    ("nano-codegen-agent.Offline.min_duration = 10s", "plain decimal integer"),
    ("nano-codegen-agent.Server.target_latency = -3", "negative"),
    ("nano-codegen-agent.Server.target_latency_percentile = 0.99e3", "percent"),
    ("nano-codegen-agent.Offline.min_duration = 1e4", "'1e4' is 1"),
    ("nano-codegen-agent.Offline.min_duration = 010", "plain decimal integer"),
    ("nano-codegen-agent.Server.target_latency = 2.5", "plain decimal integer"),
    ("nano-codegen-agent.Offline.target_qps = 1e999", "not finite"),
    ("nano-codegen-agent.Offline.target_qps = inf", "plain decimal number"),
    ("nano-codegen-agent.Offline.target_qps = 0", "greater than 0"),
    ("nano-codegen-agent.Server.min_query_count = 18446744073709551616", "out of range"),
    ("nano-codegen-agent.*.use_token_latencies = 2", "0 or 1"),
    ("nano-codegen-agent.*.qsl_rng_seed = 5", "only from its built-in mlperf.conf"),
    ("nano-codegen-agent.*.mode = 2", "--mode"),
    ("min_duration = 5", "model.Scenario.key = value"),
    # notations strtoull reads otherwise, ranges LoadGen overflows, lines LoadGen ignores (issue 16, item 8)
    ("nano-codegen-agent.Offline.min_duration = 0x10", "'0x10' is 16"),
    ("nano-codegen-agent.Offline.min_duration = +5", "plain decimal integer"),
    ("nano-codegen-agent.Offline.target_qps = +5", "plain decimal number"),
    ("nano-codegen-agent.Offline.min_duration = 9223372036855", "out of range"),      # ms -> int64 ns overflows
    ("nano-codegen-agent.Offline.min_duration = " + "9" * 5000, "out of range"),     # not a ValueError from int()
    ("nano-codegen-agent.Server.max_async_queries = 2147483648", "out of range"),    # cast to a C int
    ("nano-codegen-agent.Server.target_latency = 0", "at least 1"),
    ("nano-codegen-agent.Server.target_latency_percentile = 100", "past the end"),
    ("nano-codegen-agent.Offline.target_latency = 5", "only for SingleStream, MultiStream, Server"),
    ("nano-codegen-agent.SingleStream.target_qps = 5", "only for Server, Offline"),
    ("nano-codegen-agent.Offline.max_async_queries = 5", "only for Server"),
    ("nano-codegen-agent.Offline.accuracy_sample_count_override = 10", "--count"),
    ("nano-codegen-agent.Offline.min_duration\u00a0=\u00a05", "spaces around '='"),   # a no-break space is no space to LoadGen
    ("nano-codegen-agent.Offline.min_duration = 5 7", "one value"),                   # LoadGen would read 7
])
def test_bad_line_is_refused_with_its_line_number(tmp_path, line, fragment):
    path = write(tmp_path, "# comment\n\n" + line + "\n")
    with pytest.raises(UserConfError) as e:
        parse_user_conf(path)
    msg = str(e.value)
    assert f"{path}:3:" in msg and fragment in msg and "\n" not in msg


def test_precedence_matches_loadgen(tmp_path):
    path = write(tmp_path, "\n".join([
        "*.*.min_duration = 1",
        "nano-codegen-agent.*.min_duration = 2",
        "*.Server.min_duration = 3",
        "nano-codegen-agent.Server.min_duration = 4",
        "*.Offline.target_qps = 7  # trailing comment",
        "*.Offline.target_qps = 8",
    ]) + "\n")
    lines = parse_user_conf(path)
    assert resolve(lines, "Server")["min_duration"].value == "4"
    assert resolve(lines, "Offline")["min_duration"].value == "2"
    assert resolve(lines, "Offline")["target_qps"].value == "8"  # a later line of equal rank wins
    assert "target_qps" not in resolve(lines, "SingleStream")


def test_missing_file_names_the_fix(tmp_path):
    with pytest.raises(UserConfError, match="--user-conf"):
        parse_user_conf(tmp_path / "nope.conf")


def test_unreadable_files_are_one_user_conf_error(tmp_path):
    """Not UTF-8, huge, a directory: the one documented error, never UnicodeDecodeError or MemoryError."""
    bad = tmp_path / "latin1.conf"
    bad.write_bytes(b"# ok\nnano-codegen-agent.*.min_duration = 5 # caf\xe9\n")
    with pytest.raises(UserConfError, match=rf"^{bad}:2: not UTF-8"):
        parse_user_conf(bad)
    huge = tmp_path / "huge.conf"
    huge.write_bytes(b"#" * (2 << 20))
    with pytest.raises(UserConfError, match="bytes is not a user.conf"):
        parse_user_conf(huge)
    with pytest.raises(UserConfError, match="no such user.conf"):
        parse_user_conf(tmp_path)


def test_a_line_loadgen_reads_only_under_a_switch_is_refused_and_a_default_dropped(tmp_path):
    """ttft_latency is read only with use_token_latencies = 1: a user's line is refused with its number; the
    scenario YAML's bound is dropped when user.conf turns the switch off (the effective file is what LoadGen reads)."""
    from harness.run import effective_settings

    server = load_scenario("Server")
    off = write(tmp_path, "nano-codegen-agent.Server.use_token_latencies = 0\n")
    settings, _ = effective_settings(server, off, official=False)
    assert settings["use_token_latencies"] == "0" and "ttft_latency" not in settings and "tpot_latency" not in settings
    both = write(tmp_path, "*.*.use_token_latencies = 0\n*.Server.ttft_latency = 500\n")
    with pytest.raises(UserConfError, match=rf"^{both}:2: ttft_latency = 500: LoadGen reads ttft_latency only while "
                                            "use_token_latencies = 1"):
        effective_settings(server, both, official=False)
    # a wildcard line applies only where LoadGen reads its key
    wild = write(tmp_path, "*.*.target_qps = 7\n*.*.target_latency = 9\n")
    assert effective_settings(load_scenario("SingleStream"), wild, official=False)[0]["target_latency"] == "9"
    offline, _ = effective_settings(load_scenario("Offline"), wild, official=False)
    assert offline["target_qps"] == "7" and "target_latency" not in offline


def test_scenarios_load_and_bad_name_is_refused():
    for name in ("SingleStream", "Offline", "Server"):
        assert load_scenario(name).name == name
    with pytest.raises(ScenarioError, match="choose one of SingleStream, Offline, Server"):
        load_scenario("offline")


def test_a_suite_block_overrides_the_scenario_settings(tmp_path):
    """The agentic suite's tasks cost ~30x a basic one: its expected rate and latency bound are its own."""
    assert load_scenario("Offline").loadgen["target_qps"] == "600"
    assert load_scenario("Offline", suite="agentic").loadgen["target_qps"] == "25"
    server = load_scenario("Server", suite="agentic").loadgen
    assert server["target_latency"] == "15000" and server["target_latency_percentile"] == "99"
    bad = tmp_path / "offline.yaml"
    bad.write_text("scenario: Offline\nloadgen:\n  target_qps: 5\nsuites:\n  agentic:\n    loadgen:\n"
                   "      target_qps: -1\n")
    with pytest.raises(ScenarioError, match="loadgen.target_qps"):
        load_scenario("Offline", tmp_path, suite="agentic")
    bad.write_text("scenario: Offline\nsuites:\n  nope: {}\n")
    with pytest.raises(ScenarioError, match="'suites:' maps basic or agentic"):
        load_scenario("Offline", tmp_path)


# What LoadGen's TestSettings shows for each key set on the Server scenario, and how it scales it.
LOADGEN_ATTR = {
    "min_duration": ("min_duration_ms", 1), "max_duration": ("max_duration_ms", 1),
    "min_query_count": ("min_query_count", 1), "max_query_count": ("max_query_count", 1),
    "accuracy_log_rng_seed": ("accuracy_log_rng_seed", 1), "accuracy_log_sampling_target": ("accuracy_log_sampling_target", 1),
    "performance_issue_same_index": ("performance_issue_same_index", 1),
    "performance_sample_count_override": ("performance_sample_count_override", 1),
    "max_async_queries": ("server_max_async_queries", 1), "print_timestamps": ("print_timestamps", 1),
    "performance_issue_unique": ("performance_issue_unique", 1), "performance_issue_same": ("performance_issue_same", 1),
    "coalesce_queries": ("server_coalesce_queries", 1), "use_token_latencies": ("use_token_latencies", 1),
    "infer_token_latencies": ("infer_token_latencies", 1),
    "sample_concatenate_permutation": ("sample_concatenate_permutation", 1),
    "target_latency": ("server_target_latency_ns", 10 ** 6), "ttft_latency": ("ttft_latency", 10 ** 6),
    "tpot_latency": ("tpot_latency", 10 ** 6), "target_qps": ("server_target_qps", 1),
    "token_latency_scaling_factor": ("token_latency_scaling_factor", 1),
    "target_latency_percentile": ("server_target_latency_percentile", 0.01),
}
READ_BACK = """
import json, sys, mlperf_loadgen as lg
out = []
for conf, attr in json.loads(sys.stdin.read()):
    s = lg.TestSettings()
    rc = s.FromConfig(conf, "nano-codegen-agent", "Server")
    out.append([rc, getattr(s, attr)])
print(json.dumps(out))
"""


def test_fuzzed_user_conf_values_are_refused_or_read_by_loadgen_as_written(tmp_path):
    """Hypothesis writes values in every notation; each is refused with its line number, or LoadGen
    itself (read back from its TestSettings) reads exactly the number the line says."""
    import json
    import math
    import subprocess
    import sys

    from hypothesis import given, settings
    from hypothesis import strategies as st

    values = st.one_of(
        st.integers(-10, 2 ** 66).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.floats(min_value=0, max_value=1e6).map(lambda x: f"{x:e}"), st.integers(0, 2 ** 20).map(hex),
        st.integers(0, 999).map(lambda n: f"0{n}"), st.from_regex(r"[0-9eE.+\-x]{1,10}", fullmatch=True),
        st.text(max_size=6))
    accepted: list[tuple[str, str, Path]] = []

    @settings(max_examples=400, deadline=None, database=None)
    @given(key=st.sampled_from(sorted(LOADGEN_ATTR)), value=values)
    def judge(key: str, value: str) -> None:
        path = tmp_path / f"fuzz{len(accepted)}.conf"
        token_prefix = {"ttft_latency": "nano-codegen-agent.Server.use_token_latencies = 1\n",
                        "tpot_latency": "nano-codegen-agent.Server.use_token_latencies = 1\n",
                        "token_latency_scaling_factor": "nano-codegen-agent.Server.infer_token_latencies = 1\n"}.get(key, "")
        path.write_text(token_prefix + f"nano-codegen-agent.Server.{key} = {value}\n", encoding="utf-8", errors="surrogateescape")
        try:
            parse_user_conf(path)
        except UserConfError as e:
            assert f"{path}:" in str(e) and "\n" not in str(e)
            return
        accepted.append((key, value, path))

    judge()
    assert len(accepted) > 20
    r = subprocess.run([sys.executable, "-c", READ_BACK], input=json.dumps([[str(p), LOADGEN_ATTR[k][0]] for k, _, p in accepted]),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    for (key, value, _), (rc, got) in zip(accepted, json.loads(r.stdout)):
        want = float(value) * LOADGEN_ATTR[key][1]
        assert rc == 0 and math.isclose(float(got), want, rel_tol=1e-12), (key, value, got)
