"""Build small real results trees with tests/oracle_engine.py: harness/lg_run.py's real LoadGen runs of
the real SUT, with a stand-in engine (a fixed sleep per attempt, answers from the reference solutions).

The metadata (user.conf, measurements.json, systems/*.json) is written by the harness's own
functions, the audits are prepared and verified by harness/audits.py; only the engine is
a stand-in. Settings are the scenario YAMLs plus a test user.conf whose loads fit the oracle:
every performance run meets the quick floor (10 s) and is VALID.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from argparse import Namespace
from dataclasses import dataclass
from pathlib import Path

from harness.audit_verify import AUDIT_TESTS
from harness.audits import finish, prepare
from harness.results import BENCHMARK, ScenarioPaths
from harness.run import effective_settings
from harness.run_config import run_configuration
from harness.run_summary import write_run_metadata
from harness.scenario_config import load_scenario
from harness.scenario_files import accuracy_pass, run_suite
from harness.user_conf import write_effective_conf
from sut.engine.factory import EngineOptions
from sut.tasks.basic import EVAL_PATH

ORACLE = Path(__file__).resolve().parent / "oracle_engine.py"
SYSTEM = "oracle_cpu"
# Loads the oracle (25 ms per attempt, ~1.4 attempts per task) sustains for >= 10 s: Offline's
# 308 samples (1.1 x 28/s x 10 s, drawn by LoadGen's fixed seeds) hold 444 attempts, 11.1 s of sleep on
# one worker, no fewer on any machine; no more either, as Offline TEST04 repeats one sample 4 x 308 times
# (~31 s, the longest run of the trees). Server's 500 arrivals (enough for LoadGen's p99 early stopping)
# are served by eight workers: hardly any queueing, so that the latency of TEST04's repeated sample is
# comparable with the performance run's (with four, queueing put it near the 10% TEST04 threshold).
USER_CONF = """\
nano-codegen-agent.*.min_duration = 10000
nano-codegen-agent.SingleStream.min_query_count = 64
nano-codegen-agent.Offline.min_query_count = 1
nano-codegen-agent.Server.min_query_count = 100
nano-codegen-agent.Offline.target_qps = 28
nano-codegen-agent.Server.target_qps = 50
"""
COST_MS = 25.0


def write_reference(path: Path, pass_final: float = 1.0, mean_attempts: float = 4 / 3, tokens: float = 40.0) -> Path:
    """A stand-in reference checkpoint folder holding only metrics.json (what the checker reads).

    It solved every task (no ``failed_final``), so a subset's target is 99% too."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "metrics.json").write_text(json.dumps({"eval": {"pass@final": pass_final, "pass@1": 0.6,
                                                            "mean_attempts": mean_attempts, "mean_tokens": tokens,
                                                            "failed_final": []}}))
    return path


def run_oracle(scenario: str, mode: str, conf: Path, outdir: Path, count: int, checkpoint: Path, cheat: str = "",
               audit_config: Path | None = None) -> subprocess.Popen:
    """One LoadGen run by harness/lg_run.py over the oracle engine (``checkpoint``: the folder's, which
    sut_stats.json records the hash of); stderr joins lg_run's own harness.log."""
    cmd = [sys.executable, str(ORACLE), "--scenario", scenario, "--mode", mode, "--conf", str(conf),
           "--out", str(outdir), "--count", str(count), "--checkpoint", str(checkpoint), "--no-progress",
           "--cost-ms", str(COST_MS), "--cheat", cheat, "--workers", "8" if scenario == "Server" else "1"]
    if audit_config is not None:
        cmd += ["--audit-config", str(audit_config)]
    outdir.mkdir(parents=True, exist_ok=True)
    with open(outdir / "harness.log", "a") as log:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.wait() != 0:
            raise RuntimeError(f"oracle run failed (see its harness.log): {' '.join(map(str, p.args))}")


def start_scenario(root: Path, scenario: str, reference: Path, count: int = 16,
                   cheat: str = "") -> tuple[ScenarioPaths, list[subprocess.Popen]]:
    """Write the scenario's metadata and start its performance and accuracy runs (in parallel)."""
    paths = ScenarioPaths(root, SYSTEM, scenario)
    user_conf = root / "test_user.conf"
    root.mkdir(parents=True, exist_ok=True)
    user_conf.write_text(USER_CONF)
    settings, _ = effective_settings(load_scenario(scenario), user_conf, official=False)
    opts = EngineOptions(checkpoint=reference, max_attempts=3)
    paths.claim(paths.run_dirs(["performance", "accuracy"]),
                run_configuration(opts, EVAL_PATH, count, settings, official=False))
    write_effective_conf(paths.scenario_dir / "user.conf", settings, scenario)
    write_run_metadata(paths, opts, settings, Namespace(mode="both", official=False, count=count))
    conf = paths.scenario_dir / "user.conf"
    return paths, [run_oracle(scenario, "performance", conf, paths.performance_dir, count, reference, cheat),
                   run_oracle(scenario, "accuracy", conf, paths.accuracy_dir, count, reference, cheat)]


def finish_scenario(paths: ScenarioPaths, procs: list[subprocess.Popen]) -> None:
    _wait(procs)
    accuracy_pass(paths.accuracy_dir / "mlperf_log_accuracy.json", paths.accuracy_dir / "accuracy.txt",
                  json.loads((paths.scenario_dir / "run_config.json").read_text())["tasks"]["count"],
                  suite=run_suite(paths.scenario_dir))


def run_audits(jobs: list[tuple[ScenarioPaths, str, str]], reference: Path, count: int = 16) -> dict[tuple[str, str], bool]:
    """Run audits (paths, test, cheat) side by side (the oracle sleeps, so timings hold);
    returns (root name + scenario, test) -> passed."""
    started = []
    for paths, test, cheat in jobs:
        run_dir, _ = prepare(test, paths)
        started.append(run_oracle(paths.scenario, "performance", paths.scenario_dir / "user.conf", run_dir, count,
                                  reference, cheat, paths.audit_dir(test) / "audit.config"))
    _wait(started)
    return {(f"{paths.root.name}/{paths.scenario}", test): finish(test, paths, reference).passed
            for paths, test, _ in jobs}


@dataclass
class Trees:
    reference: Path
    honest: Path                        # Offline (all five audits), SingleStream (TEST04, TEST06), Server (TEST04)
    cheats: dict[str, Path]             # cheat -> a tree whose Offline audits ran with that cheat
    verdicts: dict[tuple[str, str], bool]

    def scenario(self, root: Path, scenario: str = "Offline") -> Path:
        return root / SYSTEM / BENCHMARK / scenario


CHEAT_AUDITS = {"cache": ["TEST04"], "differ": ["TEST01"], "giveup": ["TEST01", "TEST06", "TEST07", "TEST09"]}
_CACHE: dict[str, Trees] = {}


def build_trees(base: Path) -> Trees:
    """The honest tree and one tree per cheat (honest base runs, audits run by the cheating SUT)."""
    ref = write_reference(base / "reference")
    honest = base / "honest"
    started = [start_scenario(honest, s, ref) for s in ("Offline", "SingleStream", "Server")]
    for paths, procs in reversed(started):   # Offline's runs end last: the others' accuracy passes meanwhile
        finish_scenario(paths, procs)
    offline, single, server = (p for p, _ in started)
    # Offline TEST04 (4x the performance run's samples) is the longest run of all: started first
    jobs = [(offline, t, "") for t in sorted(AUDIT_TESTS, key=lambda t: t != "TEST04")] + \
        [(single, "TEST04", ""), (single, "TEST06", ""), (server, "TEST04", "")]
    cheats = {}
    for cheat, tests in CHEAT_AUDITS.items():
        root = base / f"cheat_{cheat}"
        shutil.copytree(honest / "systems", root / "systems")
        shutil.copytree(offline.scenario_dir, ScenarioPaths(root, SYSTEM, "Offline").scenario_dir,
                        ignore=shutil.ignore_patterns("TEST0*"))
        cheats[cheat] = root
        jobs += [(ScenarioPaths(root, SYSTEM, "Offline"), t, cheat) for t in tests]
    return Trees(ref, honest, cheats, run_audits(jobs, ref))


def session_trees(factory) -> Trees:
    """Build the trees once per test session (pytest's tmp_path_factory), whichever test module asks first."""
    if "trees" not in _CACHE:
        _CACHE["trees"] = build_trees(factory.mktemp("trees"))
    return _CACHE["trees"]


def copy_tree(src: Path, dst: Path) -> Path:
    """A private copy of a tree for a test to doctor."""
    shutil.copytree(src, dst)
    return dst
