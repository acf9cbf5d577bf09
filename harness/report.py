"""Write a Markdown report with plots for a results tree: ``python harness/report.py RESULTS_DIR``.

    RESULTS_DIR/report/report.md          figures per system and scenario, where the time goes
    RESULTS_DIR/report/<system>_*.png      the plots the report embeds

Figures come from LoadGen's detail logs (throughput, latency percentiles) and from the
agent's own records (agent_records.jsonl: per-attempt prefill, decode and verify times,
context lengths, tokens). Queueing is LoadGen's mean latency minus the agent's mean time
on a sample: the time a task waited for a batch slot, a worker, or the SUT's threads.
The report describes; ``harness/check_submission.py`` judges.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python harness/report.py` puts harness/, not the repo, on sys.path
    sys.path.insert(0, str(REPO))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from harness.mlperf_log import DetailLog, LogError, metric_of, read_detail, read_trace_latencies  # noqa: E402
from harness.results import BENCHMARK  # noqa: E402
from harness.scenario_files import FileProblem, engine_description, read_accuracy_txt, read_records, run_engine, run_suite  # noqa: E402
from verifier.output_guard import refuse_overwrite  # noqa: E402

SCENARIOS = ("SingleStream", "Server", "Offline")
COLORS = {"SingleStream": "tab:blue", "Server": "tab:orange", "Offline": "tab:green"}
PCTS = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")
# (samples/s key, tokens/s key) per scenario in the detail log
RATE_KEYS = {"Offline": ("result_samples_per_second", "result_tokens_per_second"),
             "Server": ("result_completed_samples_per_sec", "result_completed_tokens_per_second"),
             "SingleStream": ("result_qps_with_loadgen_overhead", "result_completed_tokens_per_second")}


@dataclass
class ScenarioData:
    scenario: str
    detail: DetailLog | None = None                      # the performance run's detail log
    perf_records: list[dict] = field(default_factory=list)
    acc_records: list[dict] = field(default_factory=list)
    accuracy: dict[str, float] = field(default_factory=dict)
    trace_ns: list[float] | None = None
    suite: str = "basic"                                 # the task suite its run_config.json records
    engine: str = "native"                               # who generated (scenario_files.run_engine)
    problems: list[str] = field(default_factory=list)

    def rate(self, which: int) -> float:
        key = RATE_KEYS[self.scenario][which]
        return float(self.detail.get(key, 0) or 0) if self.detail else 0.0


def load_scenario_data(folder: Path) -> ScenarioData:
    """Whatever of the scenario's files can be read; what cannot is noted, not fatal."""
    d = ScenarioData(folder.name)
    perf, acc = folder / "performance" / "run_1", folder / "accuracy"
    try:
        d.detail = read_detail(perf / "mlperf_log_detail.txt")
    except LogError as e:
        d.problems.append(str(e))
    for attr, path in (("perf_records", perf / "agent_records.jsonl"), ("acc_records", acc / "agent_records.jsonl")):
        try:
            setattr(d, attr, read_records(path))
        except FileProblem as e:
            d.problems.append(str(e))
    try:
        d.accuracy = read_accuracy_txt(acc / "accuracy.txt")[0]
    except FileProblem as e:
        d.problems.append(str(e))
    d.trace_ns = read_trace_latencies(perf / "mlperf_log_trace.json")
    try:
        d.suite = run_suite(folder)
        d.engine = run_engine(folder)
    except FileProblem as e:
        d.problems.append(str(e))
    return d


def _attempts(records: list[dict]) -> list[dict]:
    return [a for r in records for a in r["attempts"]]


def _agent_ms(r: dict) -> float:
    return sum(a["prefill_ms"] + a["decode_ms"] + a["verify_ms"] for a in r["attempts"])


def breakdown(d: ScenarioData) -> dict[str, float]:
    """Mean ms per sample: prefill, decode, verify (agent records) and queueing (LoadGen latency - agent time)."""
    n = max(len(d.perf_records), 1)
    out = {k: sum(a[f"{k}_ms"] for a in _attempts(d.perf_records)) / n for k in ("prefill", "decode", "verify")}
    lg_mean = float(d.detail.get("result_mean_latency_ns", 0) or 0) / 1e6 if d.detail else 0.0
    out["queueing"] = max(0.0, lg_mean - sum(out.values())) if d.detail else 0.0
    return out


def plot_attempt_cost(data: list[ScenarioData], path: Path) -> None:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for d in data:
        att = _attempts(d.perf_records)
        if not att:
            continue
        ax1.scatter([a["prompt_tokens"] for a in att], [a["prefill_ms"] + a["decode_ms"] + a["verify_ms"] for a in att],
                    s=8, alpha=0.5, color=COLORS[d.scenario], label=d.scenario)
        ax2.scatter([a["prefilled_tokens"] for a in att], [a["prefill_ms"] for a in att], s=8, alpha=0.5,
                    color=COLORS[d.scenario], label=d.scenario)
    ax1.set(xlabel="context length at the attempt's start (tokens)", ylabel="attempt time: prefill + decode + verify (ms)",
            title="Per-attempt latency vs context")
    ax2.set(xlabel="tokens prefilled (context not already in the KV cache)", ylabel="prefill time (ms)",
            title="Prefill cost vs tokens prefilled")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def attempts_histogram(records: list[dict], max_attempts: int) -> tuple[list[str], list[int]]:
    """Tasks solved at attempt 1..max, and unsolved (the accuracy run: each task once)."""
    solved = [len(r["attempts"]) for r in records if r.get("passed")]
    labels = [str(k) for k in range(1, max_attempts + 1)] + ["unsolved"]
    return labels, [solved.count(k) for k in range(1, max_attempts + 1)] + [sum(not r.get("passed") for r in records)]


def plot_attempts(records: list[dict], source: str, path: Path) -> None:
    top = max([len(r["attempts"]) for r in records] + [1])
    labels, counts = attempts_histogram(records, top)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    bars = ax.bar(labels, counts, color=["tab:green"] * (len(labels) - 1) + ["tab:red"])
    ax.bar_label(bars)
    ax.margins(y=0.12)
    ax.set(xlabel="attempts needed to pass", ylabel="tasks", title=f"Attempts to correct ({source})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency_cdf(data: list[ScenarioData], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for d in data:
        if d.detail is None:
            continue
        c = COLORS[d.scenario]
        if d.trace_ns:
            xs = sorted(t / 1e6 for t in d.trace_ns)
            ax.step(xs, [(i + 1) / len(xs) for i in range(len(xs))], where="post", color=c, label=f"{d.scenario} (LoadGen)")
        else:
            v = d.detail.get
            pts = [(float(v("result_min_latency_ns", 0)) / 1e6, 0.0)] + \
                [(float(v(f"result_{p}_percentile_latency_ns", 0)) / 1e6, float(p) / 100) for p in PCTS] + \
                [(float(v("result_max_latency_ns", 0)) / 1e6, 1.0)]
            ax.plot(*zip(*pts), marker="o", color=c, label=f"{d.scenario} (LoadGen percentiles)")
        agent = sorted(_agent_ms(r) for r in d.perf_records)
        if agent:
            ax.step(agent, [(i + 1) / len(agent) for i in range(len(agent))], where="post", color=c, ls="--",
                    alpha=0.7, label=f"{d.scenario} (agent's own time)")
    ax.set_xscale("log")
    ax.set(xlabel="latency per task (ms, log scale)", ylabel="fraction of samples", title="Latency CDF by scenario")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tokens(records: list[dict], path: Path) -> None:
    by: dict[int, list[int]] = {}
    for a in _attempts(records):
        by.setdefault(a["attempt"], []).append(a["gen_tokens"])
    keys = sorted(by)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if keys:
        ax.boxplot([by[k] for k in keys], tick_labels=[str(k + 1) for k in keys])
        ax.plot(range(1, len(keys) + 1), [statistics.fmean(by[k]) for k in keys], "o-", color="tab:red", label="mean")
        ax.legend()
    ax.set(xlabel="attempt", ylabel="tokens generated", title="Tokens per attempt")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_throughput(data: list[ScenarioData], path: Path) -> None:
    shown = [d for d in data if d.detail is not None]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, which, label in ((ax1, 0, "samples/s"), (ax2, 1, "tokens/s")):
        bars = ax.bar([d.scenario for d in shown], [d.rate(which) for d in shown],
                      color=[COLORS[d.scenario] for d in shown])
        ax.bar_label(bars, fmt=lambda v: f"{v:,.0f}" if v >= 100 else f"{v:.3g}")
        ax.margins(y=0.12)
        ax.set(ylabel=label, title=f"Throughput: {label}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_breakdown(data: list[ScenarioData], path: Path) -> None:
    """Shares of a task's LoadGen latency, stacked to 100%, with the mean latency above each bar:
    absolute bars would hide everything under Offline's queueing (its whole query is issued at once)."""
    shown = [d for d in data if d.perf_records]
    parts = {"prefill": "tab:blue", "decode": "tab:orange", "verify": "tab:green", "queueing": "tab:gray"}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    rows = [breakdown(d) for d in shown]
    totals = [max(sum(r.values()), 1e-9) for r in rows]
    bottom = [0.0] * len(shown)
    for part, color in parts.items():
        vals = [100 * r[part] / t for r, t in zip(rows, totals)]
        ax.bar([d.scenario for d in shown], vals, bottom=bottom, color=color, label=part)
        bottom = [b + v for b, v in zip(bottom, vals)]
    for i, t in enumerate(totals):
        ax.text(i, 101, f"{t:.4g} ms", ha="center", va="bottom", fontsize=9)
    ax.set_ylim(0, 112)
    ax.set(ylabel="% of the mean LoadGen latency per task", title="Where the time goes (performance runs)")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(data: list[ScenarioData]) -> list[str]:
    lines = ["| scenario | suite | engine | result | metric | samples/s | tokens/s | p50 / p90 / p99 latency (ms) | pass@1 "
             "| pass@final | mean attempts |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d in data:
        if d.detail is None:
            lines.append(f"| {d.scenario} | {d.suite} | {d.engine} | unreadable | | | | | | | |")
            continue
        v = d.detail.get
        metric, value = metric_of(d.detail)
        pct = " / ".join(f"{float(v(f'result_{p}_percentile_latency_ns', 0)) / 1e6:.1f}" for p in ("50.00", "90.00", "99.00"))
        a = d.accuracy
        lines.append(f"| {d.scenario} | {d.suite} | {d.engine} | {v('result_validity')} | {metric} {value:.4g} | {d.rate(0):.3g} | {d.rate(1):.4g} "
                     f"| {pct} | {a.get('pass@1', float('nan')):.3f} | {a.get('pass@final', float('nan')):.3f} "
                     f"| {a.get('mean_attempts', float('nan')):.2f} |")
    return lines


def attempt_table(records: list[dict]) -> list[str]:
    """One row per attempt index: how many, context, tokens, time split, and how many passed."""
    by: dict[int, list[dict]] = {}
    for a in _attempts(records):
        by.setdefault(a["attempt"], []).append(a)
    lines = ["| attempt | count | mean context (tokens) | mean generated | prefill ms | decode ms | verify ms | KV KiB "
             "| passed |", "|---|---|---|---|---|---|---|---|---|"]
    for k in sorted(by):
        rows = by[k]
        mean = lambda key: statistics.fmean(r[key] for r in rows)  # noqa: E731
        lines.append(f"| {k + 1} | {len(rows)} | {mean('prompt_tokens'):.0f} | {mean('gen_tokens'):.1f} "
                     f"| {mean('prefill_ms'):.1f} | {mean('decode_ms'):.1f} | {mean('verify_ms'):.1f} "
                     f"| {mean('kv_bytes') / 1024:.0f} | {sum(r['status'] == 'passed' for r in rows)} |")
    return lines


def report_system(system_dir: Path, out: Path) -> list[str]:
    """The report section for one system; writes its PNGs into ``out``."""
    bench = system_dir / BENCHMARK
    data = [load_scenario_data(bench / s) for s in SCENARIOS if (bench / s).is_dir()]
    name = system_dir.name
    md = [f"## {name}", "", *_table(data), ""]
    engines = []
    for d in data:
        try:
            engines.append(f"- {d.scenario}: {engine_description(bench / d.scenario)}")
        except FileProblem:
            continue
    if engines:
        md += ["Who generated:", "", *engines, ""]
    acc_source = next((d for d in data if d.acc_records), None)
    plots = [("attempt_cost", "Per-attempt latency and prefill cost against context length", plot_attempt_cost, data),
             ("latency_cdf", "Latency CDF per scenario", plot_latency_cdf, data),
             ("throughput", "Throughput by scenario", plot_throughput, data),
             ("time_breakdown", "Where the time goes", plot_breakdown, data)]
    if acc_source is not None:
        plots[1:1] = [("attempts", "Attempts to correct",
                       lambda recs, p: plot_attempts(recs, f"{acc_source.scenario} accuracy run", p), acc_source.acc_records),
                      ("tokens_per_attempt", "Tokens per attempt", plot_tokens, acc_source.acc_records)]
    if acc_source is not None:
        md += [f"### Attempts, one row per retry ({acc_source.scenario} accuracy run, each task once)", "",
               *attempt_table(acc_source.acc_records), ""]
    for stem, title, fn, arg in plots:
        png = out / f"{name}_{stem}.png"
        fn(arg, png)
        md += [f"### {title}", "", f"![{title}]({png.name})", ""]
    md += ["### Where the time goes (mean ms per task)", "", "| scenario | prefill | decode | verify | queueing | "
           "LoadGen mean latency |", "|---|---|---|---|---|---|"]
    for d in data:
        if d.perf_records and d.detail is not None:
            b = breakdown(d)
            md.append(f"| {d.scenario} | {b['prefill']:.1f} | {b['decode']:.1f} | {b['verify']:.1f} | {b['queueing']:.1f} "
                      f"| {float(d.detail.get('result_mean_latency_ns', 0)) / 1e6:.1f} |")
    notes = [p for d in data for p in d.problems]
    if notes:
        md += ["", "Not shown (missing or unreadable):", "", *[f"- {p}" for p in notes]]
    return md + [""]


def write_report(root: Path, out: Path | None = None) -> Path:
    out = out or root / "report"
    out.mkdir(parents=True, exist_ok=True)
    systems = sorted(p for p in root.iterdir() if (p / BENCHMARK).is_dir())
    if not systems:
        raise FileProblem(f"{root}: no <system>/{BENCHMARK}/ folders; pass the --out folder of harness/run.py")
    md = ["# nano-codegen-agent results", "",
          f"Results tree `{root}`. Queueing = LoadGen's mean latency minus the agent's own time per task "
          "(prefill + decode + verify); the dashed CDFs are the agent's own time, so the gap to the solid "
          "line is time spent waiting. Validity here is LoadGen's; `python harness/check_submission.py` "
          "applies every rule.", ""]
    for s in systems:
        md += report_system(s, out)
    path = out / "report.md"
    path.write_text("\n".join(md))
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="output folder (default RESULTS_DIR/report, the report's own, rewritten on every run; "
                        "another folder must be new or empty)")
    p.add_argument("--force", action="store_true", help="write into an --out folder that already holds files")
    args = p.parse_args(argv)
    if args.out is not None and args.out.resolve() != (args.results_dir / "report").resolve():
        refuse_overwrite(args.out, args.force, "--out")   # one line, exit 2, nothing written
    if not args.results_dir.is_dir():
        print(f"error: {args.results_dir} is not a directory; pass the --out folder of harness/run.py", file=sys.stderr)
        return 2
    try:
        path = write_report(args.results_dir, args.out)
    except FileProblem as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
