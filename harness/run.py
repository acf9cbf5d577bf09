"""Run the nano-codegen-agent benchmark under MLPerf LoadGen.

    python harness/run.py --scenario Offline                 # performance run, accuracy run, accuracy pass
    python harness/run.py --scenario Server --mode performance
    python harness/run.py --scenario SingleStream --official  # MLPerf's 600 s minimum and official seeds

Settings come from scenarios/<scenario>.yaml overridden by user.conf; flags choose the
scenario, the mode, paths and the engine. Each LoadGen run happens in its own process
(harness/lg_run.py). Results land in an MLPerf-style tree (harness/results.py).
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python harness/run.py` puts harness/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

from harness.results import ResultsExistError, ScenarioPaths  # noqa: E402
from harness.run_summary import accuracy_target, print_block, write_accuracy, write_run_metadata  # noqa: E402
from harness.scenario_config import SCENARIO_FILES, ScenarioError, load_scenario  # noqa: E402
from harness.system_info import default_system_name  # noqa: E402
from harness.user_conf import OFFICIAL_LOCKED, UserConfError, parse_user_conf, resolve, write_effective_conf  # noqa: E402
from sut.engine_factory import EngineOptions  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenario", required=True, help=f"one of {', '.join(SCENARIO_FILES)}")
    p.add_argument("--mode", default="both", choices=["performance", "accuracy", "both"])
    p.add_argument("--user-conf", type=Path, default=REPO / "user.conf")
    p.add_argument("--results-dir", type=Path, default=REPO / "results")
    p.add_argument("--system-name", default=None, help="default: derived from this machine")
    p.add_argument("--count", type=int, default=None, help="use only the first N evaluation tasks (quick runs)")
    p.add_argument("--official", action="store_true",
                   help="ignore user.conf duration/query-count/seed overrides: MLPerf's 600 s minimum and official seeds")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--audit", default=None, choices=["TEST01", "TEST04", "TEST06", "TEST07", "TEST09"],
                   help="audit this scenario's existing performance and accuracy runs (docs/audits.md)")
    EngineOptions.add_arguments(p)
    return p.parse_args(argv)


class RunError(RuntimeError):
    """A run that could not be carried out; the message says why."""


def effective_settings(scenario, user_conf: Path, official: bool) -> tuple[dict[str, str], list[str]]:
    """Scenario YAML defaults overridden by user.conf (LoadGen precedence), minus what --official locks."""
    resolved = resolve(parse_user_conf(user_conf), scenario.name)
    notes, settings = [], dict(scenario.loadgen)
    for key, line in resolved.items():
        if official and key in OFFICIAL_LOCKED:
            notes.append(f"--official: ignoring {user_conf}:{line.lineno} ({key} = {line.value})")
            continue
        settings[key] = line.value
    return settings, notes


def run_child(scenario: str, mode: str, conf: Path, outdir: Path, opts: EngineOptions, count: int | None,
              no_progress: bool, audit_config: Path | None = None) -> None:
    cmd = [sys.executable, "-m", "harness.lg_run", "--scenario", scenario, "--mode", mode, "--conf", str(conf),
           "--outdir", str(outdir), *opts.to_argv()]
    if count is not None:
        cmd += ["--count", str(count)]
    if no_progress:
        cmd += ["--no-progress"]
    if audit_config is not None:
        cmd += ["--audit-config", str(audit_config)]
    (outdir / "command.txt").write_text(shlex.join(cmd) + "\n")
    rc = subprocess.run(cmd, cwd=REPO).returncode
    if rc != 0:
        raise RunError(f"the {mode} run failed (exit {rc}); see {outdir / 'harness.log'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        scenario = load_scenario(args.scenario)
        settings, notes = effective_settings(scenario, args.user_conf, args.official)
        opts = EngineOptions.from_args(args)
        opts.max_batch = args.max_batch or scenario.max_batch
        opts.workers = scenario.workers if args.workers is None else args.workers
        opts.batch_wait_ms = scenario.batch_wait_ms if args.batch_wait_ms is None else args.batch_wait_ms
        opts.validate()
        if not (opts.checkpoint / "config.json").is_file():
            raise RunError(f"{opts.checkpoint}: no checkpoint there (config.json missing); pass --checkpoint DIR "
                           "or train one with `python -m sut.train --out DIR`")
        if args.count is not None and not 1 <= args.count <= 1024:
            raise RunError(f"--count must be between 1 and 1024, got {args.count}")
        paths = ScenarioPaths(args.results_dir.resolve(), args.system_name or default_system_name(opts.device),
                              scenario.name)
        if args.audit:  # an extra run against the existing results (harness/audits.py)
            from harness.audits import run_audit  # noqa: PLC0415

            return run_audit(args.audit, paths, args.no_progress)
        modes = ["performance", "accuracy"] if args.mode == "both" else [args.mode]
        paths.claim(paths.run_dirs(modes))
    except (ScenarioError, UserConfError, ResultsExistError, RunError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(note, file=sys.stderr)

    conf = paths.scenario_dir / "user.conf"
    write_effective_conf(conf, settings, scenario.name)
    accuracy = None
    try:
        for mode, outdir in zip(modes, paths.run_dirs(modes)):
            run_child(scenario.name, mode, conf, outdir, opts, args.count, args.no_progress)
        if "accuracy" in modes:
            accuracy = write_accuracy(paths.accuracy_dir, opts.checkpoint)
    except RunError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_run_metadata(paths, opts, settings, args)
    print_block(paths, modes, accuracy, accuracy_target(opts.checkpoint, args.count), args.official)
    return 0


if __name__ == "__main__":
    sys.exit(main())
