"""Check a results tree: ``python harness/check_submission.py RESULTS_DIR``.

Walks every ``<system>/<benchmark>/<Scenario>/`` folder, runs the compliance checks
(harness/compliance.py) and the audit re-verification on each, prints a table (system,
scenario, class, metric, validity, accuracy, audits) and every broken rule with the file
it concerns, writes summary.csv, and exits 0 only if every folder passes. A folder that
passes is labelled ``official`` or ``quick`` (docs/rules.md); quick is never official.

    python harness/check_submission.py results
    python harness/check_submission.py results --rescore     # also re-run every accuracy pass (slow)
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python harness/check_submission.py` puts harness/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

from harness.audit_verify import AUDIT_TESTS  # noqa: E402
from harness.compliance import Finding, ScenarioCheck, check_scenario  # noqa: E402
from harness.results import BENCHMARK  # noqa: E402
from sut.tasks.suites import per_suite  # noqa: E402

SCENARIOS = ("SingleStream", "Server", "Offline")
COLUMNS = ["system", "benchmark", "scenario", "suite", "engine", "engine_detail", "class", "metric", "value", "validity", "pass@final",
           "accuracy_target", *AUDIT_TESTS, "passed", "problems"]


def scenario_folders(root: Path) -> tuple[list[Path], list[Finding]]:
    """Every scenario folder under ``root``, and findings for folders that do not belong there."""
    folders, stray = [], []
    for system in sorted(p for p in root.iterdir() if p.is_dir() and p.name != "systems"):
        for bench in sorted(p for p in system.iterdir() if p.is_dir()):
            if bench.name != BENCHMARK:
                stray.append(Finding("layout", bench, f"unknown benchmark folder; expected {BENCHMARK}/"))
                continue
            for scen in sorted(p for p in bench.iterdir() if p.is_dir()):
                if scen.name in SCENARIOS:
                    folders.append(scen)
                else:
                    stray.append(Finding("layout", scen, f"unknown scenario folder; expected one of {', '.join(SCENARIOS)}"))
    return folders, stray


def row(c: ScenarioCheck) -> dict[str, str]:
    return {"system": c.system, "benchmark": c.benchmark, "scenario": c.scenario, "suite": c.suite,
            "engine": c.engine, "engine_detail": c.engine_detail, "class": c.run_class,
            "metric": c.metric, "value": "" if c.value is None else f"{c.value:.4g}", "validity": c.validity,
            "pass@final": "" if c.accuracy is None else f"{c.accuracy:.4f}",
            "accuracy_target": "" if c.accuracy_target is None else f"{c.accuracy_target:.4f}",
            **{t: c.audits.get(t, "-") for t in AUDIT_TESTS}, "passed": "yes" if c.passed else "NO",
            "problems": str(len(c.findings))}


def print_table(rows: list[dict[str, str]]) -> None:
    cols = ["system", "scenario", "suite", "engine", "class", "metric", "value", "validity", "pass@final", *AUDIT_TESTS, "passed"]
    width = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    print("  ".join(c.ljust(width[c]) for c in cols))
    print("  ".join("-" * width[c] for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(width[c]) for c in cols))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", type=Path)
    p.add_argument("--csv", type=Path, default=None, metavar="PATH",
                   help="where to write the table (default RESULTS_DIR/summary.csv)")
    p.add_argument("--reference", type=Path, default=None,
                   help="the reference checkpoint whose metrics.json sets the accuracy target (default: each "
                        f"folder's suite's, {per_suite('checkpoint')})")
    p.add_argument("--rescore", action="store_true",
                   help="re-run the verifier's accuracy pass on every accuracy log and compare (slow)")
    args = p.parse_args(argv)
    root = args.results_dir
    if not root.is_dir():
        print(f"error: {root} is not a directory; pass the --out folder of harness/run.py", file=sys.stderr)
        return 2
    folders, stray = scenario_folders(root)
    if not folders:
        print(f"error: no <system>/{BENCHMARK}/<Scenario>/ folders under {root}; run harness/run.py first",
              file=sys.stderr)
        return 2
    checks = [check_scenario(f, args.reference, args.rescore) for f in folders]
    rows = [row(c) for c in checks]
    print_table(rows)
    out = args.csv or root / "summary.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    findings = stray + [f for c in checks for f in c.findings]
    for c in checks:
        if c.passed and c.run_class == "quick":
            print(f"\nquick, not official: {c.folder}: " + "; ".join(c.not_official))
    if findings:
        print(f"\n{len(findings)} problem(s):")
        for f in findings:
            print(f"FAIL {f}")
    print(f"\n{sum(c.passed for c in checks)} of {len(checks)} scenario folder(s) pass; table written to {out}")
    return 0 if not findings else 1


if __name__ == "__main__":
    sys.exit(main())
