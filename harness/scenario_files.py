"""The non-LoadGen files of a scenario folder, read once for the checker, the audits and the report.

LoadGen's own logs are parsed by harness/mlperf_log.py; this module reads what the harness
writes beside them (measurements.json, agent_records.jsonl, sut_stats.json, accuracy.txt),
decodes logged responses, and knows the reference checkpoint's recorded figures, which
set the accuracy target (99% of its pass@final) and the TEST09 output-length band. Each task
suite has its own reference (its default checkpoint) and task file; a folder's suite is the
one its run_config.json records.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.mlperf_log import AccuracyEntry
from harness.run_config import CONFIG_FILE
from verifier.response_format import Response, decode_hex

REPO = Path(__file__).resolve().parent.parent
ACCURACY_FRACTION = 0.99       # closed-division rule: at least 99% of the reference's pass@final
EVAL_SIZE = 1024               # sut.tasks.basic.EVAL_SIZE (and sut.tasks.agentic.suite's): an official run covers every task


class FileProblem(ValueError):
    """A harness-written file that is missing or malformed; the message names it."""


_METRIC = re.compile(r"([A-Za-z_@0-9]+)=([-+0-9.eE]+)")


def parse_accuracy_txt(path: Path) -> dict[str, float]:
    """The metrics on accuracy.txt's first line, e.g. {'pass@final': 0.91, ...}."""
    first = Path(path).read_text().splitlines()[0]
    return {k: float(v) for k, v in _METRIC.findall(first)}


@dataclass(frozen=True)
class Reference:
    """The reference checkpoint's figures from its own accuracy run (metrics.json["eval"]).

    ``failed`` holds the evaluation-set indices the reference did not solve, so a run over a
    subset (``--count N``) is judged against the reference on the same tasks, not the whole set.
    """
    path: Path
    pass_final: float
    mean_attempts: float | None
    tokens_per_sample: float | None
    failed: frozenset[int] | None = None

    @property
    def accuracy_target(self) -> float:
        return ACCURACY_FRACTION * self.pass_final

    def pass_final_over(self, indices: Iterable[int]) -> float | None:
        """The reference's pass@final over these evaluation indices (None: not recorded per task)."""
        idx = set(indices)
        if not idx or idx == set(range(EVAL_SIZE)):
            return self.pass_final
        if self.failed is None:
            return None
        return 1.0 - len(idx & self.failed) / len(idx)

    def target_over(self, indices: Iterable[int]) -> tuple[float | None, str]:
        """99% of the reference's pass@final over ``indices``, and a few words saying which figure it is."""
        idx = set(indices)
        ref = self.pass_final_over(idx)
        if ref is None:
            return None, f"{self.path} records no per-task outcomes to judge a {len(idx)}-task subset by"
        what = "" if len(idx) in (0, EVAL_SIZE) else f" on the same {len(idx)} tasks"
        return ACCURACY_FRACTION * ref, f"99% of the reference's pass@final {ref:.4f}{what}, {self.path}"


def reference_checkpoint(suite: str) -> Path:
    """The suite's reference checkpoint (its default one, sut.tasks.suites.DEFAULTS), whose figures set the targets."""
    from sut.tasks.suites import DEFAULTS, check_suite  # noqa: PLC0415 - torch-free, loaded when asked for

    return DEFAULTS[check_suite(suite)].checkpoint


def run_suite(scenario_dir: Path) -> str:
    """The task suite a scenario folder was run with (its run_config.json's engine options; a folder from
    before suites existed: basic). FileProblem if the configuration is unreadable or names no known suite."""
    from sut.tasks.suites import SuiteError, check_suite  # noqa: PLC0415

    cfg = read_json(Path(scenario_dir) / CONFIG_FILE)
    suite = (cfg.get("engine") if isinstance(cfg.get("engine"), dict) else {}).get("suite", "basic")
    try:
        return check_suite(str(suite))
    except SuiteError as e:
        raise FileProblem(f"{Path(scenario_dir) / CONFIG_FILE}: {e}") from None


def run_engine(scenario_dir: Path) -> str:
    """Who generated in a scenario folder's runs, for tables: "native", "vllm 0.32.0", "openai x2 endpoints"
    (its run_config.json; a folder from before engines were selectable: native)."""
    cfg = read_json(Path(scenario_dir) / CONFIG_FILE)
    engine = cfg.get("engine") if isinstance(cfg.get("engine"), dict) else {}
    name = str(engine.get("engine", "native"))
    if name == "openai":
        urls = engine.get("base_url") or []
        return f"openai x{len(urls)} endpoint{'s' if len(urls) != 1 else ''}"
    version = str(cfg.get("engine_version", "")).split(" ")[-1] if name == "vllm" else ""
    return f"{name} {version}".strip()


def engine_description(scenario_dir: Path) -> str:
    """One line on who generated and how, for reports: the engine with its version, then its endpoints and
    options (from run_config.json)."""
    cfg = read_json(Path(scenario_dir) / CONFIG_FILE)
    e = cfg.get("engine") if isinstance(cfg.get("engine"), dict) else {}
    name = str(e.get("engine", "native"))
    parts = [str(cfg.get("engine_version") or name)]
    if name == "openai":
        parts += [f"endpoints {', '.join(map(str, e.get('base_url') or []))}", f"model {e.get('model_name') or '?'}",
                  f"request timeout {e.get('request_timeout_s')} s"]
    elif name == "vllm":
        parts += [f"prefix caching {'off' if e.get('no_prefix_reuse') else 'on'}",
                  f"torch.compile {'on' if e.get('vllm_compile') else 'off'}"]
    else:
        parts += [f"backend {e.get('backend', 'auto')}", f"speculation {'off' if e.get('no_speculation') else 'on'}"]
    parts += [f"max batch {e.get('max_batch')}", f"retries at temperature {e.get('temperature', 0.7)}"]
    return "; ".join(parts)


def load_reference(checkpoint: Path) -> Reference:
    path = Path(checkpoint) / "metrics.json"
    try:
        ev = json.loads(path.read_text())["eval"]
        tokens = ev.get("tokens_per_sample", ev.get("mean_tokens"))
        failed = ev.get("failed_final")
        return Reference(path, float(ev["pass@final"]), None if ev.get("mean_attempts") is None
                         else float(ev["mean_attempts"]), None if tokens is None else float(tokens),
                         None if failed is None else frozenset(int(i) for i in failed))
    except OSError as e:
        raise FileProblem(f"{path}: cannot read the reference figures ({e.strerror}); "
                          "pass --reference DIR holding the reference checkpoint") from None
    except (ValueError, KeyError, TypeError) as e:
        raise FileProblem(f"{path}: no eval.pass@final figure ({e.__class__.__name__}: {e}); record it with "
                          f"`{_record_command(Path(checkpoint))}`") from None


def _record_command(checkpoint: Path) -> str:
    """The command that records a checkpoint's reference figures (with its suite, where it says which)."""
    from sut.tasks.suites import SuiteError, checkpoint_dir_suite  # noqa: PLC0415

    try:
        suite = f" --suite {checkpoint_dir_suite(checkpoint)}"
    except SuiteError:   # a folder holding only metrics.json
        suite = ""
    return f"python -m sut.evaluate{suite} --record --checkpoint {checkpoint}"


def target_for_run(ref: Reference, count: int | None) -> tuple[float | None, str]:
    """The closed-division accuracy target of a run over the first ``count`` evaluation tasks (None:
    all): 99% of ``ref``'s pass@final on those tasks, and which figure that is. The one judge of the
    target: run.py's closing line and check_submission both call it, so they cannot disagree."""
    return ref.target_over(range(count or EVAL_SIZE))


def meets_target(pass_final: float, target: float) -> bool:
    """The accuracy rule's comparison (at least the target), shared by run.py and check_submission."""
    return pass_final >= target


def read_json(path: Path) -> dict[str, Any]:
    try:
        obj = json.loads(Path(path).read_text())
    except OSError:
        raise FileProblem(f"{path}: missing") from None
    except ValueError as e:
        raise FileProblem(f"{path}: not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise FileProblem(f"{path}: expected a JSON object")
    return obj


def read_records(path: Path) -> list[dict[str, Any]]:
    """agent_records.jsonl: one object per completed sample (qsl_idx, task_id, attempts, passed, n_tokens, error)."""
    path = Path(path)
    if not path.is_file():
        raise FileProblem(f"{path}: missing")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            int(rec["qsl_idx"]), str(rec["task_id"]), int(rec["n_tokens"])
            if not isinstance(rec["attempts"], list):
                raise TypeError("attempts is not a list")
        except (ValueError, KeyError, TypeError) as e:
            raise FileProblem(f"{path}:{n}: malformed record ({e.__class__.__name__}: {e})") from None
        out.append(rec)
    return out


def read_accuracy_txt(path: Path) -> tuple[dict[str, float], str]:
    """accuracy.txt's metrics (first line) and its ``hash=`` value ('' when absent)."""

    path = Path(path)
    if not path.is_file():
        raise FileProblem(f"{path}: missing")
    try:
        metrics = parse_accuracy_txt(path)
    except (IndexError, ValueError) as e:
        raise FileProblem(f"{path}: unreadable first line ({e})") from None
    if "pass@final" not in metrics:
        raise FileProblem(f"{path}: no pass@final= figure on its first line")
    hashes = [ln.split("=", 1)[1].strip() for ln in path.read_text().splitlines() if ln.startswith("hash=")]
    return metrics, (hashes[0] if hashes else "")


def decode_entries(entries: list[AccuracyEntry]) -> list[Response | str]:
    """Each logged response decoded (format v1), or the reason it does not decode."""
    out: list[Response | str] = []
    for e in entries:
        try:
            out.append(decode_hex(e.data))
        except ValueError as err:
            out.append(str(err))
    return out


def engine_settings(measurements: dict[str, Any]) -> dict[str, str]:
    eng = measurements.get("engine")
    return eng if isinstance(eng, dict) else {}


def max_attempts(measurements: dict[str, Any]) -> int | None:
    try:
        return int(engine_settings(measurements)["max_attempts"])
    except (KeyError, ValueError):
        return None


def subset_figures(responses: list[Response]) -> dict[str, float]:
    """Mean attempts and generated tokens per sample of decoded responses (the TEST09 figures)."""
    n = max(len(responses), 1)
    return {"mean_attempts": sum(r.n_attempts for r in responses) / n,
            "tokens_per_sample": sum(r.n_tokens for r in responses) / n}


def accuracy_command(log_path: Path, out: Path, suite: str, samples: int | str) -> list[str]:
    """The verifier's accuracy pass over ``log_path`` against ``suite``'s frozen task file, writing ``out``."""
    from sut.tasks.suites import eval_path  # noqa: PLC0415

    return [sys.executable, "-m", "verifier.accuracy", "--mlperf-accuracy-file", str(log_path),
            "--tasks", str(eval_path(suite)), "--txt", str(out), "--expected-samples", str(samples)]


def accuracy_pass(log_path: Path, out: Path, samples: int | None = None, *, suite: str) -> dict[str, float]:
    """Run the verifier's accuracy pass on ``log_path`` (the tasks of ``suite``), writing ``out`` (accuracy.txt
    format); its figures. ``samples``: the log must hold tasks 0..samples-1 (a run's declared count); None: any
    subset (audits)."""
    cmd = accuracy_command(log_path, out, suite, samples or "any")
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0 or not Path(out).is_file():
        raise RuntimeError(f"the accuracy pass on {log_path} failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-300:]}")
    return parse_accuracy_txt(out)


def rescore_log(log_path: Path, *, suite: str) -> dict[str, float]:
    """The accuracy pass again on ``log_path`` (the tasks of ``suite``) in a scratch folder: the figures, nothing
    written."""
    with tempfile.TemporaryDirectory() as tmp:
        return accuracy_pass(log_path, Path(tmp) / "accuracy.txt", suite=suite)
