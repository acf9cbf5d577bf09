"""Scenario YAML files: each scenario's LoadGen defaults and SUT knobs, validated on load."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from harness.user_conf import KNOWN_KEYS, scenario_problem, value_problem

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
SCENARIO_FILES = {"SingleStream": "singlestream.yaml", "Offline": "offline.yaml", "Server": "server.yaml"}
SUT_KNOBS = {"max_batch": int, "workers": int, "batch_wait_ms": (int, float)}


class ScenarioError(ValueError):
    """A scenario name or scenario YAML problem; the message says how to fix it."""


@dataclass(frozen=True)
class ScenarioConfig:
    name: str
    loadgen: dict[str, str]     # LoadGen conf keys -> value strings (same units as user.conf)
    max_batch: int
    workers: int                # verifier sandbox processes; 0: sut.engine.factory.default_workers()
    batch_wait_ms: float
    path: Path


def load_scenario(name: str, directory: Path = SCENARIO_DIR, suite: str = "basic") -> ScenarioConfig:
    """The scenario's settings for ``suite``: ``loadgen`` and ``sut``, with the suite's block (``suites:
    <suite>: {loadgen: ..., sut: ...}``) merged over them, since an agentic task costs ~30x a basic one
    (the expected rate and the latency bound differ, not the scenario)."""
    if name not in SCENARIO_FILES:
        raise ScenarioError(f"unknown scenario {name!r}; choose one of {', '.join(SCENARIO_FILES)}")
    path = Path(directory) / SCENARIO_FILES[name]
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ScenarioError(f"{path}: cannot read scenario file ({e.__class__.__name__}); restore it from git") from e
    if not isinstance(doc, dict) or doc.get("scenario") != name:
        raise ScenarioError(f"{path}: 'scenario:' must be {name!r}")
    lg, sut = dict(doc.get("loadgen") or {}), dict(doc.get("sut") or {})
    suites = doc.get("suites") or {}
    if not isinstance(suites, dict) or any(k not in ("basic", "agentic") or not isinstance(v, dict)
                                           or set(v) - {"loadgen", "sut"} for k, v in suites.items()):
        raise ScenarioError(f"{path}: 'suites:' maps basic or agentic to {{loadgen: ..., sut: ...}}")
    lg.update((suites.get(suite) or {}).get("loadgen") or {})
    sut.update((suites.get(suite) or {}).get("sut") or {})
    for key, value in lg.items():
        if key not in KNOWN_KEYS or isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ScenarioError(f"{path}: loadgen.{key} = {value!r} is not a known LoadGen key with a number")
        problem = scenario_problem(key, name) or value_problem(key, str(value))
        if problem:
            raise ScenarioError(f"{path}: loadgen.{key}: {problem}")
    for key, value in sut.items():
        if key not in SUT_KNOBS or isinstance(value, bool) or not isinstance(value, SUT_KNOBS[key]) or value < 0:
            raise ScenarioError(f"{path}: sut.{key} = {value!r}; known knobs: {', '.join(SUT_KNOBS)} (non-negative numbers)")
    return ScenarioConfig(
        name=name,
        loadgen={k: str(v) for k, v in lg.items()},
        max_batch=max(1, int(sut.get("max_batch", 1))),
        workers=int(sut.get("workers", 0)),
        batch_wait_ms=float(sut.get("batch_wait_ms", 0)),
        path=path,
    )
