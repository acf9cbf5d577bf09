"""The engine's model calls: per-sequence prefill and a batch-invariant batched decode step.

Decode feeds one token to every cache slot in ``[0, R)`` at once (R a multiple of
ROW_ALIGN) through the matmuls; slots that are not decoding (a sequence parked on its
verifier, a free slot) ride along as dummy rows whose outputs are dropped. Attention runs
only over runs of decoding slots, on plain views of the slot cache (no gather copy of
any row's keys and values), each run with its own key length.

Batch invariance (a task's tokens never depend on what else is in the batch) is built
in, not hoped for. Two kernels on CPU change their floating-point reduction order with
the shape of the call (measured; docs/engine.md):

- GEMM: rows the BLAS micro-kernel computes in a full group of 4 differ in the last bits
  from tail rows and from the M=1 (GEMV) path. Every decode and LM-head matmul therefore
  gets a row count padded to a multiple of ROW_ALIGN, so each row always goes through the
  same micro-kernel whatever the batch size.
- Attention: the softmax and the P.V reduction depend on the key length's tail. The key
  length is padded to a multiple of KEY_ALIGN (masked), which gives identical results for
  any padded length, run composition and cache stride.

LayerNorm, GELU, embedding lookups, argmax and the row-wise sampling are row-local.
tests/test_engine.py checks the logits bitwise. (On CUDA, cuBLAS chooses algorithms by
shape: the padding still helps, but bitwise invariance there is not claimed.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sut.model import KVCache, NanoCodeGen

ROW_ALIGN = 8
KEY_ALIGN = 32
RUN_GAP = 2      # bridge holes of up to this many idle slots inside one attention call
RUN_ROWS = 16    # at most this many rows per attention call, each call with its own key length


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """One-query attention, (n, nh, 1, hd) over (n, nh, keys, hd) with an additive mask (n, 1, 1, keys).

    Plain matmul + softmax rather than scaled_dot_product_attention: with one query per row
    the flash kernel's per-(row, head) blocking is overhead, and this reads the cache about
    15% faster at batch 128 (docs/engine.md). Row-local and padding-invariant like SDPA.
    """
    s = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-1, -2)) + mask  # (n, nh, 1, keys)
    return torch.matmul(torch.softmax(s, -1), v)


def sample_rows(logits: Tensor, temperature: float, top_k: int | None, gens: list[torch.Generator]) -> list[int]:
    """``sut.agent.sample_next`` for many rows at once: the same tokens, row by row, bit for bit.

    Temperature, top-k and softmax are row-local, so they run once over the batch. The draw
    is the one ``torch.multinomial(probs, 1, generator=g)`` makes (ATen's one-sample path:
    ``argmax(probs / q)`` with ``q ~ Exp(1)`` drawn from ``g``): each row draws its ``q`` from
    its own generator, then one batched divide and argmax. That skips multinomial's
    per-call validity checks, half its cost. tests/test_engine.py pins the equivalence.
    """
    x = logits.float() / temperature
    if top_k is not None and top_k < x.shape[-1]:
        kth = torch.topk(x, top_k, dim=-1).values[:, -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    probs = torch.softmax(x, dim=-1)
    q = torch.empty_like(probs)
    for i, g in enumerate(gens):
        q[i].exponential_(1, generator=g)
    return (probs / q).argmax(-1).tolist()


class BatchModel:
    """A model plus a slot KV cache of ``n_slots`` sequences (rounded up to ROW_ALIGN)."""

    def __init__(self, model: NanoCodeGen, n_slots: int, use_kv_cache: bool = True) -> None:
        self.model = model
        cfg = model.config
        self.device = model.wte.weight.device
        self.window = cfg.block_size
        self.n_slots = round_up(max(1, n_slots), ROW_ALIGN)
        self.nh, self.hd = cfg.n_head, cfg.n_embd // cfg.n_head
        self.use_kv_cache = use_kv_cache
        self.cache: KVCache | None = None
        if use_kv_cache:
            # keys and values in one tensor: a decode step writes a layer's new keys and values for
            # all rows with one index_put_; model.KVCache's k and v are views of it (the model's prefill)
            self.kv = torch.zeros(cfg.n_layer, 2, self.n_slots, self.nh, cfg.block_size, self.hd,
                                  device=self.device, dtype=model.wte.weight.dtype)   # (nl, 2, S, nh, L, hd)
            self.cache = model.new_cache(1, 1)
            self.cache.k, self.cache.v = self.kv[:, 0], self.kv[:, 1]
            self._layers = [(b.ln_1.weight, b.ln_1.bias, b.ln_1.eps, b.attn.c_attn.weight, b.attn.c_attn.bias,
                             b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias, b.ln_2.eps,
                             b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias)
                            for b in model.blocks]
        self._key_pos = torch.arange(self.window, device=self.device)
        self._rows = torch.arange(self.n_slots, device=self.device)
        # FLOPs of one token through the matmuls (embedding lookups excluded, LM head included)
        self.matmul_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))

    def token_flops(self, context: int) -> int:
        """Model FLOPs to produce one token at ``context`` keys: 2 per matmul weight + QK^T and PV."""
        cfg = self.model.config
        return 2 * self.matmul_params + 4 * cfg.n_layer * cfg.n_embd * context

    # -- prefill: one sequence, exactly the single-sequence agent's call -------------------
    def prefill(self, ids: list[int], steps: list[int], slot: int, start: int) -> Tensor:
        """Run ``ids`` (positions start..) into ``slot``; logits after the last token (V,).

        The same computation as ``NanoCodeGen.forward_cached`` for one row (the agent's
        prefill), written against views of the slot rather than a gathered copy of it.
        """
        m, dev, T = self.model, self.device, len(ids)
        if self.cache is None:  # no cache: the whole context through the full forward
            logits, _ = m(torch.tensor([ids], device=dev), torch.tensor([steps], device=dev))
            return logits[0, -1]
        end, C, nh, hd = start + T, m.config.n_embd, self.nh, self.hd
        if end > self.window:
            raise ValueError(f"a row would reach position {end}: the cache holds {self.window} tokens")
        meta = torch.tensor([ids, steps], device=dev)                           # (2, T)
        pos = self._key_pos[start:end]
        mask = (self._key_pos[:end] <= pos[:, None])[None, None]                # (1, 1, T, end): causal
        x = m.wte(meta[0]) + m.wpe(pos) + m.wse(meta[1])                        # (T, C), as model._embed
        for i, (w1, b1, e1, wa, ba, wp, bp, w2, b2, e2, wf, bf, wo, bo) in enumerate(self._layers):
            qkv = F.linear(F.layer_norm(x, (C,), w1, b1, e1), wa, ba)           # (T, 3C)
            kv = self.kv[i, :, slot]                                            # (2, nh, L, hd) view
            kv[:, :, start:end] = qkv[:, C:].view(T, 2, nh, hd).permute(1, 2, 0, 3)
            q = qkv[:, :C].view(T, nh, hd).transpose(0, 1)[None]                # (1, nh, T, hd)
            y = F.scaled_dot_product_attention(q, kv[0, None, :, :end], kv[1, None, :, :end], attn_mask=mask)
            x = x + F.linear(y[0].transpose(0, 1).reshape(T, C), wp, bp)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), w2, b2, e2), wf, bf)), wo, bo)
        return m.lm_head(m.ln_f(x[-1]))                                         # (V,)

    def full_logits(self, ids: list[int], steps: list[int]) -> Tensor:
        """The reference's way: recompute the whole context for one token; logits (V,)."""
        logits, _ = self.model(torch.tensor([ids], device=self.device), torch.tensor([steps], device=self.device))
        return logits[0, -1]

    # -- decode: one token for each slot in [0, R) --------------------------------------
    def decode(self, slots: list[int], tokens: list[int], steps: list[int], pos: list[int]) -> Tensor:
        """Feed ``tokens[i]`` at position ``pos[i]`` of slot ``slots[i]`` (sorted, distinct) for every
        decoding row; logits (n, V). The matmuls run on rows padded to a multiple of ROW_ALIGN with
        copies of row 0; the copies write nothing to the cache and attend to nothing."""
        assert self.cache is not None
        m, L, C, dev, nh, hd = self.model, self.window, self.model.config.n_embd, self.device, self.nh, self.hd
        n = len(slots)
        P = round_up(n, ROW_ALIGN)
        fill = P - n
        meta = torch.tensor([slots + slots[:1] * fill, tokens + tokens[:1] * fill, steps + steps[:1] * fill,
                             pos + pos[:1] * fill], device=dev)                   # (4, P)
        slot_t, tok_t, step_t, pos_t = meta
        # attention runs: ranges of slots, each read as a view of the cache with its own key length
        where = dict(zip(slots, range(n)))
        runs, run_pos, place = [], [], [0] * n                                 # place: row -> index in run space
        for lo, hi in self._runs(slots):
            o = len(run_pos)
            for sl in range(lo, hi):
                if sl in where:
                    place[where[sl]] = o + sl - lo
            run_pos += [pos[where[sl]] if sl in where else 0 for sl in range(lo, hi)]   # idle slots: key 0 only
            runs.append((lo, hi, o, min(round_up(max(run_pos[o:]) + 1, KEY_ALIGN), L)))
        rp = torch.tensor(run_pos, device=dev)
        masks = [torch.zeros(hi - lo, 1, 1, keys, device=dev, dtype=self.kv.dtype).masked_fill_(
                 self._key_pos[:keys] > rp[o:o + hi - lo, None, None, None], float("-inf"))   # additive
                 for lo, hi, o, keys in runs]
        dense = len(run_pos) == n                                              # no idle slot inside a run
        y = torch.zeros(P if dense else len(run_pos), nh, 1, hd, device=dev, dtype=self.kv.dtype)
        if not dense:
            q_run = torch.zeros(len(run_pos), nh, 1, hd, device=dev, dtype=self.kv.dtype)
            place_t = torch.tensor(place, device=dev)
            gather_t = torch.tensor(place + place[:1] * fill, device=dev)
        x = m.wte(tok_t) + m.wpe(pos_t) + m.wse(step_t)                         # (P, C), as model._embed
        for i, (w1, b1, e1, wa, ba, wp, bp, w2, b2, e2, wf, bf, wo, bo) in enumerate(self._layers):
            qkv = F.linear(F.layer_norm(x, (C,), w1, b1, e1), wa, ba)           # (P, 3C)
            kv = self.kv[i]                                                     # (2, S, nh, L, hd)
            kv[:, slot_t[:n], :, pos_t[:n]] = qkv[:n, C:].view(n, 2, nh, hd)   # advanced dims first
            q = qkv[:, :C].view(P, nh, 1, hd)
            if not dense:
                q = q_run.index_copy_(0, place_t, q[:n])
            for (lo, hi, o, keys), mask in zip(runs, masks):
                y[o:o + hi - lo] = attend(q[o:o + hi - lo], kv[0, lo:hi, :, :keys], kv[1, lo:hi, :, :keys], mask)
            out = y if dense else y.index_select(0, gather_t)                   # (P, nh, 1, hd)
            x = x + F.linear(out.view(P, C), wp, bp)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), w2, b2, e2), wf, bf)), wo, bo)
        return m.lm_head(m.ln_f(x))[:n]                                         # (n, V)

    @staticmethod
    def _runs(rows: list[int], gap: int = RUN_GAP, most: int = RUN_ROWS) -> list[tuple[int, int]]:
        """Slot ranges [lo, hi) covering the sorted decoding ``rows``: holes of up to ``gap`` idle
        slots are bridged (a call costs about what two idle rows do) and ranges are cut at ``most``
        rows, so a short sequence does not read keys up to its longest neighbour's length."""
        runs = [[rows[0], rows[0] + 1]]
        for r in rows[1:]:
            if r - runs[-1][1] <= gap and r + 1 - runs[-1][0] <= most:
                runs[-1][1] = r + 1
            else:
                runs.append([r, r + 1])
        return [(lo, hi) for lo, hi in runs]
