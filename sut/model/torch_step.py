"""The model's forward for inference, in torch's operators: rows of any mix of prefill and decode
over a position-major KV cache of sequence slots.

This is the one torch inference path over a KV cache: the engine runs it (``BatchModel``, backend
"torch", the path on CUDA and the CPU fallback) for the one-task agent, evaluation and training's
validation alike. ``sut/engine/native/step.py`` implements the same contract in one native call, and
tests/test_native_step.py holds the two to each other. Training uses ``NanoCodeGen.forward`` (full
causal sequences, no cache) over the same modules' weights, and so does the engine's no-KV-cache
mode: the reference's way, every token recomputed from scratch.

A step's rows: ``Decode`` rows ``(slot, token, step, pos)``, one token each, and ``Prefill`` groups
``(slot, ids, steps, start)``, the new tokens of one sequence from position ``start``. Row b writes its
keys and values at (its position, its slot) and attends to its own slot's positions up to its own.

The cache is one tensor, (layer, k/v, position, slot, head, head_dim): position-major, so the keys
a step's rows read at one position (rows in adjacent slots) are one contiguous block. Why the
padding below: sut/engine/batch.py's docstring (batch invariance).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from sut.model.gpt import NanoCodeGen

Decode = tuple[int, int, int, int]              # (slot, token, retry step, position)
Prefill = tuple[int, list[int], list[int], int]  # (slot, ids, retry steps, first position)

ROW_ALIGN = 8
KEY_ALIGN = 32
CALL_COST = 512  # an attention call's fixed cost, in row x key units of its streaming cost (measured, see _runs)


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


def slot_major(cache: Tensor, lo: int, hi: int, keys: int) -> Tensor:
    """Slots lo..hi-1, positions 0..keys-1 of a layer's keys or values (L, S, nh, hd), as the packed
    (slots, nh, keys, hd) tensor torch's one-query attention takes (matmul would pack it anyway)."""
    return cache[:keys, lo:hi].permute(1, 2, 0, 3).contiguous()



def lay_out(dec: list[Decode], pre: list[Prefill], window: int
            ) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
        """The step's rows, decode rows then each prefill's tokens: slots, tokens, retry steps,
        positions, and the row where each prefill starts."""
        r_slot, r_tok, r_step, r_pos = ([d[j] for d in dec] for j in range(4))
        offs = []
        for slot, ids, steps, start in pre:
            if start + len(ids) > window:
                raise ValueError(f"a row would reach position {start + len(ids)}: the cache holds {window} tokens")
            offs.append(len(r_slot))
            r_slot += [slot] * len(ids)
            r_tok += ids
            r_step += steps
            r_pos += range(start, start + len(ids))
        return r_slot, r_tok, r_step, r_pos, offs


def new_cache(model: NanoCodeGen, n_slots: int) -> Tensor:
    """Zeroed keys and values for ``n_slots`` sequences of up to ``block_size`` positions, on the model's
    device and dtype: (n_layer, 2, block_size, n_slots, n_head, head_dim). Keys and values share one
    tensor, so a step writes a layer's new keys and values for all its rows with one index_put_."""
    cfg = model.config
    return torch.zeros(cfg.n_layer, 2, cfg.block_size, n_slots, cfg.n_head, cfg.n_embd // cfg.n_head,
                       device=model.wte.weight.device, dtype=model.wte.weight.dtype)


class TorchStep:
    """``step(dec, pre)`` -> logits of the decode rows, then of each prefill's last position, over ``kv``
    (``new_cache``'s layout); reads the model's weights live (training may change them between calls)."""

    def __init__(self, model: NanoCodeGen, kv: Tensor) -> None:
        self.model, self.kv = model, kv
        cfg = model.config
        self.device = kv.device
        self.window, self.nh, self.hd = kv.shape[2], cfg.n_head, cfg.n_embd // cfg.n_head
        self._layers = [(b.ln_1.weight, b.ln_1.bias, b.ln_1.eps, b.attn.c_attn.weight, b.attn.c_attn.bias,
                         b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias, b.ln_2.eps,
                         b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias)
                        for b in model.blocks]
        self._key_pos = torch.arange(self.window, device=self.device)

    def __call__(self, dec: list[Decode], pre: list[Prefill]) -> Tensor:
        """``BatchModel.step`` in torch's operators: all rows through the same matmuls (nothing but the decode
        rows and each prefill's last position reaches the LM head).

        The matmuls run on rows padded to a multiple of ROW_ALIGN with copies of row 0; the
        copies write nothing to the cache and attend to nothing. Attention: decode rows in runs
        of slots on views of the cache (padded key lengths); each prefill causally over its own
        slot, exactly its length.
        """
        m, C, dev, nh, hd = self.model, self.model.config.n_embd, self.device, self.nh, self.hd
        n = len(dec)
        r_slot, r_tok, r_step, r_pos, offs = lay_out(dec, pre, self.window)
        M = len(r_slot)
        P, fill = round_up(M, ROW_ALIGN), round_up(M, ROW_ALIGN) - M
        meta = torch.tensor([r_slot + r_slot[:1] * fill, r_tok + r_tok[:1] * fill, r_step + r_step[:1] * fill,
                             r_pos + r_pos[:1] * fill], device=dev)               # (4, P)
        slot_t, tok_t, step_t, pos_t = meta
        att = self._decode_plan(r_slot[:n], r_pos[:n]) if n else None
        pre_plan = [(o, len(ids), slot, start + len(ids),
                     (self._key_pos[:start + len(ids)] <= pos_t[o:o + len(ids), None])[None, None])  # causal
                    for o, (slot, ids, _, start) in zip(offs, pre)]
        y = torch.zeros(P, nh, hd, device=dev, dtype=self.kv.dtype)
        x = m.wte(tok_t) + m.wpe(pos_t) + m.wse(step_t)                         # (P, C), as model._embed
        for i, (w1, b1, e1, wa, ba, wp, bp, w2, b2, e2, wf, bf, wo, bo) in enumerate(self._layers):
            qkv = F.linear(F.layer_norm(x, (C,), w1, b1, e1), wa, ba)           # (P, 3C)
            kv = self.kv[i]                                                     # (2, L, S, nh, hd)
            kv[:, pos_t[:M], slot_t[:M]] = qkv[:M, C:].view(M, 2, nh, hd).transpose(0, 1)
            q = qkv[:, :C].view(P, nh, hd)
            if att is not None:
                self._decode_attention(att, q[:n], kv, y)
            for o, T, slot, end, mask in pre_plan:
                # strided views of the slot: SDPA gives the packed copy's bits (tested), without the copy
                out = F.scaled_dot_product_attention(q[o:o + T].transpose(0, 1)[None], kv[0, :end, slot].transpose(0, 1)[None],
                                                     kv[1, :end, slot].transpose(0, 1)[None], attn_mask=mask)  # (1, nh, T, hd)
                y[o:o + T] = out[0].transpose(0, 1)
            x = x + F.linear(y.view(P, C), wp, bp)
            x = x + F.linear(F.gelu(F.linear(F.layer_norm(x, (C,), w2, b2, e2), wf, bf)), wo, bo)
        head = list(range(n)) + [o + len(ids) - 1 for o, (_, ids, _, _) in zip(offs, pre)]
        h = x[torch.tensor(head + head[:1] * (round_up(len(head), ROW_ALIGN) - len(head)), device=dev)]
        return m.lm_head(m.ln_f(h))[:len(head)]                                 # (len(head), V)

    def _decode_plan(self, slots: list[int], pos: list[int]) -> tuple:
        """Attention runs for the decode rows: slot ranges, their key lengths and masks, and where
        each row sits in the runs (idle slots inside a run attend to key 0 only)."""
        dev, L = self.device, self.window
        where = dict(zip(slots, range(len(slots))))
        runs, run_pos, place = [], [], [0] * len(slots)
        for lo, hi in self._runs(slots, [min(round_up(p + 1, KEY_ALIGN), L) for p in pos]):
            o = len(run_pos)
            for sl in range(lo, hi):
                if sl in where:
                    place[where[sl]] = o + sl - lo
            run_pos += [pos[where[sl]] if sl in where else 0 for sl in range(lo, hi)]
            runs.append((lo, hi, o, min(round_up(max(run_pos[o:]) + 1, KEY_ALIGN), L)))
        rp = torch.tensor(run_pos, device=dev)
        masks = [torch.zeros(hi - lo, 1, 1, keys, device=dev, dtype=self.kv.dtype).masked_fill_(
                 self._key_pos[:keys] > rp[o:o + hi - lo, None, None, None], float("-inf"))   # additive
                 for lo, hi, o, keys in runs]
        if len(run_pos) == len(slots):                                          # dense: runs are the rows
            return runs, masks, None, None, None
        q_run = torch.zeros(len(run_pos), self.nh, 1, self.hd, device=dev, dtype=self.kv.dtype)
        y_run = torch.zeros(len(run_pos), self.nh, 1, self.hd, device=dev, dtype=self.kv.dtype)
        return runs, masks, torch.tensor(place, device=dev), q_run, y_run

    @staticmethod
    def _decode_attention(plan: tuple, q: Tensor, kv: Tensor, y: Tensor) -> None:
        """y[:n] = one-query attention of the n decode rows ``q`` (n, nh, hd) over their slots."""
        runs, masks, place, q_run, y_run = plan
        n, nh, hd = q.shape
        if place is None:
            for (lo, hi, o, keys), mask in zip(runs, masks):
                y[o:o + hi - lo] = attend(q[o:o + hi - lo, :, None], slot_major(kv[0], lo, hi, keys),
                                          slot_major(kv[1], lo, hi, keys), mask).view(hi - lo, nh, hd)
            return
        q_run.index_copy_(0, place, q[:, :, None])
        for (lo, hi, o, keys), mask in zip(runs, masks):
            y_run[o:o + hi - lo] = attend(q_run[o:o + hi - lo], slot_major(kv[0], lo, hi, keys),
                                          slot_major(kv[1], lo, hi, keys), mask)
        y[:n] = y_run.index_select(0, place).view(n, nh, hd)

    @staticmethod
    def _runs(rows: list[int], keys: list[int], call: int = CALL_COST) -> list[tuple[int, int]]:
        """Slot ranges [lo, hi) covering the sorted decoding ``rows`` (``keys``: each row's padded key
        length). A call reads (hi - lo) x its longest key length and costs ``call`` on top; a row joins
        the current run when that is cheaper than opening a new one (greedy). Merging never changes a
        row's result: idle slots attend to key 0 and a longer padded key length is masked."""
        runs = [[rows[0], rows[0] + 1, keys[0]]]
        for r, k in zip(rows[1:], keys[1:]):
            lo, hi, kk = runs[-1]
            if (r + 1 - lo) * max(kk, k) <= (hi - lo) * kk + call + k:
                runs[-1] = [lo, r + 1, max(kk, k)]
            else:
                runs.append([r, r + 1, k])
        return [(lo, hi) for lo, hi, _ in runs]
