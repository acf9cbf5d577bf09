"""The submission-style results tree, and the rule that a run never overwrites another.

    <results-dir>/systems/<system>.json
    <results-dir>/<system>/nano-codegen-agent/<Scenario>/
        user.conf                      effective LoadGen settings of the run
        measurements.json              how the run was made (checkpoint, knobs, commands)
        performance/run_1/             mlperf_log_summary.txt, mlperf_log_detail.txt,
                                       agent_records.jsonl, sut_stats.json
        accuracy/                      the same plus mlperf_log_accuracy.json, accuracy.txt
        TEST01/ TEST04/ ...            audit runs (harness/run.py --audit)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BENCHMARK = "nano-codegen-agent"


class ResultsExistError(FileExistsError):
    """A results folder that would be overwritten."""


@dataclass(frozen=True)
class ScenarioPaths:
    root: Path          # the --results-dir
    system: str
    scenario: str

    @property
    def scenario_dir(self) -> Path:
        return self.root / self.system / BENCHMARK / self.scenario

    @property
    def performance_dir(self) -> Path:
        return self.scenario_dir / "performance" / "run_1"

    @property
    def accuracy_dir(self) -> Path:
        return self.scenario_dir / "accuracy"

    def audit_dir(self, test: str) -> Path:
        return self.scenario_dir / test

    @property
    def system_json(self) -> Path:
        return self.root / "systems" / f"{self.system}.json"

    def run_dirs(self, modes: list[str]) -> list[Path]:
        return [self.performance_dir if m == "performance" else self.accuracy_dir for m in modes]

    def claim(self, dirs: list[Path]) -> None:
        """Create ``dirs``; refuse (before anything runs) if any already holds files."""
        for d in dirs:
            if d.exists() and any(d.iterdir()):
                raise ResultsExistError(
                    f"{d} already holds a run; choose another --results-dir or --system-name, or move it away")
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
