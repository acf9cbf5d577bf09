"""The submission-style results tree, and the rule that a run never overwrites another.

    <results-dir>/systems/<system>.json
    <results-dir>/<system>/nano-codegen-agent/<Scenario>/
        run_config.json                the one configuration the folder is bound to (harness/run_config.py)
        user.conf                      effective LoadGen settings of the run (written once)
        measurements.json              how the run was made (checkpoint, knobs; written once)
        performance/run_1/             mlperf_log_summary.txt, mlperf_log_detail.txt,
                                       agent_records.jsonl, sut_stats.json, run_config.json
        accuracy/                      the same plus mlperf_log_accuracy.json, accuracy.txt
        TEST01/ TEST04/ ...            audit runs (harness/run.py --audit)
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.run_config import CONFIG_FILE, differences, read_config, write_config

BENCHMARK = "nano-codegen-agent"


NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class ResultsExistError(FileExistsError):
    """A results folder that would be overwritten."""


INCOMPLETE = "INCOMPLETE"   # in a run dir while its run has not finished cleanly (harness/run.py)


def mark_incomplete(run_dir: Path) -> None:
    (run_dir / INCOMPLETE).write_text("this run was started and has not finished cleanly (interrupted or failed): "
                                      "it is not a result; move the folder away and rerun\n")


def mark_complete(run_dir: Path) -> None:
    (run_dir / INCOMPLETE).unlink(missing_ok=True)


def check_name(name: str, flag: str = "--system-name") -> str:
    """``name`` if it is safe as one path component (letters, digits, '.', '_', '-'; not starting with
    '.'; at most 100 characters), else ValueError: a name must never lead outside the results folder."""
    if not NAME_RE.fullmatch(name):
        raise ValueError(f"{flag} {name!r}: use 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


@dataclass(frozen=True)
class ScenarioPaths:
    root: Path          # harness/run.py's --out
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

    def claim(self, dirs: list[Path], config: dict[str, Any] | None = None, files: dict[str, str] | None = None) -> None:
        """Create ``dirs`` for a run of ``config`` (harness/run_config.py); refuse, before writing
        anything, if any already holds files or the scenario folder is bound to another configuration
        (or holds results with none recorded). The first run binds the folder: its configuration is
        written there and into each run dir. ``files`` (scenario-folder name -> text, e.g. user.conf) are
        written once: a later run finds them identical, or is refused rather than rewrite them."""
        for d in dirs:
            if (d / INCOMPLETE).exists():
                raise ResultsExistError(f"{d} holds an incomplete run (interrupted or failed): move it away and rerun, "
                                        "or choose another --out or --system-name")
            if d.exists() and any(d.iterdir()):
                raise ResultsExistError(
                    f"{d} already holds a run; choose another --out or --system-name, or move it away")
        bound = self.scenario_dir / CONFIG_FILE
        if config is not None:
            self._check_binding(bound, config)
        for name, text in (files or {}).items():
            path = self.scenario_dir / name
            if path.exists() and path.read_text(encoding="utf-8", errors="replace") != text:
                raise ResultsExistError(f"{path} differs from what this run would write (edited after the folder's "
                                        "first run?): restore it, or choose another --out or --system-name")
        for d in dirs:
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise OSError(f"cannot create the results folder {d} ({e.strerror}): pass a writable --out") from None
        if config is not None:
            try:
                write_config(bound, config, exclusive=True)
            except FileExistsError:   # bound already, or by a run started at the same time: compare again
                self._check_binding(bound, config)
            for d in dirs:
                try:
                    write_config(d / CONFIG_FILE, config, exclusive=True)
                except FileExistsError:   # another run claimed it between the check above and now
                    raise ResultsExistError(f"{d} was claimed by another run at the same time; choose another "
                                            "--out or --system-name") from None
        for name, text in (files or {}).items():
            if not (self.scenario_dir / name).exists():
                (self.scenario_dir / name).write_text(text, encoding="utf-8")

    def _check_binding(self, bound: Path, config: dict[str, Any]) -> None:
        """Refuse a run whose configuration is not the one the scenario folder is bound to."""
        fix = "choose another --out or --system-name"
        if not bound.exists():
            held = (self.scenario_dir / "user.conf", self.scenario_dir / "measurements.json",
                    *self.run_dirs(["performance", "accuracy"]))
            prior = [str(p.relative_to(self.scenario_dir)) for p in held if p.is_file() or (p.is_dir() and any(p.iterdir()))]
            if prior:
                raise ResultsExistError(f"{self.scenario_dir} holds results ({', '.join(prior)}) with no recorded "
                                        f"configuration ({CONFIG_FILE}) to compare this run with: {fix}, or move it away")
            return
        try:
            diff = differences(read_config(bound), config)
        except ValueError as e:
            raise ResultsExistError(f"{e}; {fix}") from None
        if diff:
            raise ResultsExistError(f"{self.scenario_dir} holds runs of another configuration ({'; '.join(diff[:3])}"
                                    f"{'; ...' if len(diff) > 3 else ''}): {fix}")
