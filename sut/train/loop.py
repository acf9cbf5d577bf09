"""Train Nano-CodeGen from scratch: tokenizer, then model, then a validation run of the agent.

    python -m sut.train --out checkpoints/reference          # the shipped recipe (basic suite)
    python -m sut.train --suite agentic --out checkpoints/agentic   # the agentic suite's (HF GPT-2 format)
    python -m sut.train --out /tmp/smoke --smoke             # < 60 s, for tests

Steps: draw training tasks; draft mistakes and verify them with the real sandbox pool
(the feedback the model learns to read is the verifier's own); learn the BPE; train
with AdamW and a warmup + cosine schedule on length-bucketed batches, loss only on
the correct attempt's code; run the agent loop on validation tasks; write the
checkpoint directory with report.md, loss.png and metrics.json.
"""
from __future__ import annotations

import os

# The cores are shared (sandbox workers, other jobs): OpenMP threads that spin while a
# sibling is descheduled made a 2-thread step 3x slower than a 1-thread one under load.
# Waiting passively keeps 2 threads' speed on an idle machine and 1 thread's under load.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import logging
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import Field, asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from sut.train import data as train_data
from sut.model import transcript as tr
from sut.agent import AgentConfig
from sut.model.checkpoint import git_commit, save_checkpoint
from sut.evaluate import evaluate_tasks, summarize
from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.platform_info import cpu_model
from sut.tasks.basic import generate_tasks
from sut.model.tokenizer import CodeTokenizer, train_tokenizer
from sut.train.report import write_report, write_validation_report
from verifier.output_guard import refuse_overwrite, staged_folder
from verifier.pool import SandboxPool
from verifier.probe import probe
from verifier.sandbox import ISOLATION_MODES, SandboxUnavailable

log = logging.getLogger("sut.train")


@dataclass
class TrainConfig:
    seed: int = 0
    steps: int = 6500
    batch_size: int = 24            # small batches: more updates per token (16/32/48 compared, docs/model.md)
    lr: float = 3e-3
    min_lr_frac: float = 0.1
    warmup: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    train_tasks: int = 20000
    mistakes_per_task: int = 2
    literal_mistakes: float = 0.0   # weight of the "literal" mistake kind (mis-copied prompt literals); 0 = off
    retry_mix: str = ""             # shares of 0..4 wrong attempts, e.g. "0.3,0.3,0.2,0.12,0.08"; "" = DEFAULT_MIX
    vocab_size: int = 1536
    sinusoidal_pos: bool = True     # start the learned position table from sinusoids (see sinusoidal_init)
    prefix_loss: bool = True        # wrong attempts' tokens before they depart from the answer are targets too
    tokenizer_tasks: int = 6000     # examples whose texts the BPE is learnt from
    val_tasks: int = 128            # agent run on validation tasks for pass@1 / pass@final
    val_max_new_tokens: int = AgentConfig.max_new_tokens
    val_loss_tasks: int = 256
    eval_every: int = 500
    threads: int = 2
    device: str = "cpu"
    verify_workers: int = 2
    isolation: str = "bwrap"        # the verifier sandbox: bwrap (fail closed) or process (explicit, weaker)
    suite: str = "basic"            # the task suite (sut/tasks/agentic/ for agentic): its data, model format, defaults
    bug_share: float = 0.2          # agentic: chance that an attempt is preceded by a slip (sut/train/agentic_data.py)
    val_max_attempts: int = 5       # attempts per validation task


# The agentic suite's recipe: longer transcripts (so fewer, smaller batches), a 2,048-token window and
# attempt markers instead of the retry-step embedding (an HF GPT-2 checkpoint, sut/model/hf_format.py).
AGENTIC = dict(steps=6000, batch_size=16, train_tasks=14000, mistakes_per_task=2, val_tasks=128, val_loss_tasks=128,
               val_max_attempts=8, val_max_new_tokens=256, eval_every=1500)
AGENTIC_MODEL = dict(block_size=2048, max_retries=0)


SMOKE = dict(steps=30, batch_size=16, train_tasks=300, mistakes_per_task=1, tokenizer_tasks=300, vocab_size=512,
             val_tasks=3, val_loss_tasks=32, val_max_new_tokens=16, eval_every=15, warmup=5)
SMOKE_MODEL = dict(n_layer=2, n_head=2, n_embd=64)
SMOKE_AGENTIC_MODEL = dict(n_layer=2, n_head=2, n_embd=64, block_size=1024, max_retries=0)


@torch.no_grad()
def sinusoidal_init(model: NanoCodeGen) -> None:
    """Start the learned position embedding from the Transformer's sinusoids, scaled to the
    token embedding's 0.02 RMS. Position i+1 is then a fixed linear map of position i,
    so the "previous token" and copying heads the code tasks need (lists, dicts, words
    copied from the prompt) work at every position at once instead of being learnt
    position by position; the table stays trainable."""
    T, C = model.wpe.weight.shape
    pos = torch.arange(T, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, C, 2, dtype=torch.float32) * (-math.log(10000.0) / C))
    table = torch.zeros(T, C)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    model.wpe.weight.copy_(table * 0.02 * math.sqrt(2))


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine decay to ``min_lr_frac`` of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_frac + (1 - cfg.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def masked_loss(model: NanoCodeGen, batches: list[train_data.Batch], device: str) -> float:
    model.eval()
    total = count = 0.0
    for idx, steps, targets, mask in batches:
        loss = model.loss(idx.to(device), steps.to(device), targets.to(device), mask.to(device))
        n = float(mask.sum())
        total, count = total + float(loss) * n, count + n
    model.train()
    return total / max(count, 1.0)


@dataclass
class Fitted:
    """What a training loop leaves behind for the report."""
    curve: list[tuple[int, float]]
    val_curve: list[tuple[int, float]]
    ema: float | None
    tokens_seen: int
    loss_tokens: int


def fit(model: NanoCodeGen, tok: CodeTokenizer, cfg: TrainConfig, val_batches: list[train_data.Batch],
        rng: random.Random, draw: Callable[[random.Random], list[tr.Piece]], desc: str = "train",
        on_eval: Callable[[int], None] | None = None) -> Fitted:
    """AdamW with warmup + cosine over ``cfg.steps`` steps; ``draw(rng)`` gives one pass of transcripts
    (called again whenever a pass is used up); ``on_eval(step)`` runs at each validation point. The
    from-scratch recipes and the self-repair phase (sut.train.self_repair) share it."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 and p.requires_grad]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    block_size = model.config.block_size
    out = Fitted([], [], None, 0, 0)
    batches: list[train_data.Batch] = []
    model.train()
    bar = tqdm(range(cfg.steps), desc=desc, unit="step", dynamic_ncols=True)
    for step in bar:
        if not batches:  # a new pass: redraw (how many mistakes each example shows, which ones)
            batches = train_data.make_batches(draw(rng), cfg.batch_size, tok.pad_id, rng, block_size)
        idx, steps, targets, mask = (t.to(cfg.device) for t in batches.pop())
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        loss = model.loss(idx, steps, targets, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        out.tokens_seen += idx.numel()
        out.loss_tokens += int(mask.sum())
        lv = loss.item()
        out.ema = lv if out.ema is None else 0.95 * out.ema + 0.05 * lv
        out.curve.append((step, lv))
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            out.val_curve.append((step + 1, masked_loss(model, val_batches, cfg.device)))
            if on_eval is not None:
                model.eval()
                on_eval(step + 1)
                model.train()
            bar.set_postfix(loss=f"{out.ema:.3f}", val=f"{out.val_curve[-1][1]:.3f}")
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{out.ema:.3f}")
    bar.close()
    model.eval()
    return out


def run_metrics(summary: dict, fitted: Fitted, model: NanoCodeGen, cfg: TrainConfig,
                times: tuple[float, float, float, float], module: str) -> dict:
    """metrics.json's figures for a training run (start, data ready, trained, validated times)."""
    t_start, t_data, t_train, t_end = times
    return {
        "val_pass@1": summary["pass@1"], "val_pass@final": summary["pass@final"],
        "val_mean_attempts": summary["mean_attempts"], "val_tasks": cfg.val_tasks,
        "final_train_loss": fitted.ema, "final_val_loss": fitted.val_curve[-1][1] if fitted.val_curve else None,
        "tokens_seen": fitted.tokens_seen, "loss_tokens": fitted.loss_tokens, "n_params": model.num_params(),
        "wall_s": round(t_end - t_start, 1), "data_s": round(t_data - t_start, 1),
        "train_s": round(t_train - t_data, 1), "validate_s": round(t_end - t_train, 1),
        "threads": cfg.threads, "cpu": cpu_model(), "commit": git_commit(),
        "command": f"python -m {module} " + " ".join(sys.argv[1:]),
    }


def train(out: Path, cfg: TrainConfig, mcfg: GPTConfig) -> dict:
    t_start = time.perf_counter()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    log.info("torch threads: %d (the machine's cores are shared with the sandbox workers)", cfg.threads)
    rng = random.Random(cfg.seed)

    if cfg.suite == "agentic":
        return train_agentic(out, cfg, mcfg, t_start, rng)
    tasks = train_data.take_train_tasks(cfg.train_tasks, cfg.seed)
    val = generate_tasks("val", max(cfg.val_tasks, cfg.val_loss_tasks), cfg.seed)
    log.info("drew %d training and %d validation tasks", len(tasks), len(val))
    with SandboxPool(workers=cfg.verify_workers, timeout_s=2.0, isolation=cfg.isolation) as pool:
        log.info("sandbox pool up: %s", pool.isolation)
        examples = train_data.build_examples(tasks, pool, cfg.mistakes_per_task, cfg.seed, cfg.literal_mistakes)
        val_examples = train_data.build_examples(val[:cfg.val_loss_tasks], pool, 2, cfg.seed + 1,
                                                 cfg.literal_mistakes)
    t_data = time.perf_counter()

    tok = train_tokenizer(train_data.tokenizer_corpus(examples[:cfg.tokenizer_tasks]), cfg.vocab_size)
    mcfg.vocab_size = tok.vocab_size
    log.info("tokenizer: %d tokens", tok.vocab_size)

    model = NanoCodeGen(mcfg)
    if cfg.sinusoidal_pos:
        sinusoidal_init(model)
    model.to(cfg.device)
    log.info("model: %d parameters, %s", model.num_params(), mcfg)
    val_batches = train_data.make_batches(
        train_data.draw_transcripts(tok, val_examples, random.Random(cfg.seed), block_size=mcfg.block_size),
        cfg.batch_size, tok.pad_id, random.Random(0), mcfg.block_size)
    mix = retry_mix(cfg)
    fitted = fit(model, tok, cfg, val_batches, rng,
                 lambda r: train_data.draw_transcripts(tok, examples, r, mix=mix, block_size=mcfg.block_size,
                                                       prefix_loss=cfg.prefix_loss))
    t_train = time.perf_counter()

    with SandboxPool(workers=cfg.verify_workers, timeout_s=2.0, isolation=cfg.isolation) as pool:
        summary = evaluate_tasks(model, tok, pool, val[:cfg.val_tasks], AgentConfig(max_new_tokens=cfg.val_max_new_tokens, seed=cfg.seed), cfg.device,
                                 desc="validate")
    t_end = time.perf_counter()
    metrics = run_metrics(summary, fitted, model, cfg, (t_start, t_data, t_train, t_end), "sut.train")
    save_checkpoint(out, model, tok, mcfg, asdict(cfg), metrics)
    write_report(out, metrics, fitted.curve, fitted.val_curve, asdict(cfg), mcfg.to_dict())
    return metrics


def fitting(tok: CodeTokenizer, examples: list, block_size: int) -> list:
    """The agentic examples whose whole transcript fits ``block_size`` (the others are dropped, and
    counted); ValueError if a task's prompt and solution alone do not fit: no trimming could train it."""
    from sut.train import agentic_data as transcripts  # noqa: PLC0415

    kept = [ex for ex in examples if len(transcripts.transcript(tok, ex)) <= block_size + 1]
    if len(kept) < len(examples):
        log.info("dropped %d of %d transcripts longer than the %d-token window", len(examples) - len(kept),
                 len(examples), block_size)
    shortest = max(len(tr.prompt_prefix(tok, ex.task.prompt)) + len(tok.encode(ex.task.solution)) + 1 for ex in examples)
    if shortest > block_size + 1:
        raise ValueError(f"--block-size {block_size} cannot hold a task's prompt and solution ({shortest} tokens): "
                         f"use --block-size {shortest} or more")
    return kept


def train_agentic(out: Path, cfg: TrainConfig, mcfg: GPTConfig, t_start: float, rng: random.Random) -> dict:
    """The agentic recipe: planned guess-and-fix transcripts judged by the real sandbox
    (sut/train/agentic_data.py), attempt markers, validation with the batched engine."""
    from sut.tasks.agentic import suite as agentic_suite  # noqa: PLC0415 - the basic recipe never needs it
    from sut.train import agentic_data as transcripts  # noqa: PLC0415

    tasks = agentic_suite.generate("train", cfg.train_tasks, cfg.seed)
    val = agentic_suite.generate("val", max(cfg.val_tasks, cfg.val_loss_tasks), cfg.seed)
    log.info("drew %d agentic training and %d validation tasks", len(tasks), len(val))
    # The families' code runs in microseconds; a slip that loops forever is what a timeout catches, so the
    # data pass waits 0.5 s rather than the default 2 s (a transcript whose verdict disagrees is dropped).
    with SandboxPool(workers=cfg.verify_workers, timeout_s=0.5, isolation=cfg.isolation) as pool:
        examples = transcripts.build_examples(tasks, pool, cfg.mistakes_per_task, cfg.seed, cfg.bug_share)
        val_examples = transcripts.build_examples(val[:cfg.val_loss_tasks], pool, 1, cfg.seed + 1, cfg.bug_share)
    t_data = time.perf_counter()
    tok = train_tokenizer(transcripts.tokenizer_corpus(examples[:cfg.tokenizer_tasks]), cfg.vocab_size,
                          attempt_markers=True)
    mcfg.vocab_size = tok.vocab_size
    examples = fitting(tok, examples, mcfg.block_size)
    val_examples = fitting(tok, val_examples, mcfg.block_size)
    model = NanoCodeGen(mcfg)
    if cfg.sinusoidal_pos:
        sinusoidal_init(model)
    model.to(cfg.device)
    log.info("model: %d parameters, %s", model.num_params(), mcfg)
    val_batches = train_data.make_batches([transcripts.transcript(tok, ex) for ex in val_examples], cfg.batch_size,
                                          tok.pad_id, random.Random(0), mcfg.block_size)
    pool = SandboxPool(workers=cfg.verify_workers, timeout_s=2.0, isolation=cfg.isolation)
    pass_curve: list[dict] = []
    last: list[dict] = []

    def validate(step: int) -> None:
        s = _validate_agentic(model, tok, pool, cfg, val)
        pass_curve.append({"step": step, **{k: s[k] for k in ("pass@1", "pass@final", "mean_attempts")}})
        log.info("step %d: validation pass@1 %.3f, pass@final %.3f, mean attempts %.2f", step, s["pass@1"],
                 s["pass@final"], s["mean_attempts"])
        last[:] = [s]

    with pool:
        fitted = fit(model, tok, cfg, val_batches, rng, lambda r: [transcripts.transcript(tok, ex) for ex in examples],
                     on_eval=validate)   # validates at every eval point, the last step included
    t_train = t_end = time.perf_counter()
    summary = last[0]
    metrics = run_metrics(summary, fitted, model, cfg, (t_start, t_data, t_train, t_end), "sut.train")
    metrics.update(suite="agentic", val_pass_curve=pass_curve, val_attempts_histogram=summary["attempts_histogram"],
                   train_transcripts=len(examples))
    save_checkpoint(out, model, tok, mcfg, asdict(cfg), metrics, suite="agentic")
    write_report(out, metrics, fitted.curve, fitted.val_curve, asdict(cfg), mcfg.to_dict())
    write_validation_report(out, metrics)
    return metrics


def _validate_agentic(model: NanoCodeGen, tok: CodeTokenizer, pool: SandboxPool, cfg: TrainConfig,
                      val: list) -> dict:
    """One validation of the agentic recipe with the batched engine: the summary and the histogram of the
    attempts that passed tasks took."""
    from sut.engine.scheduler import Engine  # noqa: PLC0415

    agent = AgentConfig(max_attempts=cfg.val_max_attempts, max_new_tokens=cfg.val_max_new_tokens, seed=cfg.seed)
    engine = Engine(model, tok, pool, agent, max_batch=64, device=cfg.device)
    try:
        results = engine.run(val[:cfg.val_tasks])
    finally:
        engine.stop(close_pool=False)
    s = summarize(results, 0.0)
    s["attempts_histogram"] = [sum(len(r.attempts) == k and r.passed for r in results)
                               for k in range(1, cfg.val_max_attempts + 1)]
    return s


def check_recipe_flags(p: argparse.ArgumentParser, cfg: TrainConfig) -> None:
    """Refuse a malformed --retry-mix or a negative --literal-mistakes up front (both trainers),
    rather than with a ValueError minutes into a run."""
    try:
        mix = retry_mix(cfg)
    except ValueError:
        mix = ()
    if not mix or min(mix) < 0 or sum(mix) <= 0:
        p.error(f"--retry-mix {cfg.retry_mix!r}: give non-negative shares for 0, 1, 2, ... wrong attempts")
    if cfg.literal_mistakes < 0:
        p.error("--literal-mistakes must be >= 0")
    if cfg.isolation not in ISOLATION_MODES:
        p.error(f"--isolation {cfg.isolation!r}: choose one of {', '.join(ISOLATION_MODES)}")


def retry_mix(cfg: TrainConfig) -> tuple[float, ...]:
    """The retry mix: shares of examples shown with 0, 1, 2, ... wrong attempts."""
    return tuple(float(x) for x in cfg.retry_mix.split(",")) if cfg.retry_mix else train_data.DEFAULT_MIX


def add_field_flags(p: argparse.ArgumentParser, flds: Iterable[Field]) -> None:
    """A ``--name`` flag per dataclass field (booleans get ``--no-name`` too); unset flags stay None."""
    for f in flds:
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, type=type(f.default), default=None)


def apply_field_flags(a: argparse.Namespace, *objs: object) -> None:
    """Set each dataclass field that was given on the command line."""
    for obj in objs:
        for f in fields(obj):
            v = getattr(a, f.name, None)
            if v is not None:
                setattr(obj, f.name, v)


def parse_args(argv: list[str] | None = None) -> tuple[Path, TrainConfig, GPTConfig]:
    p = argparse.ArgumentParser(prog="python -m sut.train", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="checkpoint directory to write (new or empty)")
    p.add_argument("--smoke", action="store_true", help="tiny run (< 60 s) that still writes a loadable checkpoint")
    p.add_argument("--force", action="store_true",
                   help="replace an --out that already holds files (the new checkpoint replaces it whole once complete)")
    add_field_flags(p, [*fields(TrainConfig), *(f for f in fields(GPTConfig) if f.name not in ("vocab_size", "max_retries"))])
    a = p.parse_args(argv)
    suite = a.suite or "basic"
    if suite not in ("basic", "agentic"):
        p.error(f"--suite {suite!r}: choose basic or agentic")
    agentic = suite == "agentic"
    cfg = TrainConfig(**{**(AGENTIC if agentic else {}), **(SMOKE if a.smoke else {})})
    model_defaults = SMOKE_AGENTIC_MODEL if agentic and a.smoke else AGENTIC_MODEL if agentic else \
        SMOKE_MODEL if a.smoke else {}
    mcfg = GPTConfig(**model_defaults)
    apply_field_flags(a, cfg, mcfg)
    refuse_overwrite(a.out, a.force, "--out")   # one line, exit 2, before any work
    if mcfg.n_embd % mcfg.n_head:
        p.error(f"--n-embd {mcfg.n_embd} must be a multiple of --n-head {mcfg.n_head}")
    if cfg.steps < 1 or cfg.batch_size < 1 or cfg.train_tasks < 1:
        p.error("--steps, --batch-size and --train-tasks must be positive")
    check_recipe_flags(p, cfg)
    return a.out, cfg, mcfg


def write_checkpoint(out: Path, isolation: str, make: Callable[[Path], dict],
                     bad_input: tuple[type[Exception], ...] = ()) -> int:
    """What every training command does around its work: fail closed before it (no bubblewrap, no run, unless
    --isolation process), write into a scratch folder moved to ``out`` whole once complete, and turn the
    expected failures into one ``error:`` line (exit 2 for ``bad_input``, else 1)."""
    try:
        probe(isolation)
        with staged_folder(out) as scratch:
            metrics = make(scratch)
    except bad_input as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (SandboxUnavailable, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out}: val pass@1 {metrics['val_pass@1']:.3f}, pass@final {metrics['val_pass@final']:.3f}, "
          f"wall {metrics['wall_s']:.0f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    out, cfg, mcfg = parse_args(argv)
    return write_checkpoint(out, cfg.isolation, lambda scratch: train(scratch, cfg, mcfg))


if __name__ == "__main__":
    sys.exit(main())
