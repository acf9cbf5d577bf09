"""Nano-CodeGen: a small GPT that writes Python.

nanoGPT-shaped (one file, a dataclass config, shape comments). ``forward`` is the full causal pass
over whole sequences that training uses; inference runs the same weights through
sut/model/torch_step.py (rows of prefill and decode over a KV cache) or its native twin. One addition:

- a learned retry-step embedding (``wse``, 16 rows) added to every token, so the model
  knows whether it is writing a first attempt or the k-th retry after feedback. With
  ``max_retries = 0`` the attempt number is in the text instead (attempt-marker tokens,
  sut/model/tokenizer.py) and the model is exactly GPT-2 (sut/model/hf_format.py): ``wse`` is then one
  frozen row of zeros, so every engine's embedding sum is unchanged, bit for bit.

The LM head shares its weight with the token embedding (GPT-2 weight tying): with a
~1.5k vocabulary it saves ~200k of ~1M parameters and trains at least as well.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor


@dataclass
class GPTConfig:
    vocab_size: int = 1536
    block_size: int = 512     # context window in tokens; a 5-attempt transcript must fit (docs/model.md)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    max_retries: int = 16     # rows of the retry-step embedding (steps 0..15); 0: attempt markers, plain GPT-2
    dropout: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, f"n_embd {cfg.n_embd} must be a multiple of n_head {cfg.n_head}"
        self.n_head, self.n_embd, self.dropout = cfg.n_head, cfg.n_embd, cfg.dropout
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        shape = (B, T, self.n_head, C // self.n_head)
        return tuple(t.view(shape).transpose(1, 2) for t in (q, k, v))  # each (B, nh, T, hd)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hd)
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).reshape(B, T, C)))

class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))

class NanoCodeGen(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.config = cfg
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)   # tokens
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)   # positions
        self.wse = nn.Embedding(max(cfg.max_retries, 1), cfg.n_embd)  # retry steps
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (module doc)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))
        if not cfg.max_retries:   # attempt markers carry the attempt: wse is a frozen zero row (module doc)
            nn.init.zeros_(self.wse.weight)
            self.wse.weight.requires_grad_(False)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def _embed(self, idx: Tensor, steps: Tensor, pos: Tensor) -> Tensor:
        return self.drop(self.wte(idx) + self.wpe(pos) + self.wse(steps))  # (B, T, C)

    def _hidden(self, idx: Tensor, steps: Tensor) -> Tensor:
        B, T = idx.shape
        if T > self.config.block_size:
            raise ValueError(f"cannot forward a sequence of {T} tokens: block_size is {self.config.block_size}")
        if steps.max() >= self.wse.num_embeddings or steps.min() < 0:
            raise ValueError(f"retry steps must lie in 0..{self.wse.num_embeddings - 1}")
        x = self._embed(idx, steps, torch.arange(T, device=idx.device))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, T, C)

    def forward(self, idx: Tensor, steps: Tensor, targets: Tensor | None = None,
                loss_mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Full causal forward over (B, T) tokens: logits (B, T, V) and the masked mean loss.

        ``loss_mask`` (B, T) selects which targets count (code and <|end|> only; padding
        and prompt/feedback positions are 0). Used for tests and as the no-cache path;
        training calls ``loss``, which skips the LM head where nothing is learnt.
        """
        logits = self.lm_head(self._hidden(idx, steps))  # (B, T, V)
        if targets is None:
            return logits, None
        ce = F.cross_entropy(logits.view(-1, logits.size(-1)).float(), targets.reshape(-1), reduction="none")
        if loss_mask is None:
            return logits, ce.mean()
        m = loss_mask.reshape(-1).to(ce.dtype)
        return logits, (ce * m).sum() / m.sum().clamp(min=1.0)

    def loss(self, idx: Tensor, steps: Tensor, targets: Tensor, loss_mask: Tensor) -> Tensor:
        """Mean cross-entropy over the positions where ``loss_mask`` is set; the LM head
        runs only there (about a quarter of a retry transcript's positions)."""
        sel = loss_mask.bool()
        h = self._hidden(idx, steps)[sel]                # (N, C)
        return F.cross_entropy(self.lm_head(h).float(), targets[sel])

    def kv_bytes(self, n_tokens: int, dtype: torch.dtype | None = None) -> int:
        """Bytes of keys+values that ``n_tokens`` tokens of one sequence occupy."""
        itemsize = torch.empty((), dtype=dtype or self.wte.weight.dtype).element_size()
        return 2 * self.config.n_layer * self.config.n_embd * n_tokens * itemsize
