"""After the LoadGen runs: the accuracy pass, the run's metadata files, and the closing block."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from argparse import Namespace
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.mlperf_log import LogError, read_detail
from harness.results import ScenarioPaths
from harness.scenario_files import (EVAL_SIZE, FileProblem, accuracy_command, load_reference, meets_target,
                                    parse_accuracy_txt, reference_checkpoint, target_for_run)
from harness.system_info import describe_system
from sut.engine.factory import EngineOptions


def write_accuracy(accuracy_dir: Path, count: int | None, suite: str) -> dict[str, float]:
    """Run the verifier's accuracy pass (a separate post-processing step, as in MLPerf) over the
    run's declared tasks (``suite``'s first ``count``, recorded in run_config.json; None: all of them)."""
    out = accuracy_dir / "accuracy.txt"
    cmd = accuracy_command(accuracy_dir / "mlperf_log_accuracy.json", out, suite, count or EVAL_SIZE)
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, stderr=subprocess.PIPE, text=True,
                          errors="replace")
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"the accuracy pass failed (exit {proc.returncode}): {_last_error(proc.stderr)}; "
                           f"no accuracy.txt (rerun: {shlex.join(cmd)})")
    sys.stderr.write(proc.stderr)   # its warnings (e.g. executions judged again after a sandbox error)
    return parse_accuracy_txt(out)


def _last_error(stderr: str) -> str:
    """The pass's own one-line reason, for run.py's one line."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    last = next((ln for ln in reversed(lines) if ln.startswith("error: ")), lines[-1] if lines else "no message")
    return last.removeprefix("error: ").removesuffix("; no accuracy.txt written")


def accuracy_target(suite: str, count: int | None = None) -> float | None:
    """The closed-division target for the run's tasks (``suite``'s first ``count``): 99% of the suite's
    *reference* checkpoint's pass@final on them, whatever checkpoint ran; ``target_for_run``, check_submission's
    judge. None when the reference records no figures (print_block then says the target is unknown)."""
    try:
        ref = load_reference(reference_checkpoint(suite))
    except FileProblem:
        return None
    return target_for_run(ref, count)[0]


def _isolation(paths: ScenarioPaths, modes: list[str]) -> str:
    for d in paths.run_dirs(modes):
        try:
            return json.loads((d / "sut_stats.json").read_text()).get("isolation", "")
        except (OSError, ValueError):
            continue
    return ""


def write_run_metadata(paths: ScenarioPaths, opts: EngineOptions, settings: dict[str, str], args: Namespace) -> None:
    """systems/<system>.json and the scenario's measurements.json, each written by the folder's first run
    only: a later run into the folder has the same configuration (``ScenarioPaths.claim``) and never
    rewrites what the first one recorded (e.g. the checkpoint's path, when the same bytes lie elsewhere)."""
    modes = ["performance", "accuracy"] if args.mode == "both" else [args.mode]
    paths.system_json.parent.mkdir(parents=True, exist_ok=True)
    if not paths.system_json.exists():
        paths.system_json.write_text(json.dumps(describe_system(paths.system, opts.device, _isolation(paths, modes)),
                                                indent=2) + "\n")
    measurements = {
        "benchmark": "nano-codegen-agent",
        "scenario": paths.scenario,
        "starting_weights_filename": str(opts.checkpoint / "model.safetensors"),
        "weight_data_types": "fp32",
        "input_data_types": "utf-8 text",
        "retraining": "no",
        "weight_transformations": "none",
        "official": bool(args.official),
        "count": args.count,
        "engine": {k: v if isinstance(v, list) else str(v) for k, v in asdict(opts).items()},
        "loadgen_settings": settings,
    }
    out = paths.scenario_dir / "measurements.json"
    if not out.exists():
        out.write_text(json.dumps(measurements, indent=2) + "\n")


def _sut_errors(run_dir: Path) -> int:
    """Samples the SUT answered with an error (a dead server, a timed-out request, a broken verifier): LoadGen
    counts them as answered, so the run's validity is ours to withdraw."""
    try:
        return int(json.loads((Path(run_dir) / "sut_stats.json").read_text()).get("errors", 0))
    except (OSError, ValueError, AttributeError):
        return 0


def _metric_lines(scenario: str, detail) -> list[str]:
    v = detail.get
    if scenario == "Offline":
        return [f"samples/s     {float(v('result_samples_per_second', 0)):.3f}",
                f"tokens/s      {float(v('result_tokens_per_second', 0) or 0):.1f}"]
    if scenario == "SingleStream":
        return [f"p90 latency   {float(v('result_90.00_percentile_latency_ns', 0)) / 1e6:.1f} ms",
                f"p99 latency   {float(v('result_99.00_percentile_latency_ns', 0)) / 1e6:.1f} ms"]
    return [f"completed/s   {float(v('result_completed_samples_per_sec', 0) or 0):.3f}",
            f"p99 latency   {float(v('result_99.00_percentile_latency_ns', 0)) / 1e6:.1f} ms"
            f" (bound {float(v('effective_target_latency_ns', 0)) / 1e6:.0f} ms)"]


def print_block(paths: ScenarioPaths, modes: list[str], accuracy: dict[str, float] | None,
                target: float | None, official: bool) -> None:
    lines = [f"scenario      {paths.scenario} ({'official' if official else 'quick'} settings)"]
    if "performance" in modes:
        try:
            detail = read_detail(paths.performance_dir / "mlperf_log_detail.txt")
            lines += _metric_lines(paths.scenario, detail)
            validity = detail.get("result_validity")
            reason = detail.get("result_invalid_reason") or ""
            sut_errors = _sut_errors(paths.performance_dir)
            reasons = [reason.strip()] if validity != "VALID" and reason.strip() else []
            if detail.num_errors:           # every cause is named: a dead server can leave both kinds
                reasons.append(f"{detail.num_errors} error(s) in the detail log, e.g. {(detail.errors or ['?'])[0]}")
            if sut_errors:
                reasons.append(f"{sut_errors} sample(s) answered with an error (sut_stats.json, harness.log)")
            if paths.scenario == "Server" and validity == "VALID" and not reasons:
                # With token latencies on, LoadGen judges TTFT/TPOT; the benchmark's bound is the whole task's p99.
                p99, bound = (float(detail.get(k, 0) or 0) for k in
                              ("result_99.00_percentile_latency_ns", "effective_target_latency_ns"))
                if p99 > bound:
                    reasons.append(f"p99 task latency {p99 / 1e6:.0f} ms exceeds the {bound / 1e6:.0f} ms bound")
            if reasons:
                validity, reason = "INVALID", "; ".join(reasons)
            lines.append(f"result        {validity}{(': ' + reason.strip()) if validity != 'VALID' and reason else ''}")
        except LogError as e:
            lines.append(f"result        UNREADABLE: {e}")
    if accuracy is not None:
        pf = accuracy.get("pass@final", 0.0)
        verdict = "  target unknown: the reference records no figures" if target is None else \
            (f"  target >= {target:.4f}: " + ("MET" if meets_target(pf, target) else "NOT MET"))
        lines.append(f"accuracy      pass@1 {accuracy.get('pass@1', 0):.4f}  pass@final {pf:.4f}"
                     f"  mean attempts {accuracy.get('mean_attempts', 0):.2f}{verdict}")
    lines.append(f"files         {paths.scenario_dir}")
    print("\n".join(["=" * 60, *lines, "=" * 60]))
