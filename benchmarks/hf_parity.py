"""Does an off-the-shelf engine run our checkpoint as we do? transformers' greedy first attempts vs our engine's.

    python -m benchmarks.hf_parity                    # the agentic checkpoint, all 1,024 frozen tasks
    python -m benchmarks.hf_parity --count 64

Loads the checkpoint directory twice: with ``AutoModelForCausalLM`` / ``AutoTokenizer`` (no custom
code) and with our loader; runs each task's first attempt greedily in both (HF ``generate`` on the
prompt prefix, stopping at ``<|end|>``; our batched engine with the native backend) and counts the
tasks whose generated token ids are identical. Greedy decoding is deterministic, so a difference
means the two compute different logits, or that two candidate tokens are so close in logit that
float rounding (different kernels, summation orders) picks the other.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from sut.agent import AgentConfig
from sut.model.checkpoint import load_checkpoint
from sut.engine.scheduler import Engine
from sut.tasks.suites import DEFAULTS, load_tasks
from verifier.pool import SandboxPool


def hf_first_attempts(ckpt: Path, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy ids after each prompt's ``<|start|> <|task|> PROMPT <|code|>``, by transformers alone."""
    from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: PLC0415

    model = AutoModelForCausalLM.from_pretrained(ckpt).eval()
    tok = AutoTokenizer.from_pretrained(ckpt)
    start, task, code, end = (tok.convert_tokens_to_ids(t) for t in ("<|start|>", "<|task|>", "<|code|>", "<|end|>"))
    out = []
    with torch.inference_mode():
        for prompt in tqdm(prompts, desc="HF generate", unit="task"):
            ids = torch.tensor([[start, task, *tok.encode(prompt, add_special_tokens=False), code]])
            n = min(max_new_tokens, model.config.n_positions - ids.shape[1] - 1)
            gen = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, do_sample=False,
                                 eos_token_id=end, pad_token_id=tok.pad_token_id)
            out.append(gen[0, ids.shape[1]:].tolist())
    return out


def our_first_attempts(ckpt: Path, tasks: list, max_new_tokens: int) -> list[list[int]]:
    model, tok, _ = load_checkpoint(ckpt)
    cfg = AgentConfig(max_attempts=1, max_new_tokens=max_new_tokens)
    with SandboxPool(workers=1, lint=False, preload=()) as pool:
        engine = Engine(model, tok, pool, cfg, max_batch=64)
        try:
            results = engine.run(tasks, progress=True)
        finally:
            engine.stop(close_pool=False)
    return [r.attempts[0].token_ids for r in results]


def parity(ckpt: Path, tasks: list, max_new_tokens: int) -> tuple[float, list[str]]:
    """(share of tasks whose first attempts are identical, the ids of those that differ)."""
    ours = our_first_attempts(ckpt, tasks, max_new_tokens)
    hf = hf_first_attempts(ckpt, [t.prompt for t in tasks], max_new_tokens)
    differ = [t.id for t, a, b in zip(tasks, ours, hf) if a != b]
    return 1 - len(differ) / len(tasks), differ


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.hf_parity", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULTS["agentic"].checkpoint)
    p.add_argument("--suite", default="agentic")
    p.add_argument("--count", type=int, default=None, help="first N frozen tasks (default: all)")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    tasks = load_tasks(a.suite)[: a.count] if a.count else load_tasks(a.suite)
    share, differ = parity(a.checkpoint, tasks, DEFAULTS[a.suite].max_new_tokens)
    print(f"identical greedy first attempts, transformers vs our engine: {share:.4f} of {len(tasks)} tasks"
          + (f"; differ: {', '.join(differ[:20])}" if differ else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
