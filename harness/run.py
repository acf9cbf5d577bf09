"""Run the nano-codegen-agent benchmark under MLPerf LoadGen.

    python harness/run.py --scenario Offline                 # performance run, accuracy run, accuracy pass (agentic suite)
    python harness/run.py --scenario Offline --suite basic   # the basic suite (one-liners) with its checkpoint and budget
    python harness/run.py --scenario Server --mode performance
    python harness/run.py --scenario SingleStream --official  # MLPerf's 600 s minimum and official seeds
    python harness/run.py --scenario Server --find-peak       # the highest target_qps meeting the bound
    python harness/run.py --scenario Offline --out R         # the results tree under R (default results/)

Settings come from scenarios/<scenario>.yaml overridden by user.conf; flags choose the
scenario, the mode, paths and the engine. Each LoadGen run happens in its own process
(harness/lg_run.py). Results land in an MLPerf-style tree (harness/results.py).
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python harness/run.py` puts harness/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))
if __name__ == "__main__":   # harness/audits.py imports run_child and Interrupted from here: one module, one class
    sys.modules.setdefault("harness.run", sys.modules[__name__])

from harness.child import Interrupted, RunError, _raise_interrupted, run_child  # noqa: E402
from harness.results import ScenarioPaths, check_name, mark_complete, mark_incomplete  # noqa: E402
from harness.run_config import run_configuration  # noqa: E402
from harness.run_summary import accuracy_target, print_block, write_accuracy, write_run_metadata  # noqa: E402
from harness.scenario_config import SCENARIO_FILES, ScenarioConfig, ScenarioError, load_scenario  # noqa: E402
from harness.system_info import default_system_name  # noqa: E402
from harness.user_conf import (OFFICIAL_LOCKED, UserConfError, drop_unread, effective_conf_text, parse_user_conf,  # noqa: E402
                               resolve, write_effective_conf)
from sut.engine.factory import EngineOptions  # noqa: E402
from sut.tasks.suites import RUN_SUITE, check_checkpoint_fits, eval_path  # noqa: E402
from verifier.probe import probe  # noqa: E402
from verifier.sandbox import SandboxUnavailable  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True, help=f"one of {', '.join(SCENARIO_FILES)}")
    p.add_argument("--mode", default="both", choices=["performance", "accuracy", "both"])
    p.add_argument("--user-conf", type=Path, default=REPO / "user.conf")
    p.add_argument("--out", type=Path, default=REPO / "results", metavar="DIR",
                   help="the results tree's root (default results/ in this repository)")
    p.add_argument("--results-dir", type=Path, dest="out", help=argparse.SUPPRESS)   # the old spelling, kept working
    p.add_argument("--system-name", default=None, help="default: derived from this machine")
    p.add_argument("--count", type=int, default=None, help="use only the first N evaluation tasks (quick runs)")
    p.add_argument("--official", action="store_true",
                   help="ignore user.conf duration/query-count/seed overrides: MLPerf's 600 s minimum and official seeds")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--audit", default=None, choices=["TEST01", "TEST04", "TEST06", "TEST07", "TEST09"],
                   help="audit this scenario's existing performance and accuracy runs (docs/audits.md)")
    p.add_argument("--find-peak", action="store_true",
                   help="Server: search the highest target_qps whose whole-task p99 meets the bound (harness/find_peak.py)")
    p.add_argument("--find-peak-decimals", type=int, default=1, choices=range(0, 4), metavar="{0..3}",
                   help="decimal places of the peak search's QPS precision (LoadGen's default 1)")
    EngineOptions.add_arguments(p, default_suite=RUN_SUITE)
    return p.parse_args(argv)


def _claim_incomplete(paths: ScenarioPaths, dirs: list[Path], *claim_args) -> int | None:
    """Claim ``dirs`` (ScenarioPaths.claim) and mark each INCOMPLETE with SIGINT and SIGTERM deferred, so that
    an interruption finds either nothing written or every dir marked. Returns the signal that arrived
    meanwhile (None if none), for the caller to handle as a stopped run."""
    pending: list[int] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, _frame: pending.append(signum))
    try:
        paths.claim(dirs, *claim_args)
        for d in dirs:
            mark_incomplete(d)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _raise_interrupted)
    return pending[0] if pending else None


def effective_settings(scenario, user_conf: Path, official: bool) -> tuple[dict[str, str], list[str]]:
    """Scenario YAML defaults overridden by user.conf (LoadGen precedence), minus what --official locks."""
    resolved = resolve(parse_user_conf(user_conf), scenario.name)
    notes, settings = [], dict(scenario.loadgen)
    for key, line in resolved.items():
        if official and key in OFFICIAL_LOCKED:
            notes.append(f"--official: ignoring {user_conf}:{line.lineno} ({key} = {line.value})")
            continue
        settings[key] = line.value
    return drop_unread(settings, resolved, user_conf, scenario.name), notes


def find_peak(paths: ScenarioPaths, scenario: str, settings: dict[str, str], opts: EngineOptions,
              args: argparse.Namespace, notes: list[str]) -> int:
    """LoadGen's peak search in one child process, then find_peak.json and a closing block."""
    from harness.find_peak import SearchError, parse_search, print_search, write_result  # noqa: PLC0415
    from harness.mlperf_log import LogError, read_detail  # noqa: PLC0415

    for note in notes:
        print(note, file=sys.stderr)
    out = paths.scenario_dir / "find_peak"
    write_effective_conf(out / "user.conf", settings, scenario)
    try:
        run_child(scenario, "find-peak", out / "user.conf", out, opts, args.count, args.no_progress,
                  extra=["--find-peak-decimals", str(args.find_peak_decimals)])
        detail = read_detail(out / "mlperf_log_detail.txt")
        search = parse_search(detail)
    except (RunError, LogError, SearchError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"error: interrupted by {e}: the search was stopped and {out} is marked incomplete", file=sys.stderr)
        return 128 + e.signum
    print_search(search, write_result(out, search, detail, args.find_peak_decimals))
    mark_complete(out)
    return 0


def engine_options(args: argparse.Namespace, scenario: ScenarioConfig) -> EngineOptions:
    """The engine options given, the scenario's batch, workers and gathering wait where not given; checked
    (ValueError naming the flag)."""
    opts = EngineOptions.from_args(args)
    opts.checkpoint = opts.checkpoint.resolve()   # the LoadGen child runs in another directory
    opts.max_batch = scenario.max_batch if args.max_batch is None else args.max_batch
    opts.workers = scenario.workers if args.workers is None else args.workers
    opts.batch_wait_ms = scenario.batch_wait_ms if args.batch_wait_ms is None else args.batch_wait_ms
    opts.validate()
    return opts


def prepare(args: argparse.Namespace) -> tuple[ScenarioConfig, dict[str, str], list[str], EngineOptions, ScenarioPaths]:
    """Everything checked before a run: the scenario, its settings, the engine options and the results folder
    (raises ScenarioError, UserConfError, RunError, ValueError, SandboxUnavailable or OSError)."""
    scenario = load_scenario(args.scenario, suite=args.suite)
    settings, notes = effective_settings(scenario, args.user_conf, args.official)
    opts = engine_options(args, scenario)
    if args.count is not None and not 1 <= args.count <= 1024:
        raise RunError(f"--count must be between 1 and 1024, got {args.count}")
    if not args.audit:   # every task's prompt and one attempt must fit the model's window (sut/tasks/suites.py)
        check_checkpoint_fits(opts.checkpoint, opts.suite, opts.max_new_tokens, args.count)
    system = default_system_name(opts.device) if args.system_name is None else args.system_name
    paths = ScenarioPaths(args.out.resolve(), check_name(system), scenario.name)
    probe(opts.isolation)   # fail closed: no bubblewrap, no run (unless --isolation process)
    if args.audit and args.find_peak:
        raise RunError("--audit and --find-peak are separate runs; pass one of them")
    if args.find_peak and scenario.name != "Server":
        raise RunError(f"--find-peak searches a Server arrival rate; it does not apply to {scenario.name}")
    return scenario, settings, notes, opts, paths


def run_modes(args: argparse.Namespace, scenario: ScenarioConfig, opts: EngineOptions, settings: dict[str, str],
              paths: ScenarioPaths, modes: list[str], deferred: int | None) -> int:
    """The claimed runs, one LoadGen child each, the accuracy pass and the metadata; the closing block."""
    conf = paths.scenario_dir / "user.conf"
    accuracy = None
    try:
        if deferred is not None:   # a signal that arrived during the claim
            _raise_interrupted(deferred, None)
        for mode, outdir in zip(modes, paths.run_dirs(modes)):
            run_child(scenario.name, mode, conf, outdir, opts, args.count, args.no_progress)
        if "accuracy" in modes:
            accuracy = write_accuracy(paths.accuracy_dir, args.count, opts.suite)
        write_run_metadata(paths, opts, settings, args)
    except (RunError, OSError, RuntimeError) as e:
        print(f"error: {e}; {paths.scenario_dir} is marked incomplete (move it away to rerun)", file=sys.stderr)
        return 1
    except Interrupted as e:
        print(f"error: interrupted by {e}: the LoadGen run was stopped and {paths.scenario_dir} is marked "
              "incomplete (move it away to rerun)", file=sys.stderr)
        return 128 + e.signum
    for outdir in paths.run_dirs(modes):
        mark_complete(outdir)
    print_block(paths, modes, accuracy, accuracy_target(opts.suite, args.count), args.official)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _raise_interrupted)
    try:
        scenario, settings, notes, opts, paths = prepare(args)
        if args.audit:  # an extra run against the existing results (harness/audits.py)
            from harness.audits import run_audit  # noqa: PLC0415

            return run_audit(args.audit, paths, args.no_progress)
        if args.find_peak:
            paths.claim([paths.scenario_dir / "find_peak"])
            return find_peak(paths, scenario.name, settings, opts, args, notes)
        modes = ["performance", "accuracy"] if args.mode == "both" else [args.mode]
        config = run_configuration(opts, eval_path(opts.suite), args.count, settings, args.official)
        deferred = _claim_incomplete(paths, paths.run_dirs(modes), config,
                                     {"user.conf": effective_conf_text(settings, scenario.name)})   # the binding, once
    except (ScenarioError, UserConfError, RunError, ValueError, SandboxUnavailable, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"error: interrupted by {e} before the run started; nothing was run or written", file=sys.stderr)
        return 128 + e.signum
    for note in notes:
        print(note, file=sys.stderr)
    return run_modes(args, scenario, opts, settings, paths, modes, deferred)


if __name__ == "__main__":
    sys.exit(main())
