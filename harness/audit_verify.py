"""The verdicts of the audits TEST01, TEST04, TEST06, TEST07 and TEST09 (docs/audits.md explains each).

Each ``verify_*`` reads a scenario folder whose ``TEST0x/`` holds the audit run in MLPerf's
compliance layout (``performance/run_1/`` LoadGen's logs, ``accuracy/mlperf_log_accuracy.json``)
and returns a ``Verdict``: pass or fail, a one-line reason, and the lines of the verify
file(s) MLPerf names (verify_accuracy.txt, verify_performance.txt, verify_output_len.txt),
each ending in ``TEST PASS`` or ``TEST FAIL``. harness/audits.py writes them after an audit
run; the submission checker recomputes them and compares.
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.mlperf_log import (DetailLog, LogError, read_accuracy_log, read_detail, read_summary, sha256_file,
                                summary_mismatches)
from harness.scenario_files import (parse_accuracy_txt, EVAL_SIZE, FileProblem, Reference, accuracy_pass, decode_entries, read_json,
                                    read_records, rescore_log, run_suite, subset_figures)

AUDIT_TESTS = ("TEST01", "TEST04", "TEST06", "TEST07", "TEST09")
VERIFY_FILES = {"TEST01": ("verify_accuracy.txt", "verify_performance.txt"), "TEST04": ("verify_performance.txt",),
                "TEST06": ("verify_accuracy.txt",), "TEST07": ("verify_accuracy.txt",),
                "TEST09": ("verify_output_len.txt",)}
AUDIT_SEED = 720381539243781796     # MLPerf's accuracy_log_rng_seed for the compliance tests
TEST01_SAMPLING_TARGET = 64         # responses TEST01 logs during its performance run
LOG_ALL = 100_000                   # accuracy_log_sampling_target that logs every sample
PERF_TOLERANCE = 0.10               # TEST01 within +-10%; TEST04 at most 10% better
TEST01_ACCURACY_DELTA_PCT = 1.0     # non-deterministic TEST01: accuracy within (1 - 0.99) = 1%
TEST09_TOLERANCE = 0.10
# Offline TEST04: copies of one sample decode in lockstep batches with no tail of long tasks, which
# made the honest engine 1.31x faster than the mixed run (shipped checkpoint, docs/audits.md); an
# answer cache serves all but the first batch of copies for free (>= 10x). 10% cannot tell the two
# apart, 2x can.
OFFLINE_TEST04_TOLERANCE = 1.0
# The figure compared per scenario: MLPerf's (compliance/TEST01/verify_performance.py), except that
# SingleStream uses the whole-task p90: with token latencies early_stopping_latency_ss is TTFT's.
RESULT_FIELD = {"Offline": "result_samples_per_second", "SingleStream": "result_90.00_percentile_latency_ns",
                "Server": "result_completed_samples_per_sec"}


@dataclass
class Verdict:
    test: str
    passed: bool
    reason: str
    files: dict[str, list[str]] = field(default_factory=dict)   # verify file -> lines (last: TEST PASS/FAIL)


# Offline TEST04 sizes its one query at this multiple of the performance run's target_qps: copies of one
# sample run up to ~2x the mixed rate (above), so a query sized for the mixed rate ends before
# min_duration and the audit run is INVALID (seen on the agentic suite: 34 copies/s against 17 samples/s).
OFFLINE_TEST04_QPS_FACTOR = 4


def audit_settings(test: str, n_samples: int, same_index: int = 0, offline_qps: float | None = None
                   ) -> dict[str, float]:
    """The audit.config keys (MLPerf's own) for ``test`` over a QSL of ``n_samples`` tasks; ``offline_qps``:
    the Offline performance run's effective target_qps (TEST04 then asks for a larger query)."""
    if test == "TEST01":
        return {"mode": 2, "accuracy_log_rng_seed": AUDIT_SEED, "accuracy_log_sampling_target": TEST01_SAMPLING_TARGET,
                "performance_issue_unique": 0, "performance_issue_same": 0, "performance_issue_same_index": 0}
    if test == "TEST04":
        return {"mode": 2, "performance_issue_unique": 0, "performance_issue_same": 1,
                "performance_issue_same_index": same_index,
                **({"target_qps": OFFLINE_TEST04_QPS_FACTOR * offline_qps} if offline_qps else {})}
    if test in ("TEST06", "TEST07", "TEST09"):
        # Every sample, each issued once, all logged. In equal-issue mode LoadGen rounds
        # min_query_count up past the next multiple of the sample count (SingleStream: 16 -> 32),
        # so N - 1 yields exactly N queries in every scenario; max_query_count would log an error.
        return {"mode": 2, "accuracy_log_rng_seed": AUDIT_SEED, "accuracy_log_sampling_target": LOG_ALL,
                "min_query_count": max(n_samples - 1, 1), "min_duration": 0, "sample_concatenate_permutation": 1}
    raise ValueError(f"unknown audit {test!r}; choose one of {', '.join(AUDIT_TESTS)}")


def agent_ms(record: dict) -> float:
    """The agent's own time on one sample: prefill + decode + verify over its attempts."""
    return sum(a.get("prefill_ms", 0) + a.get("decode_ms", 0) + a.get("verify_ms", 0) for a in record["attempts"])


def sample_cost(record: dict, scenario: str) -> float:
    """A sample's cost for choosing TEST04's: the agent's own ms, except in Offline, where every sample is
    queued at once and its ms are mostly the shared batch's (a one-attempt task admitted with 63 others
    takes as long as a long one): there the rows the model computed for it, the tokens it prefilled
    (each retry's feedback, a rebuilt context) and generated (redraws included)."""
    if scenario == "Offline":
        return float(record.get("n_tokens", 0) + sum(a.get("prefilled_tokens", 0) for a in record["attempts"]))
    return agent_ms(record)


@dataclass(frozen=True)
class Test04Choice:
    qsl_idx: int        # the sample TEST04 repeats
    cost_ms: float      # its mean cost in the normal performance run (sample_cost: ms, or tokens in Offline)
    target_ms: float    # the per-sample cost the scenario's metric reflects (mean, or p90)
    what: str           # "mean" | "p90"
    unit: str = "ms"    # "ms" (agent time) or "tokens" (Offline)

    @property
    def note(self) -> str:
        what = "agent time" if self.unit == "ms" else "model rows"
        return (f"sample {self.qsl_idx}: {what} {self.cost_ms:.1f} {self.unit}, nearest the {self.what} per-sample "
                f"{what} {self.target_ms:.1f} {self.unit} of the performance run")


def choose_test04_sample(records: list[dict], scenario: str) -> Test04Choice:
    """The sample TEST04 repeats: the one whose cost is nearest what the scenario's metric measures.

    Tasks differ widely in cost (one attempt or five), so a repeated sample is a fair
    yardstick only against its own cost: we pick the sample nearest the mean per-sample
    cost (Offline throughput, Server) or the 90th-percentile cost (SingleStream's p90
    latency) and scale the reference by target / cost, which is ~1 when such a sample exists.
    Cost is the agent's own time on the sample in the normal performance run (``sample_cost``: its
    generated tokens in Offline).
    """
    per: dict[int, list[float]] = {}
    for r in records:
        per.setdefault(int(r["qsl_idx"]), []).append(sample_cost(r, scenario))
    if not per:
        raise FileProblem("the performance run has no agent records to choose a TEST04 sample from")
    times = sorted(t for ts in per.values() for t in ts)
    if scenario == "SingleStream":
        target, what = times[min(len(times) - 1, int(0.9 * len(times)))], "p90"
    else:
        target, what = statistics.fmean(times), "mean"
    q = min(per, key=lambda i: (abs(statistics.fmean(per[i]) - target), i))
    return Test04Choice(q, statistics.fmean(per[q]), target, what, "tokens" if scenario == "Offline" else "ms")


def recorded_verdict(test: str, audit_dir: Path) -> tuple[bool | None, Path]:
    """What the verify file(s) say: True (all end in TEST PASS), False, or None (missing/unreadable)."""
    for name in VERIFY_FILES[test]:
        path = audit_dir / name
        try:
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
        except OSError:
            return None, path
        if not lines or lines[-1] not in ("TEST PASS", "TEST FAIL"):
            return None, path
        if lines[-1] == "TEST FAIL":
            return False, path
    return True, audit_dir / VERIFY_FILES[test][0]


def verify_audit(test: str, scenario_dir: Path, ref: Reference | None, rescore: bool = False,
                 write_extras: bool = False) -> Verdict:
    """The verdict of ``test`` over ``scenario_dir``; never raises for a broken folder (it fails)."""
    fn = {"TEST01": verify_test01, "TEST04": verify_test04, "TEST06": verify_test06, "TEST07": verify_test07,
          "TEST09": verify_test09}[test]
    try:
        return fn(Path(scenario_dir), ref, rescore, write_extras)
    except (LogError, FileProblem, RuntimeError, OSError) as e:
        return _verdict(test, False, str(e), [f"error: {e}"])


def _verdict(test: str, ok: bool, reason: str, lines: list[str], extra: dict[str, list[str]] | None = None) -> Verdict:
    files = {name: [] for name in VERIFY_FILES[test]}
    files[VERIFY_FILES[test][0]] = lines + ["TEST PASS" if ok else "TEST FAIL"]
    for name, more in (extra or {}).items():
        files[name] = more
    return Verdict(test, ok, reason, files)


def offline_qps(perf: DetailLog | dict) -> float | None:
    """An Offline performance run's effective target_qps (what TEST04 scales), else None."""
    qps = perf.get("effective_target_qps")
    return float(qps) if perf.get("effective_scenario") == "Offline" and qps else None


def _audit_run(test: str, scenario_dir: Path, n_samples: int | None) -> tuple[DetailLog, list[str]]:
    """The audit run's detail log, and what is wrong with the run itself (errors, settings not applied)."""
    run = scenario_dir / test / "performance" / "run_1"
    detail = read_detail(run / "mlperf_log_detail.txt")
    summary = read_summary(run / "mlperf_log_summary.txt")
    problems = [f"{run / 'mlperf_log_summary.txt'}: {m}" for m in summary_mismatches(summary, detail)]
    if detail.scenario != scenario_dir.name:
        problems.append(f"the audit ran scenario {detail.scenario}, not {scenario_dir.name}")
    if detail.num_errors:
        problems.append(f"{detail.num_errors} error(s) in {run / 'mlperf_log_detail.txt'}")
    n = n_samples if n_samples is not None else int(detail.get("qsl_reported_total_count", 0) or 0)
    same = int(detail.get("effective_performance_issue_same_index", 0) or 0)
    qps = offline_qps(read_detail(scenario_dir / "performance" / "run_1" / "mlperf_log_detail.txt")) \
        if test == "TEST04" else None
    for key, want in audit_settings(test, n, same, qps).items():
        if key in ("mode", "min_query_count"):
            continue
        dkey = "effective_min_duration_ms" if key == "min_duration" else f"effective_{key}"
        if abs(float(detail.get(dkey, -1)) - float(want)) > 1e-6 * max(1.0, abs(float(want))):
            problems.append(f"{dkey} = {detail.get(dkey)} but the {test} audit.config sets {key} = {want} "
                            "(audit.config not read?)")
    if detail.mode != "PerformanceOnly":
        problems.append(f"the audit ran in {detail.mode}, not PerformanceOnly")
    return detail, problems


def _score(detail: DetailLog) -> float:
    return float(detail.require(RESULT_FIELD[detail.scenario]))


def _comparable(ref: DetailLog, test: DetailLog) -> str:
    """Why two performance runs cannot be compared ('' when they can), as MLPerf's scripts refuse."""
    if ref.get("result_validity") != "VALID" or test.get("result_validity") != "VALID":
        return "TEST FAIL: the reference or the audit performance run is INVALID"
    if ref.scenario != test.scenario:
        return "TEST FAIL: Test and reference scenarios do not match"
    if ref.scenario == "Server" and ref.get("effective_target_latency_ns") != test.get("effective_target_latency_ns"):
        return "TEST FAIL: Server target latency mismatch"
    return ""


def _test01_perf(ref: DetailLog, test: DetailLog) -> tuple[bool, str, list[str]]:
    """MLPerf's compliance/TEST01/verify_performance.py: the audit's score within +-10% (20% for short SS)."""
    if bad := _comparable(ref, test):
        return False, bad, [bad]
    r, t = _score(ref), _score(test)
    tol = 0.20 if ref.scenario == "SingleStream" and r <= 200_000 else PERF_TOLERANCE
    ok = r * (1 - tol) <= t <= r * (1 + tol)
    lines = [f"Reference score = {r}", f"Test score = {t}", f"threshold = {tol:.2f}"]
    return ok, f"performance {t:.4g} vs {r:.4g}: {'within' if ok else 'outside'} {tol:.0%}", lines


def _test04_perf(ref: DetailLog, test: DetailLog, choice: Test04Choice) -> tuple[bool, str, list[str]]:
    """MLPerf's compliance/TEST04/verify_performance.py rule (the repeated sample at most 10% faster),
    with the reference scaled to the repeated sample's own cost (see choose_test04_sample)."""
    if bad := _comparable(ref, test):
        return False, bad, [bad]
    scen, ratio = ref.scenario, choice.target_ms / max(choice.cost_ms, 1e-9)
    r, t = _score(ref), _score(test)
    if scen == "SingleStream":   # speeds, as MLPerf compares them: queries/s from the latency estimate
        r, t = 1e9 / r, 1e9 / t
    tol = {"Offline": OFFLINE_TEST04_TOLERANCE, "SingleStream": 0.20 if r <= 200_000 else PERF_TOLERANCE
           }.get(scen, PERF_TOLERANCE)
    expected = r if scen == "Server" else r * ratio   # Server's completed rate is the arrival rate
    ok = t < expected * (1 + tol)
    lines = [f"reference score = {r}", f"cost ratio (target / repeated sample) = {ratio:.4f}",
             f"expected score for the repeated sample = {expected}", f"test score = {t}", f"threshold = {tol:.2f}"]
    why = f"repeated-sample score {t:.4g} vs expected {expected:.4g}: " + \
        (f"at most {tol:.0%} faster" if ok else f"more than {tol:.0%} faster (answer caching?)")
    if ok and scen == "Server":   # our addition: Server's metric ignores latency, so compare latency too
        rl = float(ref.get("result_mean_latency_ns", 0)) / ratio
        tl = float(test.get("result_mean_latency_ns", 0))
        lines.append(f"expected mean latency = {rl:.0f} ns, test mean latency = {tl:.0f} ns")
        if tl < rl * (1 - tol):
            ok, why = False, f"repeated-sample mean latency {tl / 1e6:.1f} ms is over {tol:.0%} below the " \
                             f"expected {rl / 1e6:.1f} ms (answer caching?)"
    return ok, why, lines


def verify_test01(sd: Path, ref: Reference | None, rescore: bool, write_extras: bool) -> Verdict:
    detail, problems = _audit_run("TEST01", sd, None)
    perf_ok, perf_why, perf_lines = _test01_perf(read_detail(sd / "performance/run_1/mlperf_log_detail.txt"), detail)
    acc_log = sd / "TEST01" / "accuracy" / "mlperf_log_accuracy.json"
    sampled, baseline = read_accuracy_log(acc_log), read_accuracy_log(sd / "accuracy" / "mlperf_log_accuracy.json")
    base = {e.qsl_idx: e.data for e in baseline}
    match = sum(e.qsl_idx in base for e in sampled)
    mismatch = sum(e.qsl_idx in base and base[e.qsl_idx] != e.data for e in sampled)
    lines = [f"num_acc_log_entries = {len(baseline)}", f"num_perf_log_entries = {len(sampled)}",
             f"num_perf_log_qsl_idx_match = {match}", f"num_perf_log_data_mismatch = {mismatch}",
             f"num_missing_qsl_idxs = {len(sampled) - match}"]
    acc_ok = match > 0 and mismatch == 0 and match == len(sampled)
    acc_why = "" if acc_ok else (f"{mismatch} of {len(sampled)} sampled responses differ from the accuracy run"
                                 if match else "no sampled responses to compare")
    if mismatch and match == len(sampled):   # non-deterministic SUT: compare accuracy on the same samples
        acc_ok, acc_why, more = _test01_accuracy(sd, sampled, baseline, rescore, write_extras)
        lines += more
    ok = acc_ok and perf_ok and not problems
    reason = "; ".join(problems + ([acc_why] if not acc_ok else []) + ([perf_why] if not perf_ok else [])) or \
        f"{match} sampled responses equal the accuracy run's; {perf_why}"
    mark = lambda good: "TEST PASS" if good and not problems else "TEST FAIL"  # noqa: E731
    return Verdict("TEST01", ok, reason, {"verify_accuracy.txt": problems + lines + [mark(acc_ok)],
                                          "verify_performance.txt": problems + perf_lines + [mark(perf_ok)]})


def _test01_accuracy(sd: Path, sampled: list, baseline: list, rescore: bool, write: bool) -> tuple[bool, str, list[str]]:
    """MLPerf's TEST01 part III: the accuracy of the sampled responses vs the accuracy run's on the same samples."""
    import json  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    acc_dir = sd / "TEST01" / "accuracy"
    want = {e.qsl_idx for e in sampled}
    files = {"baseline": acc_dir / "baseline_accuracy.txt", "compliance": acc_dir / "compliance_accuracy.txt"}
    if write or rescore or not all(p.is_file() for p in files.values()):
        with tempfile.TemporaryDirectory() as tmp:
            blog = Path(tmp) / "mlperf_log_accuracy_baseline.json"
            blog.write_text(json.dumps([{"seq_id": e.seq_id, "qsl_idx": e.qsl_idx, "data": e.data,
                                         **({"token_count": e.token_count} if e.token_count is not None else {})}
                                        for e in baseline if e.qsl_idx in want]))
            outs = {k: (p if write else Path(tmp) / p.name) for k, p in files.items()}
            suite = run_suite(sd)
            b = accuracy_pass(blog, outs["baseline"], suite=suite)
            t = accuracy_pass(acc_dir / "mlperf_log_accuracy.json", outs["compliance"], suite=suite)
    else:
        b, t = parse_accuracy_txt(files["baseline"]), parse_accuracy_txt(files["compliance"])
    bf, tf = b.get("pass@final", 0.0), t.get("pass@final", 0.0)
    delta = 0.0 if bf == tf else (abs(1 - bf / tf) * 100 if tf else float("inf"))
    ok = delta <= TEST01_ACCURACY_DELTA_PCT
    return ok, f"sampled responses differ; pass@final {tf:.4f} vs the accuracy run's {bf:.4f} on the same samples " \
               f"(delta {delta:.2f}% {'<=' if ok else '>'} {TEST01_ACCURACY_DELTA_PCT}%)", \
        [f"baseline pass@final = {bf}", f"compliance pass@final = {tf}", f"delta_pct = {delta:.3f}"]


def verify_test04(sd: Path, ref: Reference | None, rescore: bool, write_extras: bool) -> Verdict:
    detail, problems = _audit_run("TEST04", sd, None)
    perf = read_detail(sd / "performance/run_1/mlperf_log_detail.txt")
    loaded = detail.get("loaded_qsl_set") or []
    same = int(detail.get("effective_performance_issue_same_index", 0) or 0)
    q = loaded[same] if 0 <= same < len(loaded) else None
    choice = choose_test04_sample(read_records(sd / "performance/run_1/agent_records.jsonl"), sd.name)
    if q != choice.qsl_idx:
        problems.append(f"the audit repeated sample {q}, but the fair choice is {choice.note}")
    records = read_records(sd / "TEST04/performance/run_1/agent_records.jsonl")
    others = sorted({r["qsl_idx"] for r in records} - {q})
    if others or not records:
        problems.append(f"the audit run's records hold samples {others[:5]} besides {q}" if records else "no records")
    ok, why, lines = _test04_perf(perf, detail, choice)
    return _verdict("TEST04", ok and not problems, "; ".join(problems + [why]) if problems else why,
                    [f"repeated {choice.note}"] + problems + lines)


def _each_once(test: str, sd: Path, detail: DetailLog) -> tuple[list, list[str]]:
    entries = read_accuracy_log(sd / test / "accuracy" / "mlperf_log_accuracy.json")
    total = int(detail.get("qsl_reported_total_count", 0) or 0)
    counts = Counter(e.qsl_idx for e in entries)
    if len(counts) != total or any(n != 1 for n in counts.values()):
        return entries, [f"{len(entries)} logged responses over {len(counts)} samples; {test} needs each of the "
                         f"{total} samples logged exactly once"]
    return entries, []


def verify_test06(sd: Path, ref: Reference | None, rescore: bool, write_extras: bool) -> Verdict:
    from harness.audit_test06 import response_checks  # noqa: PLC0415 - the per-response rules

    detail, problems = _audit_run("TEST06", sd, None)
    entries, once = _each_once("TEST06", sd, detail)
    measurements = read_json(sd / "measurements.json")
    checks = response_checks(sd, entries, measurements)
    lines = [f"{name} check pass: {'Skipped' if ok is None else ok}" for name, (ok, why) in checks.items()]
    failed = [f"{name}: {why}" for name, (ok, why) in checks.items() if ok is False]
    lines += failed
    ok = not problems and not once and not failed
    return _verdict("TEST06", ok, "; ".join(problems + once + failed) or f"{len(entries)} responses consistent",
                    problems + once + lines)


def verify_test07(sd: Path, ref: Reference | None, rescore: bool, write_extras: bool) -> Verdict:
    detail, problems = _audit_run("TEST07", sd, None)
    entries, once = _each_once("TEST07", sd, detail)
    acc_dir = sd / "TEST07" / "accuracy"
    from harness.scenario_files import read_accuracy_txt  # noqa: PLC0415

    metrics, digest = read_accuracy_txt(acc_dir / "accuracy.txt")
    if digest != sha256_file(acc_dir / "mlperf_log_accuracy.json"):
        problems.append(f"{acc_dir / 'accuracy.txt'}: hash= is not the sha256 of the audit's accuracy log")
    if rescore:
        again = rescore_log(acc_dir / "mlperf_log_accuracy.json", suite=run_suite(sd))
        if abs(again.get("pass@final", -1) - metrics["pass@final"]) > 1e-4:
            problems.append(f"accuracy.txt says pass@final={metrics['pass@final']}, re-scoring gives {again.get('pass@final')}")
    threshold, basis = _test07_threshold(sd, {e.qsl_idx for e in entries}, ref)
    score = metrics["pass@final"]
    passed = score >= threshold
    lines = [(acc_dir / "accuracy.txt").read_text().splitlines()[0], f"Accuracy score: {score}",
             f"Accuracy threshold: {threshold:.6f} ({basis})", f"Accuracy check pass: {passed}"]
    ok = passed and not problems and not once
    why = f"pass@final {score:.4f} {'>=' if passed else '<'} {threshold:.4f} ({basis})"
    return _verdict("TEST07", ok, "; ".join(problems + once + ([why] if not passed else [])) or why,
                    problems + once + lines)


def _accuracy_run_subset(sd: Path, indices: set[int]) -> list:
    entries = [e for e in read_accuracy_log(sd / "accuracy" / "mlperf_log_accuracy.json") if e.qsl_idx in indices]
    return [r for r in decode_entries(entries) if not isinstance(r, str)]


def _test07_threshold(sd: Path, indices: set[int], ref: Reference | None) -> tuple[float, str]:
    """99% of the reference's pass@final on the same tasks; without per-task reference outcomes,
    a --count subset is judged against this folder's own accuracy run."""
    if ref is not None:
        target, basis = ref.target_over(indices)
        if target is not None:
            return target, basis
    from harness.scenario_files import read_accuracy_txt  # noqa: PLC0415

    metrics, _ = read_accuracy_txt(sd / "accuracy" / "accuracy.txt")
    return 0.99 * metrics["pass@final"], (f"99% of this folder's accuracy-run pass@final {metrics['pass@final']:.4f}: "
                                          f"no reference figure for these {len(indices)} tasks")


def verify_test09(sd: Path, ref: Reference | None, rescore: bool, write_extras: bool) -> Verdict:
    detail, problems = _audit_run("TEST09", sd, None)
    entries, once = _each_once("TEST09", sd, detail)
    responses = [r for r in decode_entries(entries) if not isinstance(r, str)]
    if len(responses) != len(entries):
        problems.append(f"{len(entries) - len(responses)} logged responses do not decode")
    got = subset_figures(responses)
    if len(entries) == EVAL_SIZE and ref is not None and ref.tokens_per_sample and ref.mean_attempts:
        want, basis = {"tokens_per_sample": ref.tokens_per_sample, "mean_attempts": ref.mean_attempts}, \
            f"the reference checkpoint's accuracy run ({ref.path})"
    else:
        want = subset_figures(_accuracy_run_subset(sd, {e.qsl_idx for e in entries}))
        basis = f"this folder's accuracy run on the same {len(entries)} samples"
    lines, bad = [f"Total samples: {len(entries)}", f"Reference: {basis}"], []
    for key, label in (("tokens_per_sample", "output tokens"), ("mean_attempts", "attempts")):
        lo, hi = want[key] * (1 - TEST09_TOLERANCE), want[key] * (1 + TEST09_TOLERANCE)
        inside = lo <= got[key] <= hi
        lines += [f"Mean {label}: {got[key]:.2f}", f"Min threshold: {lo:.2f}", f"Max threshold: {hi:.2f}",
                  f"Min check pass: {got[key] >= lo}", f"Max check pass: {got[key] <= hi}"]
        if not inside:
            bad.append(f"mean {label} {got[key]:.2f} outside [{lo:.2f}, {hi:.2f}] ({basis})")
    ok = not problems and not once and not bad
    return _verdict("TEST09", ok, "; ".join(problems + once + bad) or
                    f"mean tokens {got['tokens_per_sample']:.1f}, attempts {got['mean_attempts']:.2f} within 10%",
                    problems + once + lines)
