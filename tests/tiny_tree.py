"""Build small real results trees with tests/tiny_sut.py (real LoadGen, real SUT class, real files).

The metadata (user.conf, measurements.json, systems/*.json) is written by the harness's own
functions, the audits are prepared and verified by harness/audits.py; only the engine is
tiny. Settings are the scenario YAMLs plus a test user.conf whose loads fit the tiny SUT:
every performance run meets the quick floor (10 s) and is VALID.
"""
from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

from harness.audits import finish, prepare
from harness.results import ScenarioPaths
from harness.run import effective_settings
from harness.run_summary import write_run_metadata
from harness.scenario_config import load_scenario
from harness.scenario_files import accuracy_pass
from harness.user_conf import write_effective_conf
from sut.engine_factory import EngineOptions

TINY = Path(__file__).resolve().parent / "tiny_sut.py"
SYSTEM = "tiny_sut_cpu"
# Loads the tiny SUT (25 ms per attempt, ~1.3 attempts per task) sustains for >= 10 s: Offline's
# 440 samples take 11-22 s on one worker; Server's 500 arrivals (enough for LoadGen's p99
# early stopping) are served by four.
USER_CONF = """\
nano-codegen-agent.*.min_duration = 10000
nano-codegen-agent.SingleStream.min_query_count = 64
nano-codegen-agent.Offline.min_query_count = 1
nano-codegen-agent.Server.min_query_count = 100
nano-codegen-agent.Offline.target_qps = 40
nano-codegen-agent.Server.target_qps = 50
"""
COST_MS = 25.0


def write_reference(path: Path, pass_final: float = 1.0, mean_attempts: float = 4 / 3, tokens: float = 40.0) -> Path:
    """A stand-in reference checkpoint folder holding only metrics.json (what the checker reads)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"eval": {"pass@final": pass_final, "pass@1": 0.6,
                                                            "mean_attempts": mean_attempts, "mean_tokens": tokens}}))
    return path


def run_tiny(scenario: str, mode: str, conf: Path, outdir: Path, count: int, cheat: str = "",
             audit_config: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, str(TINY), "--scenario", scenario, "--mode", mode, "--conf", str(conf),
           "--outdir", str(outdir), "--count", str(count), "--cost-ms", str(COST_MS), "--cheat", cheat,
           "--workers", "4" if scenario == "Server" else "1"]
    if audit_config is not None:
        cmd += ["--audit-config", str(audit_config)]
    outdir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(outdir / "harness.log", "w"))


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"tiny SUT run failed: {' '.join(map(str, p.args))}")


def start_scenario(root: Path, scenario: str, reference: Path, count: int = 16,
                   cheat: str = "") -> tuple[ScenarioPaths, list[subprocess.Popen]]:
    """Write the scenario's metadata and start its performance and accuracy runs (in parallel)."""
    paths = ScenarioPaths(root, SYSTEM, scenario)
    paths.claim(paths.run_dirs(["performance", "accuracy"]))
    user_conf = root / "test_user.conf"
    user_conf.write_text(USER_CONF)
    settings, _ = effective_settings(load_scenario(scenario), user_conf, official=False)
    write_effective_conf(paths.scenario_dir / "user.conf", settings, scenario)
    opts = EngineOptions(checkpoint=reference, max_attempts=3)
    write_run_metadata(paths, opts, settings, Namespace(mode="both", official=False, count=count))
    conf = paths.scenario_dir / "user.conf"
    return paths, [run_tiny(scenario, "performance", conf, paths.performance_dir, count, cheat),
                   run_tiny(scenario, "accuracy", conf, paths.accuracy_dir, count, cheat)]


def finish_scenario(paths: ScenarioPaths, procs: list[subprocess.Popen]) -> None:
    _wait(procs)
    accuracy_pass(paths.accuracy_dir / "mlperf_log_accuracy.json", paths.accuracy_dir / "accuracy.txt")


def run_audits(paths: ScenarioPaths, tests: list[str], count: int = 16, cheat: str = "") -> dict[str, bool]:
    """Run audits one after another (TEST01/TEST04 are timed); returns test -> passed."""
    out = {}
    for test in tests:
        run_dir, _ = prepare(test, paths)
        _wait([run_tiny(paths.scenario, "performance", paths.scenario_dir / "user.conf", run_dir, count, cheat,
                        paths.audit_dir(test) / "audit.config")])
        out[test] = finish(test, paths).passed
    return out
