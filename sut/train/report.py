"""The training report beside a checkpoint: loss.png and report.md (metrics.json is written by checkpoint)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_loss(path: Path, curve: Sequence[tuple[int, float]], val_curve: Sequence[tuple[int, float]]) -> None:
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    if curve:
        steps, losses = zip(*curve)
        w = max(1, len(losses) // 100)  # running mean so the trend is readable
        smooth = [sum(losses[max(0, i - w + 1): i + 1]) / len(losses[max(0, i - w + 1): i + 1]) for i in range(len(losses))]
        ax.plot(steps, losses, color="#bbbbbb", linewidth=0.6, label="train (per step)")
        ax.plot(steps, smooth, color="#1f77b4", label=f"train (mean of {w})")
    if val_curve:
        vs, vl = zip(*val_curve)
        ax.plot(vs, vl, "o-", color="#d62728", markersize=3, label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on code tokens (nats/token)")
    ax.set_title("Nano-CodeGen training loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(out: Path, metrics: dict[str, Any], curve: Sequence[tuple[int, float]],
                 val_curve: Sequence[tuple[int, float]], train_cfg: dict[str, Any], model_cfg: dict[str, Any]) -> None:
    plot_loss(out / "loss.png", curve, val_curve)

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.1f}%"

    lines = [
        "# Nano-CodeGen training report",
        "",
        f"Command: `{metrics['command']}`  ",
        f"Commit: `{metrics['commit']}`  ",
        f"CPU: {metrics['cpu']}, torch threads {metrics['threads']}",
        "",
        "| figure | value |",
        "|---|---|",
        f"| parameters | {metrics['n_params']:,} |",
        f"| wall time | {metrics['wall_s']:.0f} s (data {metrics['data_s']:.0f} s, train {metrics['train_s']:.0f} s, "
        f"validate {metrics['validate_s']:.0f} s) |",
        f"| tokens seen (incl. padding) | {metrics['tokens_seen']:,} |",
        f"| tokens under the loss | {metrics['loss_tokens']:,} |",
        f"| final train loss (EMA) | {metrics['final_train_loss']:.4f} |",
        f"| final validation loss | {metrics['final_val_loss']:.4f} |" if metrics["final_val_loss"] is not None else "",
        f"| validation pass@1 ({metrics['val_tasks']} tasks) | {pct(metrics['val_pass@1'])} |",
        f"| validation pass@final | {pct(metrics['val_pass@final'])} |",
        f"| validation mean attempts | {metrics['val_mean_attempts']:.2f} |",
        "",
        "![loss](loss.png)",
        "",
        "## Model config",
        "",
        "```json",
        json.dumps(model_cfg, indent=2),
        "```",
        "",
        "## Train config",
        "",
        "```json",
        json.dumps(train_cfg, indent=2),
        "```",
        "",
    ]
    (out / "report.md").write_text("\n".join(line for line in lines if line is not None) + "\n", encoding="utf-8")


def write_validation_report(out: Path, metrics: dict[str, Any]) -> None:
    """The agentic recipe's validation figures beside the loss: pass@1 and pass@final by step
    (validation.png) and the final attempts histogram (attempts.png), appended to report.md."""
    curve, hist = metrics["val_pass_curve"], metrics["val_attempts_histogram"]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), dpi=100)
    steps = [r["step"] for r in curve]
    ax.plot(steps, [r["pass@1"] for r in curve], "o-", label="pass@1")
    ax.plot(steps, [r["pass@final"] for r in curve], "s-", label=f"pass@final ({len(hist)} attempts)")
    ax.set(xlabel="step", ylabel=f"share of {metrics['val_tasks']} validation tasks", ylim=(0, 1),
           title="Validation by step (the batched engine, real sandbox)")
    ax.grid(alpha=0.3)
    ax.legend()
    unsolved = metrics["val_tasks"] - sum(hist)
    labels = [str(k) for k in range(1, len(hist) + 1)] + ["unsolved"]
    bars = bx.bar(labels, [*hist, unsolved], color=["tab:green"] * len(hist) + ["tab:red"])
    bx.bar_label(bars)
    bx.set(xlabel="attempts needed", ylabel="validation tasks", title="Attempts histogram at the last step")
    fig.tight_layout()
    fig.savefig(out / "validation.png")
    plt.close(fig)
    rows = ["", "## Validation by step", "", "| step | pass@1 | pass@final | mean attempts |", "|---|---|---|---|"]
    rows += [f"| {r['step']} | {r['pass@1']:.3f} | {r['pass@final']:.3f} | {r['mean_attempts']:.2f} |" for r in curve]
    rows += ["", f"Attempts needed at the last step (1..{len(hist)}, then unsolved): {', '.join(map(str, hist))}, "
             f"{unsolved}.", "", "![validation](validation.png)", ""]
    with open(out / "report.md", "a", encoding="utf-8") as f:
        f.write("\n".join(rows))
