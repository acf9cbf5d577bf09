"""Server ``--find-peak``: the highest arrival rate whose whole-task p99 meets the bound.

The search is LoadGen's own FindPeakPerformance mode, in one process with a warm engine:
it checks the configured ``target_qps`` (the lower bound: it must pass), doubles it until a
run fails, then bisects to ``--find-peak-decimals`` decimal places. Each trial runs for
``min_duration`` and ``min_query_count`` as configured; LoadGen judges a trial only by the
latency percentile against ``target_latency`` (not by duration or early stopping), so the
peak is a search result to confirm with a normal performance run at that rate.

Token latencies are switched off for the search (harness/lg_run.py): in token mode LoadGen
would judge TTFT/TPOT, while this benchmark's bound is the whole task (every attempt and
its verification). Results: ``<Scenario>/find_peak/`` holds LoadGen's logs of the search
(the summary is the run at the peak) and ``find_peak.json``.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.mlperf_log import DetailLog

_BASE = re.compile(r"FindPeakPerformance: Check validity of the base settings field: ([\d.]+)")
_WIDEN = re.compile(r"FindBoundaries: Checking fields \[([\d.]+), ([\d.]+)\)")
_MID = re.compile(r"FindPeakPerformanceBinarySearch: Testing the mid value of bounds \[[\d.]+, [\d.]+\): ([\d.]+)")
_PEAK = re.compile(r"FindPeakPerformance: Found peak performance field: ([\d.]+)")
_BASE_FAILED = "Initial lower bound does not satisfy"


class SearchError(RuntimeError):
    """A search that found no peak; the message says why and what to change."""


@dataclass
class PeakSearch:
    peak_qps: float
    trials: list[dict[str, float | bool]] = field(default_factory=list)   # in order: qps, met

    def to_json(self) -> dict:
        return asdict(self)


def parse_search(detail: DetailLog) -> PeakSearch:
    """The tested rates and the peak from LoadGen's detail-log messages.

    LoadGen logs which rate each trial ran, not its verdict; the verdict follows from the
    search itself: a trial passed exactly when its rate is at most the final peak (the lower
    bound only ever moves up to a passing rate, and every later trial lies below a failure).
    """
    if any(_BASE_FAILED in e for e in detail.errors):
        base = next((float(m.group(1)) for m in map(_BASE.search, detail.messages) if m), float("nan"))
        raise SearchError(f"the starting rate target_qps = {base:g} already misses the latency bound; "
                          "set a lower nano-codegen-agent.Server.target_qps in user.conf")
    rates: list[float] = []
    peak = None
    for msg in detail.messages:
        if m := _BASE.search(msg):
            rates.append(float(m.group(1)))
        elif m := _WIDEN.search(msg):
            rates.append(float(m.group(2)))
        elif m := _MID.search(msg):
            rates.append(float(m.group(1)))
        elif m := _PEAK.search(msg):
            peak = float(m.group(1))
    if peak is None:
        raise SearchError(f"{detail.path}: LoadGen logged no peak (the search did not finish; see harness.log)")
    return PeakSearch(peak, [{"qps": q, "met": q <= peak} for q in rates])


def write_result(out_dir: Path, search: PeakSearch, detail: DetailLog, decimals: int) -> Path:
    """find_peak.json: the peak, every trial, the bound and the trial length that produced them."""
    v = detail.get
    record = {
        **search.to_json(),
        "target_latency_ms": float(v("effective_target_latency_ns", 0) or 0) / 1e6,
        "target_latency_percentile": v("effective_target_latency_percentile"),
        "decimals_of_precision": decimals,
        "min_duration_ms": v("effective_min_duration_ms"),
        "min_query_count": v("effective_min_query_count"),
        "peak_run_p99_ms": float(v("result_99.00_percentile_latency_ns", 0) or 0) / 1e6 or None,
        "user_conf_line": f"nano-codegen-agent.Server.target_qps = {search.peak_qps:g}",
    }
    path = out_dir / "find_peak.json"
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def print_search(search: PeakSearch, path: Path) -> None:
    tried = "  ".join(f"{t['qps']:g}{'' if t['met'] else ' (missed)'}" for t in search.trials)
    print("\n".join(["=" * 60, "scenario      Server (find peak)",
                     f"trials        {tried}",
                     f"peak          {search.peak_qps:g} queries/s meet the whole-task p99 bound",
                     f"to use it     nano-codegen-agent.Server.target_qps = {search.peak_qps:g}  (user.conf)",
                     f"files         {path.parent}", "=" * 60]))
