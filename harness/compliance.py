"""Compliance checks on one scenario folder of the results tree (docs/rules.md states the rules).

``check_scenario(folder)`` reads LoadGen's logs and the harness's files and returns a
``ScenarioCheck``: the headline figures, the run's class, and one ``Finding`` per broken
rule, each naming the file and the rule. The class is decided from the logs, not from
what the folder claims: ``official`` needs MLPerf's 600 s minimum, LoadGen's official
seeds, every evaluation task, the suite's reference checkpoint and agent budget, all five audits passing, and
the run must have been made with ``--official``; ``quick`` needs only what our default
user.conf gives (10 s minimum, official seeds). A quick run can pass, labelled quick;
it is never reported as official.
"""
from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from harness.mlperf_log import (ACCURACY, PERFORMANCE, DetailLog, LogError, PerfResult, perf_result,
                                read_accuracy_log, read_detail, read_summary, sha256_file, summary_mismatches)
from harness.results import INCOMPLETE
from harness.compliance_config import check_configuration, not_the_reference
from harness.run_config import CONFIG_FILE
from harness.scenario_files import (EVAL_SIZE, FileProblem, Reference, decode_entries, load_reference, meets_target,
                                    read_accuracy_txt, read_json, read_records, reference_checkpoint, rescore_log,
                                    engine_description, run_engine, run_suite, target_for_run)
from sut.tasks.suites import DEFAULTS

log = logging.getLogger(__name__)

QUICK_MIN_DURATION_MS = 10_000      # our default user.conf
OFFICIAL_MIN_DURATION_MS = 600_000  # LoadGen's built-in mlperf.conf
OFFICIAL_MIN_QUERY_COUNT = 100      # idem, SingleStream and Server (Offline issues one query)
# LoadGen 6.0.17's built-in seeds (tests/test_compliance.py reads them back from LoadGen itself).
OFFICIAL_SEEDS = {"qsl_rng_seed": 2085463073848966840, "sample_index_rng_seed": 2747215439041700203,
                  "schedule_rng_seed": 16159082839903944936}
SERVER_TARGET_LATENCY_MS = 2000     # scenarios/server.yaml: the benchmark's bound on a whole task
# user.conf key -> (detail key, scale from the conf's unit to the log's)
_CONF_TO_DETAIL = {"min_duration": ("effective_min_duration_ms", 1), "max_duration": ("effective_max_duration_ms", 1),
                   "max_query_count": ("effective_max_query_count", 1),
                   **{k: (f"effective_{k}", 1) for k in OFFICIAL_SEEDS}}


@dataclass(frozen=True)
class Finding:
    rule: str
    file: Path
    message: str

    def __str__(self) -> str:
        return f"{self.file}: [{self.rule}] {self.message}"


@dataclass
class ScenarioCheck:
    folder: Path
    system: str
    benchmark: str
    scenario: str
    suite: str = "basic"                       # the task suite its run_config.json records
    engine: str = "native"                     # who generated (harness.scenario_files.run_engine)
    engine_detail: str = ""                    # its version, endpoints and options (engine_description)
    run_class: str = "invalid"                 # official | quick | invalid
    metric: str = ""
    value: float | None = None
    validity: str = "?"
    accuracy: float | None = None              # pass@final of the accuracy run
    accuracy_target: float | None = None
    audits: dict[str, str] = field(default_factory=dict)      # TEST0x -> PASS | FAIL | -
    findings: list[Finding] = field(default_factory=list)
    not_official: list[str] = field(default_factory=list)     # why a passing run is only quick

    @property
    def passed(self) -> bool:
        return not self.findings

    def fail(self, rule: str, file: Path, message: str) -> None:
        self.findings.append(Finding(rule, Path(file), message))


def check_scenario(folder: Path, reference: Path | None = None, rescore: bool = False) -> ScenarioCheck:
    """Every rule of docs/rules.md on ``<results>/<system>/<benchmark>/<Scenario>``; ``reference``: the
    checkpoint whose recorded figures set the accuracy target (None: the folder's suite's reference)."""
    folder = Path(folder)
    c = ScenarioCheck(folder, folder.parent.parent.name, folder.parent.name, folder.name)
    try:
        c.suite = run_suite(folder)
        c.engine, c.engine_detail = run_engine(folder), engine_description(folder)
    except FileProblem as e:   # judged as basic then; a missing run_config.json is check_configuration's finding
        if (folder / CONFIG_FILE).is_file():
            c.fail("configuration", folder / CONFIG_FILE, str(e))
    reference = Path(reference) if reference is not None else reference_checkpoint(c.suite)
    perf_dir, acc_dir = folder / "performance" / "run_1", folder / "accuracy"
    measurements = _read_or_fail(c, "measurements", folder / "measurements.json")
    _read_or_fail(c, "system-json", folder.parents[2] / "systems" / f"{c.system}.json")
    conf = _read_conf(c, folder / "user.conf")
    try:
        ref: Reference | None = load_reference(reference)
        c.accuracy_target = ref.accuracy_target
    except FileProblem as e:
        ref = None
        c.fail("reference", Path(reference) / "metrics.json", str(e))

    perf = _check_run(c, perf_dir, PERFORMANCE)
    acc = _check_run(c, acc_dir, ACCURACY)
    if perf is not None:
        res = perf_result(perf)
        c.metric, c.value, c.validity = res.metric, res.value, res.validity
        _check_validity(c, perf, res)
        _check_settings(c, perf, conf, folder / "user.conf")
        _check_records_perf(c, perf_dir, res, perf)
    if acc is not None:
        _check_accuracy(c, acc_dir, acc, ref, rescore)
    bound = check_configuration(c, folder, [d for d in (perf_dir, acc_dir) if d.is_dir()])
    if acc is not None and bound is not None:
        declared = (bound.get("tasks") or {}).get("count") or EVAL_SIZE
        if int(acc.get("qsl_reported_total_count", 0) or 0) != declared:
            c.fail("accuracy-log", acc_dir / "mlperf_log_detail.txt", f"the accuracy run's QSL held "
                   f"{acc.get('qsl_reported_total_count')} tasks, not the {declared} the folder declares")
    for d in (perf_dir, acc_dir, *sorted(folder.glob("TEST0*"))):
        if (d / INCOMPLETE).exists():
            c.fail("incomplete", d / INCOMPLETE, "this run was interrupted or failed before it finished: it is not a result")
    if perf is not None and acc is not None:
        tp, ta = perf.get("qsl_reported_total_count"), acc.get("qsl_reported_total_count")
        if tp != ta:
            c.fail("task-count", acc_dir / "mlperf_log_detail.txt",
                   f"the accuracy run's QSL held {ta} tasks but the performance run's {tp}: run both with the same --count")
    _check_audits(c, ref, rescore)
    _classify(c, perf, measurements or {}, bound, reference)
    return c


def _read_or_fail(c: ScenarioCheck, rule: str, path: Path) -> dict | None:
    try:
        return read_json(path)
    except FileProblem as e:
        c.fail(rule, path, str(e))
        return None


def _fail_exc(c: ScenarioCheck, rule: str, e: Exception, *paths: Path) -> None:
    """A finding from an exception whose message starts with one of ``paths``."""
    text = str(e)
    for p in paths:
        if text.startswith(str(p)):
            rest = text[len(str(p)):]
            m = re.match(r"^:(\d+):\s*", rest)
            c.fail(rule, p, f"line {m.group(1)}: {rest[m.end():]}" if m else rest.lstrip(": "))
            return
    c.fail(rule, paths[0].parent, text)


def _read_conf(c: ScenarioCheck, path: Path) -> dict[str, str]:
    from harness.user_conf import UserConfError, parse_user_conf, resolve  # noqa: PLC0415

    try:
        return {k: line.value for k, line in resolve(parse_user_conf(path), c.scenario).items()}
    except UserConfError as e:
        c.fail("user-conf", path, str(e))
        return {}


def _check_run(c: ScenarioCheck, run_dir: Path, mode: str) -> DetailLog | None:
    """The log files of one run: present, well formed, of this scenario and mode, without errors."""
    detail_path, summary_path = run_dir / "mlperf_log_detail.txt", run_dir / "mlperf_log_summary.txt"
    try:
        detail = read_detail(detail_path)
        summary = read_summary(summary_path, require_result=mode == PERFORMANCE)
    except LogError as e:
        _fail_exc(c, "log-format", e, detail_path, summary_path)
        return None
    if detail.scenario != c.scenario:
        c.fail("scenario", detail_path, f"LoadGen ran scenario {detail.scenario!r} but the folder is {c.scenario!r}")
    if detail.mode != mode:
        c.fail("mode", detail_path, f"LoadGen ran in {detail.mode} but {run_dir.name}/ must hold a {mode} run")
    if detail.num_errors:
        c.fail("errors", detail_path, f"{detail.num_errors} error(s) in the detail log, e.g. "
                                      f"{(detail.errors or ['num_errors > 0'])[0]}")
    for m in summary_mismatches(summary, detail):
        c.fail("summary-detail", summary_path, m)
    return detail


def _check_validity(c: ScenarioCheck, detail: DetailLog, res: PerfResult) -> None:
    f = detail.path
    if res.validity != "VALID":
        c.fail("result-valid", f, f"LoadGen judged the run {res.validity}" + (f": {res.invalid_reason}" if res.invalid_reason else ""))
    if not res.min_duration_met:
        c.fail("min-duration", f, "result_min_duration_met is false")
    if not res.min_queries_met:
        c.fail("min-queries", f, "result_min_queries_met is false")
    if not res.early_stopping_met:
        c.fail("early-stopping", f, "early_stopping_met is false: too few queries for the percentile at 99% confidence")
    ran_ms = int(detail.get("effective_min_duration_ms", 0) or 0)
    if ran_ms < QUICK_MIN_DURATION_MS:
        c.fail("min-duration", f, f"effective_min_duration_ms = {ran_ms} < {QUICK_MIN_DURATION_MS} (the least a quick "
                                  f"run may use; {OFFICIAL_MIN_DURATION_MS} for an official one)")
    for key, want in OFFICIAL_SEEDS.items():
        got = detail.get(f"effective_{key}")
        if got != want:
            c.fail("seeds", f, f"effective_{key} = {got}, not LoadGen's official {want}")
    psc, total = detail.get("effective_performance_sample_count"), detail.get("qsl_reported_total_count")
    if psc != total or detail.get("qsl_reported_performance_count") != total:
        c.fail("performance-sample-count", f, f"LoadGen's performance set held {psc} of the QSL's {total} tasks; "
                                              "every task must be in it (no performance_sample_count_override)")
    if c.scenario == "Server":
        if res.target_latency_ns <= 0 or res.p99_latency_ns > res.target_latency_ns:
            c.fail("server-latency", f, f"p99 latency {res.p99_latency_ns / 1e6:.1f} ms exceeds the bound "
                                        f"{res.target_latency_ns / 1e6:.1f} ms")
        if res.perf_constraints_met is False:
            c.fail("server-latency", f, "result_perf_constraints_met is false")


def _check_settings(c: ScenarioCheck, detail: DetailLog, conf: dict[str, str], conf_path: Path) -> None:
    """The folder's user.conf is what LoadGen ran with: catches an edited conf or log."""
    for key, (dkey, scale) in _CONF_TO_DETAIL.items():
        if key in conf and dkey in detail.values:
            want = float(conf[key]) * scale
            if abs(float(detail.values[dkey]) - want) > 1e-6 * max(1.0, abs(want)):
                c.fail("settings", conf_path, f"{key} = {conf[key]} but LoadGen ran with {dkey} = {detail.values[dkey]}")
    if c.scenario == "Server" and "target_latency" in conf:
        want_ns = float(conf["target_latency"]) * 1e6
        if abs(float(detail.get("effective_target_latency_ns", 0) or 0) - want_ns) > 1:
            c.fail("settings", conf_path, f"target_latency = {conf['target_latency']} ms but LoadGen ran with "
                                          f"effective_target_latency_ns = {detail.get('effective_target_latency_ns')}")


def _check_records_perf(c: ScenarioCheck, run_dir: Path, res: PerfResult, detail: DetailLog) -> None:
    """agent_records.jsonl and sut_stats.json agree with LoadGen's count of samples."""
    path = run_dir / "agent_records.jsonl"
    try:
        records = read_records(path)
    except FileProblem as e:
        c.fail("agent-records", path, str(e))
        return
    if len(records) != res.samples:
        c.fail("agent-records", path, f"{len(records)} records but LoadGen issued {res.samples} samples")
    loaded = set(detail.get("loaded_qsl_set") or [])
    stray = sorted({r["qsl_idx"] for r in records} - loaded) if loaded else []
    if stray:
        c.fail("agent-records", path, f"records for samples LoadGen never loaded: {stray[:5]}")
    errs = [r for r in records if r.get("error")]
    if errs:
        c.fail("sut-errors", path, f"{len(errs)} sample(s) answered with an error, e.g. {errs[0]['error']!r}")
    _check_stats(c, run_dir / "sut_stats.json", len(records))


def _check_stats(c: ScenarioCheck, path: Path, n_records: int) -> None:
    try:
        s = read_json(path)
    except FileProblem as e:
        c.fail("sut-stats", path, str(e))
        return
    if s.get("issued") != s.get("completed") or s.get("completed") != n_records:
        c.fail("sut-stats", path, f"issued {s.get('issued')}, completed {s.get('completed')}, records {n_records}")
    if s.get("unanswered") or s.get("duplicate_completions"):
        c.fail("sut-stats", path, f"unanswered {s.get('unanswered')}, duplicate completions {s.get('duplicate_completions')}")


def _check_accuracy(c: ScenarioCheck, acc_dir: Path, detail: DetailLog, ref: Reference | None, rescore: bool) -> None:
    log_path, txt = acc_dir / "mlperf_log_accuracy.json", acc_dir / "accuracy.txt"
    try:
        entries = read_accuracy_log(log_path)
        metrics, digest = read_accuracy_txt(txt)
    except (LogError, FileProblem) as e:
        _fail_exc(c, "accuracy-file", e, log_path, txt)
        return
    c.accuracy = metrics["pass@final"]
    if digest != sha256_file(log_path):
        c.fail("accuracy-hash", txt, f"hash={digest[:16]}... is not the sha256 of {log_path.name} "
                                     f"({sha256_file(log_path)[:16]}...): the log or the figures were changed")
    if ref is not None:
        # the run's tasks are the QSL's (the first N evaluation tasks); accuracy-log checks the log covers them
        target, basis = target_for_run(ref, int(detail.get("qsl_reported_total_count", 0) or 0) or None)
        c.accuracy_target = target
        if target is None:
            c.fail("accuracy-target", txt, basis)
        elif not meets_target(c.accuracy, target):
            c.fail("accuracy-target", txt, f"pass@final {c.accuracy:.4f} < {target:.4f} ({basis})")
    total = int(detail.get("qsl_reported_total_count", 0) or 0)
    counts = Counter(e.qsl_idx for e in entries)
    missing, extra = sorted(set(range(total)) - set(counts)), sorted(set(counts) - set(range(total)))
    if missing or extra or any(n != 1 for n in counts.values()):
        c.fail("accuracy-log", log_path, f"{len(entries)} entries over {len(counts)} samples"
               + (f", missing e.g. {missing[:3]}" if missing else "") + (f", outside the QSL e.g. {extra[:3]}" if extra else "")
               + f"; an accuracy run logs each of the QSL's samples 0..{total - 1} exactly once")
    responses = decode_entries(entries)
    bad = [(e.qsl_idx, r) for e, r in zip(entries, responses) if isinstance(r, str)]
    if bad:
        c.fail("accuracy-log", log_path, f"{len(bad)} response(s) do not decode, e.g. sample {bad[0][0]}: {bad[0][1]}")
    _check_figures(c, txt, metrics, entries, responses)
    _check_records_acc(c, acc_dir / "agent_records.jsonl", entries, responses)
    if rescore:
        _rescore(c, log_path, txt, metrics)


def _check_figures(c: ScenarioCheck, txt: Path, metrics: dict[str, float], entries: list, responses: list) -> None:
    """accuracy.txt's figures that follow from the log alone (as verifier/accuracy.py counts them:
    the first entry per sample; an error, undecodable or empty response is a SUT error)."""
    first: dict[int, object] = {}
    for e, r in zip(entries, responses):
        first.setdefault(e.qsl_idx, r)
    rs = list(first.values())
    good = [r for r in rs if not isinstance(r, str)]
    n = max(len(rs), 1)
    derived = {"samples": len(rs), "mean_attempts": sum(r.n_attempts for r in good) / n,
               "tokens_per_sample": sum(r.n_tokens for r in good) / n,
               "sut_errors": sum(isinstance(r, str) or r.error is not None or not r.attempts for r in rs)}
    shown = dict(re.findall(r"([A-Za-z_@0-9]+)=([-+0-9.eE]+)", txt.read_text().splitlines()[0]))
    for key, value in derived.items():
        if key in shown:
            decimals = len(shown[key].split(".", 1)[1]) if "." in shown[key] else 0
            if abs(float(shown[key]) - value) > 0.5 * 10 ** -decimals + 1e-9:
                c.fail("accuracy-figures", txt, f"{key}={shown[key]} but the accuracy log gives {value:.4f}")
    # A cheap guard on an edited pass@final: the SUT's own verdicts on the final attempts
    # (informational, but an honest sandbox agrees within a flaky sample or two); --rescore is exact.
    inloop = sum(bool(r.attempts) and r.attempts[-1].status == "passed" and not r.error for r in good) / n
    if c.accuracy is not None and abs(c.accuracy - inloop) > max(0.02, 2 / n):
        c.fail("accuracy-figures", txt, f"pass@final={c.accuracy:.4f} but the logged responses' own verdicts give "
                                        f"{inloop:.4f}; confirm with --rescore")


def _check_records_acc(c: ScenarioCheck, path: Path, entries: list, responses: list) -> None:
    try:
        records = read_records(path)
    except FileProblem as e:
        c.fail("agent-records", path, str(e))
        return
    if Counter(r["qsl_idx"] for r in records) != Counter(e.qsl_idx for e in entries):
        c.fail("agent-records", path, f"{len(records)} records do not cover the accuracy log's {len(entries)} samples one to one")
        return
    by_idx = {r["qsl_idx"]: r for r in records}
    for e, resp in zip(entries, responses):
        r = by_idx[e.qsl_idx]
        if isinstance(resp, str):
            continue
        if (r["task_id"], r["n_tokens"], len(r["attempts"])) != (resp.task_id, resp.n_tokens, resp.n_attempts) or \
                (e.token_count is not None and e.token_count != resp.n_tokens):
            c.fail("agent-records", path, f"sample {e.qsl_idx}: record says {r['task_id']}, {r['n_tokens']} tokens, "
                                          f"{len(r['attempts'])} attempts; LoadGen logged {resp.task_id}, {resp.n_tokens} "
                                          f"tokens (token_count {e.token_count}), {resp.n_attempts} attempts")
            return
    _check_stats(c, path.parent / "sut_stats.json", len(records))


def _rescore(c: ScenarioCheck, log_path: Path, txt: Path, metrics: dict[str, float]) -> None:
    try:
        again = rescore_log(log_path, suite=c.suite)
    except RuntimeError as e:
        c.fail("accuracy-rescore", log_path, str(e))
        return
    for key in ("pass@1", "pass@final"):
        if key in metrics and abs(again.get(key, -1) - metrics[key]) > 1e-4:
            c.fail("accuracy-rescore", txt, f"{key}={metrics[key]} but re-scoring the log gives {again.get(key)}")


def _check_audits(c: ScenarioCheck, ref: Reference | None, rescore: bool) -> None:
    from harness.audit_verify import AUDIT_TESTS, recorded_verdict, verify_audit  # noqa: PLC0415

    for test in AUDIT_TESTS:
        d = c.folder / test
        if not d.is_dir():
            c.audits[test] = "-"
            continue
        verdict = verify_audit(test, c.folder, ref, rescore=rescore)
        recorded, vfile = recorded_verdict(test, d)
        c.audits[test] = "PASS" if verdict.passed and recorded is True else "FAIL"
        if recorded is None:
            c.fail(f"audit-{test}", vfile, "no verdict: the file is missing or does not end in TEST PASS / TEST FAIL")
        elif recorded != verdict.passed:
            c.fail(f"audit-{test}", vfile, f"says TEST {'PASS' if recorded else 'FAIL'} but re-verifying the audit "
                                           f"gives TEST {'PASS' if verdict.passed else 'FAIL'}: {verdict.reason}")
        elif not verdict.passed:
            c.fail(f"audit-{test}", vfile, f"TEST FAIL: {verdict.reason}")


def _classify(c: ScenarioCheck, perf: DetailLog | None, measurements: dict, bound: dict | None, reference: Path) -> None:
    """official / quick / invalid, from the logs; an --official claim that the logs do not bear out fails."""
    if perf is None or not c.passed:
        c.run_class = "invalid"
    v, why = perf.get if perf else (lambda k, d=None: d), []
    if int(v("effective_min_duration_ms", 0) or 0) < OFFICIAL_MIN_DURATION_MS:
        why.append(f"min_duration {v('effective_min_duration_ms')} ms < {OFFICIAL_MIN_DURATION_MS}")
    if c.scenario != "Offline" and int(v("effective_min_query_count", 0) or 0) < OFFICIAL_MIN_QUERY_COUNT:
        why.append(f"min_query_count {v('effective_min_query_count')} < {OFFICIAL_MIN_QUERY_COUNT}")
    if v("effective_max_duration_ms", 0) or v("effective_max_query_count", 0):
        why.append("max_duration / max_query_count set")
    if int(v("qsl_reported_total_count", 0) or 0) != EVAL_SIZE:
        why.append(f"{v('qsl_reported_total_count')} of the {EVAL_SIZE} evaluation tasks (--count)")
    if c.scenario == "Server" and abs(float(v("effective_target_latency_ns", 0) or 0) - SERVER_TARGET_LATENCY_MS * 1e6) > 1:
        why.append(f"Server target_latency is not the benchmark's {SERVER_TARGET_LATENCY_MS} ms")
    engine = (bound or {}).get("engine") or measurements.get("engine") or {}
    budget = DEFAULTS[c.suite]   # the agent budget the suite's reference figures were recorded with
    if str(engine.get("max_attempts", "")) != str(budget.max_attempts):
        why.append(f"max_attempts {engine.get('max_attempts', '?')} is not the {c.suite} suite's {budget.max_attempts}")
    if "max_new_tokens" in engine and str(engine["max_new_tokens"]) != str(budget.max_new_tokens):
        why.append(f"max_new_tokens {engine['max_new_tokens']} is not the {c.suite} suite's {budget.max_new_tokens}")
    other = not_the_reference(bound, reference)
    if other:
        why.append(other)
    missing = [t for t, s in c.audits.items() if s != "PASS"]
    if missing:
        why.append(f"audits not passed: {', '.join(missing)}")
    if not measurements.get("official"):
        why.append("not run with --official")
    elif why:
        c.fail("official", c.folder / "measurements.json", "the run claims --official but " + "; ".join(why))
    c.not_official = why
    if c.passed:
        c.run_class = "quick" if why else "official"
