"""Second training phase: fine-tune a checkpoint on its own verified failures (self-repair).

    python -m sut.train.self_repair --init checkpoints/reference --out /tmp/repaired

The from-scratch recipe (sut.train) teaches retries on *synthetic* mistakes. The shipped
model's real mistakes are different (mostly literals copied wrongly from the prompt,
docs/model.md), and its retries fix only about a fifth of them. This phase closes that gap
the way self-correction training does (on-policy repair data):

1. run the engine with the checkpoint over fresh training tasks (never eval, never val),
   exactly as it runs at evaluation: greedy attempt 0, seeded sampled retries, the real
   sandbox verifier;
2. every task it failed at least once gives repair transcripts: the task, the model's own
   failed attempts in the order it made them with the verifier's feedback for each, then
   the reference solution, for each retry depth 1..4 (only the solution is a target);
3. fine-tune from the checkpoint on these, mixed with the original recipe's transcripts
   (replay, so first attempts do not drift), and write a new checkpoint with its report.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as in sut.train: shared cores

import argparse
import itertools
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch

from sut.train import data as train_data
from sut.model import transcript as tr
from sut.agent import AgentConfig
from sut.records import AgentResult
from sut.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sut.engine.scheduler import Engine
from sut.evaluate import evaluate_tasks, summarize
from sut.model.hf_format import FormatError, with_attempt_markers, with_heads
from sut.tasks.record import Task
from sut.tasks.basic import generate_tasks, iter_train_tasks
from sut.model.tokenizer import CodeTokenizer
from sut.train.loop import (TrainConfig, add_field_flags, apply_field_flags, check_recipe_flags, fit, retry_mix,
                            run_metrics, write_checkpoint)
from sut.train.report import write_report
from verifier.output_guard import refuse_overwrite
from verifier.pool import SandboxPool

log = logging.getLogger("sut.train.self_repair")

MAX_DEPTH = 4   # a 5-attempt transcript has at most 4 failed attempts before the last


@dataclass
class RepairConfig:
    repair_tasks: int = 20000      # fresh training tasks the model is run on to collect its failures
    repair_seed: int = 1           # their stream (sut.train draws seed 0's)
    repair_share: float = 0.5      # share of each pass's transcripts that are repair transcripts
    max_batch: int = 64            # the engine's batch while collecting
    collect_redraws: int = 0       # the agent's redraws while collecting (the shipped checkpoint's rounds used 0)
    attempt_markers: bool = False  # fine-tune a format-1 checkpoint into GPT-2 with attempt markers (HF format)
    n_head: int = 0                # read the checkpoint's weights as this many heads before collecting (0: as saved)


def failure_chains(tasks: Sequence[Task], results: Sequence[AgentResult]) -> list[tuple[Task, list[train_data.Mistake]]]:
    """Per task the model failed at least once: its failed attempts, in order, with their feedback.
    Chains stop at the first attempt with no usable feedback (a sandbox error) or a truncation."""
    out = []
    for task, r in zip(tasks, results):
        chain: list[train_data.Mistake] = []
        for a in r.attempts:
            if a.status == "passed" or a.truncated or not a.feedback or a.status == "sandbox_error":
                break
            chain.append((a.code, a.feedback))
        if chain:
            out.append((task, chain[:MAX_DEPTH]))
    return out


def repair_transcripts(tok: CodeTokenizer, chains: Sequence[tuple[Task, list[train_data.Mistake]]],
                       block_size: int, prefix_loss: bool) -> list[tr.Piece]:
    """Every (task, depth) transcript: the first ``depth`` failed attempts and their feedback, then
    the reference solution (the only target, plus the shared prefix with ``prefix_loss``)."""
    out = []
    for task, chain in chains:
        for depth in range(1, len(chain) + 1):
            wrong = chain[:depth]
            seq = tr.build_transcript(tok, task.prompt, [c for c, _ in wrong] + [task.solution],
                                      [fb for _, fb in wrong], prefix_loss)
            if len(seq) <= block_size + 1:
                out.append(seq)
    return out


def collect(model, tok: CodeTokenizer, pool, tasks: Sequence[Task], rcfg: RepairConfig, device: str
            ) -> list[AgentResult]:
    """The engine's agent run over ``tasks``: what the model really does, retries included."""
    engine = Engine(model, tok, pool, AgentConfig(redraws=rcfg.collect_redraws), max_batch=rcfg.max_batch,
                    device=device)
    try:
        return engine.run(tasks, progress=True)
    finally:
        engine.stop(close_pool=False)


def self_repair(init: Path, out: Path, cfg: TrainConfig, rcfg: RepairConfig) -> dict:
    t_start = time.perf_counter()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    rng = random.Random(cfg.seed)
    model, tok, meta = load_checkpoint(init, cfg.device)
    if rcfg.n_head and rcfg.n_head != model.config.n_head:   # a head size other engines have kernels for
        model = with_heads(model, rcfg.n_head)
        log.info("re-read as %d heads of %d", rcfg.n_head, model.config.n_embd // rcfg.n_head)
    mcfg = model.config
    model.eval()

    fresh = list(itertools.islice(iter_train_tasks(rcfg.repair_seed), rcfg.repair_tasks))
    replay_tasks = train_data.take_train_tasks(cfg.train_tasks, cfg.seed)
    val = generate_tasks("val", max(cfg.val_tasks, cfg.val_loss_tasks), cfg.seed)
    before, chains, replay, val_examples = _collect_data(init, model, tok, fresh, replay_tasks, val, cfg, rcfg)
    if rcfg.attempt_markers:   # collected with the checkpoint as it is; trained and saved as GPT-2
        model, tok = with_attempt_markers(model, tok)
        mcfg = model.config
        model.to(cfg.device)
        log.info("converted to attempt markers: vocabulary %d, GPT-2 (format 2)", tok.vocab_size)
    repair = repair_transcripts(tok, chains, mcfg.block_size, cfg.prefix_loss)
    log.info("collected: pass@1 %.3f, pass@final %.3f on %d tasks; %d failed tasks -> %d repair transcripts",
             before["pass@1"], before["pass@final"], len(fresh), len(chains), len(repair))
    if not repair and not rcfg.attempt_markers:   # a conversion still learns the markers from the replay
        raise SystemExit("error: the model failed no collection task, so there is nothing to repair; "
                         "raise --repair-tasks")
    t_data = time.perf_counter()

    val_batches = train_data.make_batches(
        train_data.draw_transcripts(tok, val_examples, random.Random(cfg.seed), block_size=mcfg.block_size),
        cfg.batch_size, tok.pad_id, random.Random(0), mcfg.block_size)
    mix = retry_mix(cfg)

    def one_pass(r: random.Random) -> list[tr.Piece]:
        seqs = train_data.draw_transcripts(tok, replay, r, mix=mix, block_size=mcfg.block_size,
                                           prefix_loss=cfg.prefix_loss)
        n_repair = round(len(seqs) * rcfg.repair_share / (1 - rcfg.repair_share)) if repair else 0
        return seqs + [r.choice(repair) for _ in range(n_repair)]

    model.train()
    fitted = fit(model, tok, cfg, val_batches, rng, one_pass, desc="self-repair")
    t_train = time.perf_counter()
    with SandboxPool(workers=cfg.verify_workers, timeout_s=2.0, isolation=cfg.isolation) as pool:
        summary = evaluate_tasks(model, tok, pool, val[:cfg.val_tasks], AgentConfig(seed=cfg.seed), cfg.device,
                                 desc="validate")
    t_end = time.perf_counter()
    metrics = run_metrics(summary, fitted, model, cfg, (t_start, t_data, t_train, t_end), "sut.train.self_repair")
    metrics.update({"init": str(init), "init_commit": meta.get("commit"),
                    "collected": {"tasks": len(fresh), "pass@1": before["pass@1"], "pass@final": before["pass@final"],
                                  "failed_tasks": len(chains), "repair_transcripts": len(repair)}})
    _save(init, out, model, tok, meta, cfg, rcfg, metrics, fitted)
    return metrics


def _collect_data(init: Path, model: Any, tok: CodeTokenizer, fresh: list, replay_tasks: list, val: list,
                  cfg: TrainConfig, rcfg: RepairConfig) -> tuple[dict, list, list, list]:
    """The checkpoint's own run on ``fresh`` (its summary and failure chains) and the replay and validation
    examples, with one sandbox pool for all of it."""
    with SandboxPool(workers=cfg.verify_workers, timeout_s=2.0, isolation=cfg.isolation) as pool:
        log.info("running %s on %d fresh training tasks to collect its failures", init, len(fresh))
        with torch.inference_mode():
            results = collect(model, tok, pool, fresh, rcfg, cfg.device)
        before = summarize(results, 0.0)
        chains = failure_chains(fresh, results)
        replay = train_data.build_examples(replay_tasks, pool, cfg.mistakes_per_task, cfg.seed, cfg.literal_mistakes)
        val_examples = train_data.build_examples(val[:cfg.val_loss_tasks], pool, 2, cfg.seed + 1)
    return before, chains, replay, val_examples


def _save(init: Path, out: Path, model: Any, tok: CodeTokenizer, meta: dict, cfg: TrainConfig, rcfg: RepairConfig,
          metrics: dict, fitted: Any) -> None:
    """The checkpoint and its report, with the init's training config and this phase's under "self_repair"."""
    train_cfg = {**meta.get("train", {}), "self_repair": {**asdict(cfg), **asdict(rcfg), "init": str(init)}}
    save_checkpoint(out, model, tok, model.config, train_cfg, metrics)
    write_report(out, metrics, fitted.curve, fitted.val_curve, train_cfg["self_repair"], model.config.to_dict())


# The fine-tune's own defaults: a short, gentle phase on top of the from-scratch recipe.
FINETUNE = dict(steps=1500, lr=5e-4, warmup=50, train_tasks=6000, eval_every=250)
SMOKE = dict(steps=10, batch_size=8, train_tasks=40, mistakes_per_task=1, val_tasks=3, val_loss_tasks=16,
             eval_every=5, warmup=2)
SMOKE_REPAIR = dict(repair_tasks=24, max_batch=8)


def parse_args(argv: list[str] | None = None) -> tuple[Path, Path, TrainConfig, RepairConfig]:
    p = argparse.ArgumentParser(prog="python -m sut.train.self_repair", description=__doc__.splitlines()[0])
    p.add_argument("--init", type=Path, required=True, help="checkpoint to start from (e.g. checkpoints/reference)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="checkpoint directory to write (new or empty)")
    p.add_argument("--force", action="store_true",
                   help="replace an --out that already holds files (the new checkpoint replaces it whole once complete)")
    p.add_argument("--smoke", action="store_true", help="tiny run for tests")
    skip = {"vocab_size", "tokenizer_tasks", "sinusoidal_pos", "val_max_new_tokens"}
    add_field_flags(p, [*(f for f in fields(TrainConfig) if f.name not in skip), *fields(RepairConfig)])
    a = p.parse_args(argv)
    cfg = TrainConfig(**{**FINETUNE, **(SMOKE if a.smoke else {})})
    rcfg = RepairConfig(**(SMOKE_REPAIR if a.smoke else {}))
    apply_field_flags(a, cfg, rcfg)
    refuse_overwrite(a.out, a.force, "--out")   # one line, exit 2, before any work
    if not 0 <= rcfg.repair_share < 1:
        p.error(f"--repair-share {rcfg.repair_share}: give a share in [0, 1)")
    if cfg.steps < 1 or rcfg.repair_tasks < 1:
        p.error("--steps and --repair-tasks must be positive")
    check_recipe_flags(p, cfg)
    return a.init, a.out, cfg, rcfg


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    init, out, cfg, rcfg = parse_args(argv)
    return write_checkpoint(out, cfg.isolation, lambda scratch: self_repair(init, scratch, cfg, rcfg),
                            bad_input=(CheckpointError, FormatError))


if __name__ == "__main__":
    sys.exit(main())
