"""engine_peers' printed tables and its plot."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from benchmarks.peers import ENGINES, LABELS


def fmt(x: Any, spec: str = ".0f") -> str:
    return format(x, spec) if isinstance(x, (int, float)) and math.isfinite(x) else "-"


def report(r: dict[str, Any]) -> None:
    """Print the machine, then every section's tables, then the sections that failed."""
    m = r["machine"]
    print(f"\nmachine: {m['cpu']} ({m['cores']} cores), torch {m['torch']}, vLLM {m['vllm']}, python {m['python']}; "
          f"load average {m['loadavg_start'][0]:.1f} -> {m['loadavg_end'][0]:.1f}")
    print(f"threads: native {m['native_threads']} (its step is single-threaded C); vLLM {m.get('vllm_threads', '?')} "
          f"(OpenMP{', --vllm-threads ' + str(m['vllm_threads_asked']) if m.get('vllm_threads_asked') else ''})")
    print("ratios are native / peer: above 1 ours is faster")
    for d in [r.get("decode"), *r.get("sweep", [])]:
        if d and "batches" in d:
            report_decode(d)
    if "overtake" in r:
        report_overtake(r["overtake"])
    ag = r.get("agent")
    if ag and "native" in ag:
        report_agent(ag)
    off = r.get("offline")
    if off and "native" in off:
        report_offline(off)
    for name, err in r.get("errors", {}).items():
        print(f"\nsection {name} FAILED: {err}")


def report_decode(d: dict[str, Any]) -> None:
    """One model's decode table: tokens/s, ratios and CPU by batch, greedy agreement, and any breakdowns."""
    print(f"\ndecode tokens/s, {d['model']} (width {d['width']}, {d['layers']} layers, {d['heads']} heads, "
          f"{d['params'] / 1e6:.2f}M params, window {d['window']}; prompt {d['prompt_tokens']}, "
          f"{d['new_tokens']} new tokens, greedy, forced length; load average {d['loadavg_start'][0]:.1f} -> "
          f"{d.get('loadavg_end', [float('nan')])[0]:.1f})")
    peers = [p for p in ("vllm", "server") if any(p in row for row in d["batches"].values())]
    head = f"  {'batch':>6} {'native':>9}" + "".join(f" {LABELS[p]:>11}" for p in peers)
    head += "".join(f" {'/' + LABELS[p]:>12}" for p in peers) + "   core-s per 1k tokens (" + ", ".join(
        ["native", *[LABELS[p] for p in peers]]) + ")"
    print(head)
    for b, row in d["batches"].items():
        line = f"  {b:>6} {fmt(row['native']['decode_tok_s']):>9}"
        line += "".join(f" {fmt(row.get(p, {}).get('decode_tok_s')):>11}" for p in peers)
        line += "".join(f" {fmt(row.get(f'ratio_{p}'), '.2f'):>12}" for p in peers)
        line += "   " + ", ".join(fmt(row.get(e, {}).get("cpu_s_per_1k_tokens"), ".2f") for e in ["native", *peers])
        print(line)
    agreed = {p: [row.get(f"greedy_agree_{p}") for row in d["batches"].values()] for p in peers}
    print("  greedy tokens row 0 shares with native, per batch: " + "; ".join(
        f"{LABELS[p]} {', '.join(fmt(x) for x in v)} of {d['new_tokens']}" for p, v in agreed.items()))
    for b, row in d["batches"].items():
        if "breakdown" in row:
            print_breakdown(b, row["breakdown"])


def report_overtake(overtake: dict[str, Any]) -> None:
    """Per batch, the sweep's ratios by width and where vLLM in process overtakes native."""
    print("\nwhere vLLM in process overtakes native (ratio native/vLLM below 1), random weights:")
    for b, o in overtake.items():
        ratios = ", ".join(f"width {w}: {x:.2f}" for w, x in o["ratios"].items())
        verdict = (f"first at width {o['first_width_vllm_faster']}" if o["first_width_vllm_faster"] else
                   "not within the widths measured")
        if o["crossing_width_interpolated"]:
            verdict += f" (crossing ~{o['crossing_width_interpolated']:.0f}, log-log interpolated)"
        print(f"  batch {b:>4}: {ratios} -> {verdict}")


def report_agent(ag: dict[str, Any]) -> None:
    """The agentic tasks/s table, one line per engine."""
    print(f"\nagentic tasks/s, first {ag['tasks']} tasks ({ag['max_attempts']} attempts, {ag['max_new_tokens']} "
          f"tokens; max batch {ag['max_batch']}; {ag['workers']} sandbox worker(s), {ag.get('isolation')})")
    print(f"  {'engine':<12} {'tasks/s':>8} {'native/it':>10} {'pass@1':>7} {'pass@final':>10} {'attempts':>9} "
          f"{'errors':>6} {'wall s':>7}")
    for e in ENGINES:
        if e in ag:
            x = ag[e]
            print(f"  {LABELS[e]:<12} {x['tasks_s']:>8.2f} {fmt(ag.get(f'ratio_{e}', 1.0), '.2f'):>10} "
                  f"{x['pass_1']:>7.3f} {x['pass_final']:>10.3f} {x['mean_attempts']:>9.2f} {x['errors']:>6} "
                  f"{x['wall_s']:>7.1f}")


def report_offline(off: dict[str, Any]) -> None:
    """The Offline runs' samples/s and validity, one line per engine."""
    print(f"\nOffline (harness/run.py, {off['count']} tasks; {', '.join(x.split('.', 1)[1] for x in off['user_conf'])})"
          ": samples/s")
    for e in ENGINES:
        if e in off:
            x = off[e]
            print(f"  {LABELS[e]:<12} {fmt(x.get('samples_s'), '.2f'):>8}  {x.get('samples', '?')} samples, "
                  f"{x.get('validity') or x.get('error', '')}"
                  f"{'' if e == 'native' else ', native/it ' + fmt(off.get(f'ratio_{e}'), '.2f')}"
                  f"{' (' + str(x['invalid_reason']) + ')' if x.get('invalid_reason') else ''}")


def print_breakdown(batch: str, bd: dict[str, Any]) -> None:
    n, v = bd["native"], bd["vllm"]
    print(f"  per decode step at batch {batch}, ms (native parts timed alone at context {n.get('context', '?')}; "
          f"vLLM hooked, {fmt(v.get('hooked_step'), '.2f')} ms a hooked step):")
    if "unavailable" in n or "unavailable" in v:
        print(f"    not measured: {n.get('unavailable') or v.get('unavailable')}")
    rows = [("step wall (unhooked, from the rates)", n.get("wall"), v.get("wall")),
            ("scheduling + engine bookkeeping", n.get("engine_loop"),
             sum(v.get(k, 0.0) for k in ("schedule", "update", "engine_other", "loop_other")) if "schedule" in v else None),
            ("  of which vLLM schedule / update", None, f"{fmt(v.get('schedule'), '.2f')} / {fmt(v.get('update'), '.2f')}"),
            ("model runner: inputs, outputs", None, v.get("runner_other")),
            ("matmuls (4 a layer)", n.get("matmul"), v.get("matmul")),
            ("LM head", n.get("lm_head"), v.get("lm_head")),
            ("attention", n.get("attention"), v.get("attention")),
            ("other model ops (LN, GELU, adds, KV write)", n.get("other_model"), v.get("other_model")),
            ("token choice (argmax / Sampler)", n.get("pick"), v.get("pick"))]
    for name, x, y in rows:
        ys = y if isinstance(y, str) else fmt(y, ".3f")
        print(f"    {name:<44} {fmt(x, '.3f'):>9} {ys:>13}")


def plot(r: dict[str, Any], path: Path) -> None:
    import matplotlib   # noqa: PLC0415
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt   # noqa: PLC0415

    models = [d for d in [r.get("decode"), *r.get("sweep", [])] if d and d.get("batches")]
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.8), squeeze=False)
    for ax, d in zip(axes[0], models):
        batches = [int(b) for b in d["batches"]]
        for e, style in zip(ENGINES, ("o-", "s-", "^--")):
            ys = [d["batches"][str(b)].get(e, {}).get("decode_tok_s") for b in batches]
            if any(y is not None for y in ys):
                ax.plot(batches, [y if y is not None else float("nan") for y in ys], style, label=LABELS[e])
        ax.set(xscale="log", yscale="log", xlabel="batch", ylabel="decode tokens/s",
               title=f"{d['model']}\nwidth {d['width']}, {d['layers']} layers")
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle(f"decode tokens/s, {r['machine']['cpu']}", fontsize=9)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
