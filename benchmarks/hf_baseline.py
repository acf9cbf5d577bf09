"""The off-the-shelf peer: Hugging Face transformers ``generate`` on a GPT-2 of our shape.

Benchmark-only (``pip install -e .[bench]``): a GPT2LMHeadModel with the same width, depth,
heads, context and vocabulary as NanoCodeGen, random weights, KV cache on, greedy, every
row forced to the same number of new tokens (``min_new_tokens``), as a user would run it.
"""
from __future__ import annotations

import time

import torch

from sut.model.gpt import GPTConfig


def build_gpt2(cfg: GPTConfig, device: str = "cpu"):
    """A randomly initialised GPT2LMHeadModel of ``cfg``'s shape (eval mode)."""
    try:
        from transformers import GPT2Config, GPT2LMHeadModel
    except ImportError as e:  # the one clear line a user needs
        raise SystemExit("engine_bench: the HF comparison needs transformers: pip install -e '.[bench]'") from e
    hf_cfg = GPT2Config(vocab_size=cfg.vocab_size, n_positions=cfg.block_size, n_embd=cfg.n_embd,
                        n_layer=cfg.n_layer, n_head=cfg.n_head, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    torch.manual_seed(0)
    return GPT2LMHeadModel(hf_cfg).to(device).eval()


@torch.inference_mode()
def hf_generate_seconds(model, prompt_ids: list[int], batch: int, new_tokens: int, device: str = "cpu") -> float:
    """Wall seconds of one ``generate`` call: ``batch`` copies of the prompt, exactly ``new_tokens`` each."""
    ids = torch.tensor([prompt_ids] * batch, device=device)
    mask = torch.ones_like(ids)
    _sync(device)
    t0 = time.perf_counter()
    out = model.generate(ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                         do_sample=False, use_cache=True, pad_token_id=0, eos_token_id=None)
    _sync(device)
    dt = time.perf_counter() - t0
    assert out.shape == (batch, len(prompt_ids) + new_tokens), out.shape
    return dt


def _sync(device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
