"""Nano-CodeGen: a small GPT that writes Python, with a slot-based KV cache.

nanoGPT-shaped (one file, a dataclass config, shape comments) with two additions:

- a learned retry-step embedding (``wse``, 16 rows) added to every token, so the model
  knows whether it is writing a first attempt or the k-th retry after feedback. With
  ``max_retries = 0`` the attempt number is in the text instead (attempt-marker tokens,
  sut/model/tokenizer.py) and the model is exactly GPT-2 (sut/model/hf_format.py): ``wse`` is then one
  frozen row of zeros, so every engine's embedding sum is unchanged, bit for bit;
- ``forward_cached``: attention over a preallocated KV cache of ``max_slots`` sequences
  (gpt-fast style, allocated once). Prefill, extension of a sequence with feedback
  tokens and batched one-token decode are all the same call: row b writes its T new
  tokens into slot ``slots[b]`` at positions ``start_pos[b]..start_pos[b]+T-1`` and attends
  to its own slot's positions ``0..start_pos[b]+t``. Rows may sit at different positions,
  which is what a continuous-batching engine needs.

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


class KVCache(nn.Module):
    """Preallocated keys/values for ``max_slots`` sequences of up to ``max_seq`` tokens.

    Buffers are (n_layer, max_slots, n_head, max_seq, head_dim). A slot holds one
    sequence; what sits beyond a row's current length is stale and masked out, so a slot
    is reused without clearing. The owner (agent or engine) tracks each slot's length.
    """

    def __init__(self, cfg: GPTConfig, max_slots: int, max_seq: int | None = None,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        max_seq = max_seq or cfg.block_size
        if max_seq > cfg.block_size:
            raise ValueError(f"max_seq {max_seq} exceeds the model's block_size {cfg.block_size}")
        shape = (cfg.n_layer, max_slots, cfg.n_head, max_seq, cfg.n_embd // cfg.n_head)
        self.register_buffer("k", torch.zeros(shape, device=device, dtype=dtype), persistent=False)
        self.register_buffer("v", torch.zeros(shape, device=device, dtype=dtype), persistent=False)

    @property
    def max_slots(self) -> int:
        return self.k.shape[1]

    @property
    def max_seq(self) -> int:
        return self.k.shape[3]

    def nbytes(self) -> int:
        return self.k.numel() * self.k.element_size() * 2

    def update(self, layer: int, slots: Tensor, pos: Tensor, k: Tensor, v: Tensor, length: int) -> tuple[Tensor, Tensor]:
        """Write k, v (B, nh, T, hd) at (slots[b], pos[b, t]); return the rows' caches (B, nh, length, hd)."""
        kb, vb = self.k[layer], self.v[layer]            # (S, nh, L, hd) views
        idx = (slots[:, None], slice(None), pos)          # advanced dims first: (B, T, nh, hd)
        kb[idx] = k.transpose(1, 2).to(kb.dtype)
        vb[idx] = v.transpose(1, 2).to(vb.dtype)
        return kb[slots, :, :length], vb[slots, :, :length]


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

    def forward_cached(self, x: Tensor, cache: KVCache, layer: int, slots: Tensor, pos: Tensor,
                       length: int, mask: Tensor) -> Tensor:
        B, T, C = x.shape
        q, k, v = self._qkv(x)
        k_all, v_all = cache.update(layer, slots, pos, k, v, length)  # (B, nh, length, hd)
        y = F.scaled_dot_product_attention(q, k_all.to(q.dtype), v_all.to(q.dtype), attn_mask=mask)  # (B, nh, T, hd)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


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

    def forward_cached(self, x: Tensor, cache: KVCache, layer: int, slots: Tensor, pos: Tensor,
                       length: int, mask: Tensor) -> Tensor:
        x = x + self.attn.forward_cached(self.ln_1(x), cache, layer, slots, pos, length, mask)
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
        self.kv_cache: KVCache | None = None

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

    def setup_cache(self, max_slots: int, max_seq: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        """Allocate (once) and return ``self.kv_cache``; a call that asks for no more than
        what exists returns the existing cache untouched (gpt-fast's setup_caches)."""
        max_seq = max_seq or self.config.block_size
        dtype = dtype or self.wte.weight.dtype
        c = self.kv_cache
        if c is not None and c.max_slots >= max_slots and c.max_seq >= max_seq and c.k.dtype == dtype \
                and c.k.device == self.wte.weight.device:
            return c
        self.kv_cache = KVCache(self.config, max_slots, max_seq, self.wte.weight.device, dtype)
        return self.kv_cache

    def new_cache(self, max_slots: int, max_seq: int | None = None) -> KVCache:
        """A private cache (e.g. one slot for the single-sequence agent)."""
        return KVCache(self.config, max_slots, max_seq, self.wte.weight.device, self.wte.weight.dtype)

    def forward_cached(self, idx: Tensor, steps: Tensor, slots: Tensor, start_pos: Tensor,
                       cache: KVCache) -> Tensor:
        """Run T new tokens per row through the cache; logits of each row's last token (B, V).

        idx, steps: (B, T); slots, start_pos: (B,) long. Row b's tokens land in slot
        ``slots[b]`` at positions ``start_pos[b] + t``; the slots of one call must differ.
        """
        B, T = idx.shape
        start_pos = start_pos.to(idx.device)
        slots = slots.to(idx.device)
        pos = start_pos[:, None] + torch.arange(T, device=idx.device)  # (B, T)
        length = int(start_pos.max()) + T                               # longest context in use
        if length > cache.max_seq:
            raise ValueError(f"a row would reach position {length}: the cache holds {cache.max_seq} tokens")
        # row b, query t sees its own slot's keys 0..start_pos[b]+t (stale tail masked)
        mask = torch.arange(length, device=idx.device)[None, None, :] <= pos[:, :, None]  # (B, T, length)
        mask = mask[:, None]                                                            # (B, 1, T, length)
        x = self._embed(idx, steps, pos)
        for i, block in enumerate(self.blocks):
            x = block.forward_cached(x, cache, i, slots, pos, length, mask)
        return self.lm_head(self.ln_f(x[:, -1]))  # (B, V)

    def kv_bytes(self, n_tokens: int, dtype: torch.dtype | None = None) -> int:
        """Bytes of keys+values that ``n_tokens`` tokens of one sequence occupy."""
        itemsize = torch.empty((), dtype=dtype or self.wte.weight.dtype).element_size()
        return 2 * self.config.n_layer * self.config.n_embd * n_tokens * itemsize
