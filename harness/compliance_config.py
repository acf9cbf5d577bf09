"""The checker's rules on what system a scenario folder measured (docs/rules.md: ``configuration``,
``isolation``), apart from harness/compliance.py's rules on the logs.

A folder is bound to one configuration (harness/run_config.py): its ``run_config.json``, the one in
each run folder, and the checkpoint hash each LoadGen child recorded on loading (``sut_stats.json``)
must all agree, so a performance run of one checkpoint and an accuracy run of another cannot pass
as one result; and generated code must have run under bubblewrap, not the weaker process level.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from harness.run_config import CONFIG_FILE, FULL_ISOLATION, checkpoint_sha256, differences, read_config
from harness.scenario_files import FileProblem, read_json


class Failing(Protocol):
    def fail(self, rule: str, file: Path, message: str) -> None: ...


def _short(sha: Any) -> str:
    return f"{str(sha)[:16]}..."


def check_configuration(c: Failing, folder: Path, run_dirs: list[Path]) -> dict[str, Any] | None:
    """The folder's bound configuration (None if unreadable, a finding then), after checking that every
    run dir records it, that the performance and accuracy runs record the same one, that every LoadGen
    child (audits included) loaded the bound checkpoint, and that the verifier ran with full isolation."""
    try:
        bound = read_config(folder / CONFIG_FILE)
    except ValueError as e:
        c.fail("configuration", folder / CONFIG_FILE, f"{e}: the folder is not bound to one configuration")
        return None
    recorded: dict[Path, dict[str, Any]] = {}
    for d in run_dirs:
        try:
            recorded[d] = read_config(d / CONFIG_FILE)
        except ValueError as e:
            c.fail("configuration", d / CONFIG_FILE, str(e))
            continue
        diff = differences(bound, recorded[d])
        if diff:
            c.fail("configuration", d / CONFIG_FILE, f"this run's configuration is not the folder's: {'; '.join(diff[:3])}")
    if len(recorded) == 2:
        (perf, p_cfg), (acc, a_cfg) = recorded.items()
        diff = differences(p_cfg, a_cfg)
        if diff:
            c.fail("configuration", acc / CONFIG_FILE, "the performance and accuracy runs were made with different "
                   f"configurations (performance -> accuracy: {'; '.join(diff[:3])}): they are not one result")
    want = (bound.get("checkpoint") or {}).get("sha256")
    for d in [*run_dirs, *sorted(folder.glob("TEST0*/performance/run_1"))]:
        stats = d / "sut_stats.json"
        try:
            s = read_json(stats) if stats.is_file() else {}
        except FileProblem:
            s = {}
        loaded = s.get("checkpoint_sha256")
        if loaded is not None and loaded != want:
            c.fail("configuration", stats, f"the run loaded checkpoint {_short(loaded)}, not the folder's {_short(want)}")
        if str(s.get("isolation", "")).startswith("process"):
            c.fail("isolation", stats, f"the verifier ran at {s['isolation']}: generated code was not sandboxed "
                                       "by bubblewrap (install it and rerun without --isolation process)")
    isolation = (bound.get("engine") or {}).get("isolation")
    if isolation != FULL_ISOLATION:
        c.fail("isolation", folder / CONFIG_FILE, f"the run was configured with --isolation {isolation}: only "
                                                  f"{FULL_ISOLATION} (namespaces) is compliant")
    return bound


def not_the_reference(bound: dict[str, Any] | None, reference: Path) -> str | None:
    """Why the folder's checkpoint is not the reference one, judged by content hash, not path (None: it is)."""
    got = ((bound or {}).get("checkpoint") or {}).get("sha256")
    if got is None:
        return f"checkpoint unknown (no readable {CONFIG_FILE}), not shown to be the reference {reference}"
    if got != checkpoint_sha256(reference):
        return f"checkpoint {_short(got)} is not the reference {reference} ({_short(checkpoint_sha256(reference))})"
    return None
