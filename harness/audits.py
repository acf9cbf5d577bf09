"""Run an audit: ``python harness/run.py --scenario X --audit TEST01|TEST04|TEST06|TEST07|TEST09``.

An audit is one more LoadGen run of an existing scenario folder, with an ``audit.config``
(MLPerf's keys) in the run's working directory, followed by its verification. The layout
is MLPerf's compliance layout, inside the scenario folder:

    <Scenario>/TEST0x/audit.config                    what LoadGen was told
    <Scenario>/TEST0x/performance/run_1/              the audit run's LoadGen logs (+ agent records)
    <Scenario>/TEST0x/accuracy/mlperf_log_accuracy.json   the responses it logged (TEST01/06/07/09)
    <Scenario>/TEST0x/verify_*.txt                    the verdict, ending in TEST PASS or TEST FAIL

The audit reuses the scenario's effective user.conf and the engine settings recorded in its
measurements.json, so it measures the same system as the run it audits.
"""
from __future__ import annotations

import logging
import shutil
import sys
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from harness.audit_verify import (AUDIT_TESTS, Verdict, audit_settings, choose_test04_sample, offline_qps,
                                  verify_audit)
from harness.mlperf_log import DetailLog, LogError, read_detail
from harness.results import ResultsExistError, ScenarioPaths, mark_complete
from harness.run_config import require_bound_checkpoint
from harness.scenario_files import (FileProblem, accuracy_pass, load_reference, read_json, read_records,
                                    reference_checkpoint, run_suite)

if TYPE_CHECKING:
    from sut.engine.factory import EngineOptions

log = logging.getLogger(__name__)


class AuditError(RuntimeError):
    """An audit that cannot run; the message says why and what to run first."""


def write_audit_config(path: Path, settings: dict[str, float], test: str) -> None:
    """audit.config in LoadGen's format; ``*.*`` keys apply to every model and scenario."""
    body = "".join(f"*.*.{k} = {v}\n" for k, v in settings.items())
    Path(path).write_text(f"# {test} audit (harness/audits.py; docs/audits.md). mode 2 = PerformanceOnly.\n" + body)


def engine_options(measurements: dict) -> "EngineOptions":
    """The EngineOptions the audited run used (measurements.json "engine", recorded as strings; lists as lists)."""
    from sut.engine.factory import EngineOptions  # noqa: PLC0415

    recorded, opts = measurements.get("engine") or {}, EngineOptions()
    for f in fields(EngineOptions):
        if f.name not in recorded:
            continue
        default, text = getattr(opts, f.name), str(recorded[f.name])
        if isinstance(default, list):
            value = [str(v) for v in recorded[f.name]] if isinstance(recorded[f.name], list) else []
        else:
            value = text == "True" if isinstance(default, bool) else type(default)(text)
        setattr(opts, f.name, value)
    return opts


def _prerequisites(test: str, paths: ScenarioPaths) -> tuple[dict, DetailLog]:
    sd, scen = paths.scenario_dir, paths.scenario
    needed = [paths.performance_dir / "mlperf_log_detail.txt", paths.performance_dir / "agent_records.jsonl",
              paths.accuracy_dir / "accuracy.txt", paths.accuracy_dir / "mlperf_log_accuracy.json",
              sd / "measurements.json", sd / "user.conf"]
    missing = [p for p in needed if not p.is_file()]
    if missing:
        raise AuditError(f"{test} needs the {scen} performance and accuracy runs first ({missing[0]} is missing): run "
                         f"`python harness/run.py --scenario {scen} --out {paths.root} "
                         f"--system-name {paths.system}`")
    try:
        return read_json(sd / "measurements.json"), read_detail(paths.performance_dir / "mlperf_log_detail.txt")
    except (FileProblem, LogError) as e:
        raise AuditError(str(e)) from None


def prepare(test: str, paths: ScenarioPaths) -> tuple[Path, str]:
    """Claim TEST0x/, write its audit.config; returns (the run's directory, a note on the settings)."""
    if test not in AUDIT_TESTS:
        raise AuditError(f"unknown audit {test!r}; choose one of {', '.join(AUDIT_TESTS)}")
    measurements, perf = _prerequisites(test, paths)
    audit_dir = paths.audit_dir(test)
    run_dir = audit_dir / "performance" / "run_1"
    if audit_dir.exists() and any(audit_dir.iterdir()):
        raise ResultsExistError(f"{audit_dir} already holds an audit; move it away to run {test} again")
    n = int(perf.get("qsl_reported_total_count", 0) or 0)
    same_index, note = 0, f"{n} samples"
    if test == "TEST04":
        choice = choose_test04_sample(read_records(paths.performance_dir / "agent_records.jsonl"), paths.scenario)
        q, note, loaded = choice.qsl_idx, choice.note, perf.get("loaded_qsl_set") or []
        if q not in loaded:
            raise AuditError(f"sample {q} is not in the performance run's loaded_qsl_set; rerun the performance run")
        same_index = loaded.index(q)   # LoadGen repeats loaded_qsl_set[performance_issue_same_index]
    run_dir.mkdir(parents=True, exist_ok=True)
    qps = offline_qps(perf) if test == "TEST04" else None
    write_audit_config(audit_dir / "audit.config", audit_settings(test, n, same_index, qps), test)
    return run_dir, note


def finish(test: str, paths: ScenarioPaths, reference: Path | None = None) -> Verdict:
    """After the audit's LoadGen run: file the logged responses, score them (TEST07), verify, write verify_*.txt.
    ``reference``: the checkpoint whose figures judge the audit (None: the folder's suite's reference)."""
    suite = run_suite(paths.scenario_dir)
    audit_dir = paths.audit_dir(test)
    run_dir = audit_dir / "performance" / "run_1"
    logged = run_dir / "mlperf_log_accuracy.json"
    if test != "TEST04" and logged.is_file():
        (audit_dir / "accuracy").mkdir(exist_ok=True)
        shutil.move(str(logged), audit_dir / "accuracy" / logged.name)
    if test == "TEST07":
        accuracy_pass(audit_dir / "accuracy" / logged.name, audit_dir / "accuracy" / "accuracy.txt", suite=suite)
    try:
        ref = load_reference(reference if reference is not None else reference_checkpoint(suite))
    except FileProblem as e:
        log.warning("%s", e)
        ref = None
    verdict = verify_audit(test, paths.scenario_dir, ref, write_extras=True)
    for name, lines in verdict.files.items():
        (audit_dir / name).write_text("\n".join(lines) + "\n")
    return verdict


def run_audit(test: str, paths: ScenarioPaths, no_progress: bool = False) -> int:
    """The --audit entry point of harness/run.py: 0 TEST PASS, 1 TEST FAIL or a failed run, 2 refused."""
    from harness.child import Interrupted, RunError, run_child  # noqa: PLC0415

    try:
        measurements, _ = _prerequisites(test, paths)
        opts = engine_options(measurements)
        require_bound_checkpoint(paths.scenario_dir, opts.checkpoint)   # the same system as the audited runs
        run_suite(paths.scenario_dir)   # finish() scores against the suite's tasks: refuse now what it could not read
        run_dir, note = prepare(test, paths)
    except (AuditError, ResultsExistError, FileProblem, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{test} on {paths.scenario}: {note}", file=sys.stderr)
    try:
        run_child(paths.scenario, "performance", paths.scenario_dir / "user.conf", run_dir, opts,
                  measurements.get("count"), no_progress, audit_config=paths.audit_dir(test) / "audit.config")
        verdict = finish(test, paths)
    except (RunError, RuntimeError, OSError) as e:
        print(f"error: {e}; {run_dir} is marked incomplete", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"error: interrupted by {e}; {run_dir} is marked incomplete", file=sys.stderr)
        return 128 + e.signum
    mark_complete(run_dir)
    result = "TEST PASS" if verdict.passed else "TEST FAIL"
    print("\n".join(["=" * 60, f"audit         {test} {paths.scenario}: {result}", f"why           {verdict.reason}",
                     f"files         {paths.audit_dir(test)}", "=" * 60]))
    return 0 if verdict.passed else 1
