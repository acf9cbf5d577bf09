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
    ("nano-codegen-agent.Offline.min_duration = 10s", "not a number"),
    ("nano-codegen-agent.Server.target_latency = -3", "negative"),
    ("nano-codegen-agent.Server.target_latency_percentile = 0.99e3", "percent"),
    ("min_duration = 5", "model.Scenario.key = value"),
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


def test_scenarios_load_and_bad_name_is_refused():
    for name in ("SingleStream", "Offline", "Server"):
        assert load_scenario(name).name == name
    with pytest.raises(ScenarioError, match="choose one of SingleStream, Offline, Server"):
        load_scenario("offline")
