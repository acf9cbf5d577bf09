"""A results folder holds one system: the binding written by its first run (harness/results.py
``ScenarioPaths.claim``, harness/run_config.py), the checker's rules on it (harness/compliance_config.py:
``configuration``, ``isolation``; official by the reference's content) and the one accuracy target.

The claim tests use the shipped checkpoints' real hashes; the checker tests doctor copies of the
tiny trees (tests/tiny_tree.py: harness/lg_run.py's real LoadGen runs over a stand-in engine)."""
from __future__ import annotations

import json
import subprocess
import sys
from argparse import Namespace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tree  # noqa: E402

from harness.compliance import check_scenario  # noqa: E402
from harness.results import ResultsExistError, ScenarioPaths  # noqa: E402
from harness.run_config import CONFIG_FILE, require_bound_checkpoint, run_configuration  # noqa: E402
from harness.run_summary import write_run_metadata  # noqa: E402
from harness.scenario_files import load_reference, meets_target, reference_checkpoint, target_for_run  # noqa: E402
from sut.engine.factory import EngineOptions  # noqa: E402
from sut.tasks.basic import EVAL_PATH  # noqa: E402
from test_harness import QUICK_CONF, RUN  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
REFERENCE_CHECKPOINT = reference_checkpoint("basic")
SETTINGS = {"min_duration": "1500", "target_qps": "800"}
CONF_TEXT = "nano-codegen-agent.Offline.min_duration = 1500\n"


def config(checkpoint: Path, **engine) -> dict:
    return run_configuration(EngineOptions(checkpoint=checkpoint, **engine), EVAL_PATH, 8, SETTINGS, official=False)


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_run_of_another_checkpoint_is_refused_and_writes_nothing(tmp_path):
    paths = ScenarioPaths(tmp_path, "sys", "Offline")
    paths.claim(paths.run_dirs(["performance"]), config(REPO / "checkpoints" / "retry-small"), {"user.conf": CONF_TEXT})
    before = snapshot(tmp_path)
    with pytest.raises(ResultsExistError, match=r"another configuration \(checkpoint.sha256: .*--system-name"):
        paths.claim(paths.run_dirs(["accuracy"]), config(REFERENCE_CHECKPOINT), {"user.conf": CONF_TEXT})
    with pytest.raises(ResultsExistError, match=r"engine.isolation: 'bwrap' -> 'process'"):
        paths.claim(paths.run_dirs(["accuracy"]), config(REPO / "checkpoints" / "retry-small", isolation="process"))
    assert snapshot(tmp_path) == before and not paths.accuracy_dir.exists()


def test_the_same_bytes_elsewhere_may_add_the_missing_mode(tmp_path):
    """The checkpoint is compared by content: a copy at another path is the same system."""
    (tmp_path / "copy").symlink_to(REFERENCE_CHECKPOINT)
    paths = ScenarioPaths(tmp_path / "results", "sys", "Offline")
    paths.claim(paths.run_dirs(["performance"]), config(REFERENCE_CHECKPOINT), {"user.conf": CONF_TEXT})
    paths.claim(paths.run_dirs(["accuracy"]), config(tmp_path / "copy"), {"user.conf": CONF_TEXT})
    recorded = json.loads((paths.accuracy_dir / CONFIG_FILE).read_text())
    assert recorded["checkpoint"]["sha256"] == json.loads((paths.scenario_dir / CONFIG_FILE).read_text())["checkpoint"]["sha256"]


def test_results_without_a_recorded_configuration_are_not_bound_to_a_new_one(tmp_path):
    paths = ScenarioPaths(tmp_path, "sys", "Offline")
    paths.performance_dir.mkdir(parents=True)
    (paths.performance_dir / "mlperf_log_detail.txt").write_text(":::MLLOG {}\n")
    before = snapshot(tmp_path)
    with pytest.raises(ResultsExistError, match=r"performance/run_1\) with no recorded configuration"):
        paths.claim(paths.run_dirs(["accuracy"]), config(REFERENCE_CHECKPOINT))
    assert snapshot(tmp_path) == before and not paths.accuracy_dir.exists()


def test_an_edited_user_conf_is_refused_not_rewritten(tmp_path):
    paths = ScenarioPaths(tmp_path, "sys", "Offline")
    paths.claim(paths.run_dirs(["performance"]), config(REFERENCE_CHECKPOINT), {"user.conf": CONF_TEXT})
    (paths.scenario_dir / "user.conf").write_text(CONF_TEXT.replace("1500", "1"))
    before = snapshot(tmp_path)
    with pytest.raises(ResultsExistError, match="user.conf differs"):
        paths.claim(paths.run_dirs(["accuracy"]), config(REFERENCE_CHECKPOINT), {"user.conf": CONF_TEXT})
    assert snapshot(tmp_path) == before


def test_measurements_json_is_written_by_the_first_run_only(tmp_path):
    (tmp_path / "copy").symlink_to(REFERENCE_CHECKPOINT)
    paths = ScenarioPaths(tmp_path / "results", "sys", "Offline")
    paths.scenario_dir.mkdir(parents=True)
    for mode, ckpt in (("performance", REFERENCE_CHECKPOINT), ("accuracy", tmp_path / "copy")):
        write_run_metadata(paths, EngineOptions(checkpoint=ckpt), SETTINGS, Namespace(mode=mode, official=False, count=8))
    m = json.loads((paths.scenario_dir / "measurements.json").read_text())
    assert m["engine"]["checkpoint"] == str(REFERENCE_CHECKPOINT)


def test_an_audit_refuses_a_checkpoint_replaced_since_the_runs(tmp_path):
    """harness/audits.py reruns the checkpoint by its recorded path: the bytes there must be the folder's."""
    paths = ScenarioPaths(tmp_path, "sys", "Offline")
    paths.claim(paths.run_dirs(["performance"]), config(REFERENCE_CHECKPOINT))
    require_bound_checkpoint(paths.scenario_dir, REFERENCE_CHECKPOINT)
    with pytest.raises(ValueError, match="no longer holds the checkpoint"):
        require_bound_checkpoint(paths.scenario_dir, REPO / "checkpoints" / "retry-small")


def test_run_py_refuses_an_unbound_folder_in_one_line(tmp_path):
    d = tmp_path / "results" / "testsys" / "nano-codegen-agent" / "Offline"
    (d / "performance" / "run_1").mkdir(parents=True)
    (d / "performance" / "run_1" / "mlperf_log_detail.txt").write_text(":::MLLOG {}\n")
    (tmp_path / "user.conf").write_text(QUICK_CONF)
    before = snapshot(tmp_path)
    r = subprocess.run([*RUN, "--scenario", "Offline", "--mode", "accuracy", "--count", "4", "--user-conf",
                        str(tmp_path / "user.conf"), "--out", str(tmp_path / "results"), "--system-name", "testsys"],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "no recorded configuration" in r.stderr and "--out" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert snapshot(tmp_path) == before


def test_one_function_sets_the_target_for_both_judges():
    ref = load_reference(REFERENCE_CHECKPOINT)
    from harness.run_summary import accuracy_target

    for count in (None, 8, 24, 1024):
        assert accuracy_target("basic", count) == target_for_run(ref, count)[0]
    target = target_for_run(ref, 24)[0]
    assert meets_target(target, target) and not meets_target(target - 1e-9, target)


# --- the checker, on doctored copies of the tiny trees ---

@pytest.fixture(scope="session")
def trees(tmp_path_factory) -> tiny_tree.Trees:
    return tiny_tree.session_trees(tmp_path_factory)


@pytest.fixture
def folder(trees, tmp_path) -> Path:
    root = tiny_tree.copy_tree(trees.honest, tmp_path / "results")
    return root / tiny_tree.SYSTEM / "nano-codegen-agent" / "Offline"


def rewrite(path: Path, change) -> None:
    obj = json.loads(path.read_text())
    change(obj)
    path.write_text(json.dumps(obj))


def set_checkpoint(sha: str):
    return lambda cfg: cfg["checkpoint"].__setitem__("sha256", sha)


def test_honest_copy_has_no_configuration_finding(folder, trees):
    assert not [f for f in check_scenario(folder, trees.reference).findings if f.rule in ("configuration", "isolation")]


def test_performance_and_accuracy_runs_of_different_checkpoints_fail(folder, trees):
    """An accuracy folder made by another checkpoint, dropped into this one with its own records."""
    rewrite(folder / "accuracy" / CONFIG_FILE, set_checkpoint("b" * 64))
    rewrite(folder / "accuracy" / "sut_stats.json", lambda s: s.__setitem__("checkpoint_sha256", "b" * 64))
    found = check_scenario(folder, trees.reference).findings
    conf = [f for f in found if f.rule == "configuration"]
    assert any(f.file == folder / "accuracy" / CONFIG_FILE and "performance and accuracy runs were made with different "
               "configurations" in f.message and "checkpoint.sha256" in f.message for f in conf), found
    assert any(f.file.name == "sut_stats.json" and "the run loaded checkpoint bbbbbbbb" in f.message for f in conf), found


def test_an_audit_that_loaded_another_checkpoint_fails(folder, trees):
    stats = folder / "TEST04" / "performance" / "run_1" / "sut_stats.json"
    rewrite(stats, lambda s: s.__setitem__("checkpoint_sha256", "c" * 64))
    found = check_scenario(folder, trees.reference).findings
    assert any(f.rule == "configuration" and f.file == stats for f in found), found


@pytest.mark.parametrize("where", ["configured", "recorded"])
def test_weaker_isolation_is_not_compliant(folder, trees, where):
    if where == "configured":
        for cfg in (folder / CONFIG_FILE, folder / "performance" / "run_1" / CONFIG_FILE, folder / "accuracy" / CONFIG_FILE):
            rewrite(cfg, lambda c: c["engine"].__setitem__("isolation", "process"))
        file = folder / CONFIG_FILE
    else:
        file = folder / "performance" / "run_1" / "sut_stats.json"
        rewrite(file, lambda s: s.__setitem__("isolation", "process+rlimits(cpu,as,fsize,nproc,nofile)"))
    c = check_scenario(folder, trees.reference)
    assert not c.passed and any(f.rule == "isolation" and f.file == file for f in c.findings), c.findings


def test_official_needs_the_reference_s_bytes_not_its_path(folder, trees):
    """The folder records the reference's path but another checkpoint's hash: never the reference."""
    for cfg in (folder / CONFIG_FILE, folder / "performance" / "run_1" / CONFIG_FILE, folder / "accuracy" / CONFIG_FILE):
        rewrite(cfg, set_checkpoint("d" * 64))
    c = check_scenario(folder, trees.reference)
    assert any("is not the reference" in why for why in c.not_official), c.not_official
