"""The engine's batched forward as native calls (``sut/engine/native/decode_step.c``): every layer, the cache
write, the attention and the LM head, for the decode rows and the prefills' tokens of a step.

Why: a decode step of this model is ~80 small torch operators plus matmuls padded to 8 rows for
batch invariance; their fixed costs are most of the step (docs/engine.md). The native step does
the same arithmetic in one call and computes every row on its own (one fused multiply-add chain
per matmul output, in input order; row-local LayerNorm, GELU and attention), so a row's bits
never depend on the other rows, and needs no padding rows. A prefill's tokens are rows like any
other: each layer writes all rows' keys before any row attends, so they attend causally through
the cache, and a token's result is the same whether it was prefilled or decoded.

It reads a snapshot of the model's weights (the matmul weights in ``pack_panels`` layout for the
matmul kernel chosen for this CPU and these shapes, sut/engine/native/tiles.py), taken at construction:
build it after the weights are final, as ``BatchModel`` does.
"""
from __future__ import annotations

import bisect
import ctypes

import torch
from torch import Tensor

from sut.engine.native import tiles as native_tiles
from sut.model.gpt import NanoCodeGen
from sut.engine.native.library import _load, int64_rows, pack_panels


CHUNK = 256   # rows per native call: bounds the scratch; a prefill longer than this spans calls in order


class NativeStep:
    """``native(meta, head)`` -> logits (len(head), V) of the rows ``head`` (increasing) of the step
    whose rows are the columns of ``meta`` (4, n) int64: slots, tokens, retry steps, positions.
    A sequence's rows must come in position order (sut/engine/native/decode_step.c)."""

    def __init__(self, model: NanoCodeGen, kv: Tensor) -> None:
        cfg = model.config
        self.C, self.nh, self.V, self.n_layer = cfg.n_embd, cfg.n_head, cfg.vocab_size, cfg.n_layer
        self.n_retry, self.kv = model.wse.num_embeddings, kv
        assert kv.is_contiguous() and kv.dtype == torch.float32 and kv.device.type == "cpu"
        self.n_slots, self.window = kv.shape[3], kv.shape[2]
        eps = {b.ln_1.eps for b in model.blocks} | {b.ln_2.eps for b in model.blocks} | {model.ln_f.eps}
        assert len(eps) == 1, f"the native step takes one LayerNorm eps, the model has {sorted(eps)}"
        self.eps = eps.pop()
        C, V = self.C, self.V
        self.tile = native_tiles.choose(((C, 3 * C, self.n_layer), (C, C, self.n_layer), (C, 4 * C, self.n_layer),
                                         (4 * C, C, self.n_layer), (C, V, 1)))
        lib, t = _load(), lambda w: pack_panels(w, self.tile.kernel)
        tensors: list[Tensor] = []
        for b in model.blocks:
            tensors += [b.ln_1.weight, b.ln_1.bias, t(b.attn.c_attn.weight), b.attn.c_attn.bias,
                        t(b.attn.c_proj.weight), b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias,
                        t(b.mlp.c_fc.weight), b.mlp.c_fc.bias, t(b.mlp.c_proj.weight), b.mlp.c_proj.bias]
        tensors += [model.wte.weight, model.wpe.weight, model.wse.weight, model.ln_f.weight, model.ln_f.bias,
                    t(model.lm_head.weight)]
        self._tensors = [x.detach().contiguous().float() for x in tensors]   # kept alive: the pointers below
        self._ptrs = torch.tensor([x.data_ptr() for x in self._tensors], dtype=torch.uint64)
        self._fn = lib.decode_step
        self._scratch = torch.empty(lib.decode_step_scratch(CHUNK, self.C, self.nh, self.window))

    def __call__(self, meta: Tensor, head: list[int]) -> Tensor:
        assert meta.dtype == torch.int64 and meta.shape[0] == 4
        n = meta.shape[1]
        logits = torch.empty(len(head), self.V)
        done = 0                                            # head rows computed so far
        for lo in range(0, n, CHUNK):
            hi = min(lo + CHUNK, n)
            k = bisect.bisect_left(head, hi, lo=done)       # head rows below hi
            part = meta[:, lo:hi].contiguous()
            local = int64_rows([h - lo for h in head[done:k]])
            rc = self._fn(part.data_ptr(), hi - lo, local.data_ptr(), k - done, self._ptrs.data_ptr(), self.n_layer,
                          self.C, self.nh, self.V, self.n_retry, ctypes.c_float(self.eps), self.kv.data_ptr(),
                          self.n_slots, self.window, logits[done:k].data_ptr(), self._scratch.data_ptr(),
                          self.tile.kernel)
            if rc == -1:
                raise ValueError(f"native step: head_dim {self.C // self.nh} is not a multiple of 8 up to 256")
            if rc != 0:
                raise ValueError("native step: a slot, position, token or retry step out of range")
            done = k
        return logits
