"""The engine's batched forward: prefills and one-token decodes of many sequences in one call.

``BatchModel.step`` runs, as rows of one forward, the new tokens of every sequence starting
an attempt and one token for every decoding sequence, each row at its own position in its own
cache slot. The cache is position-major, (layer, k/v, position, slot, head, head_dim): the
keys a step's rows read at one position are one contiguous block. Only the rows that need
logits (decode rows, a prefill's last position) reach the LM head. Two backends:

- ``native`` (sut/engine/native/step.py, sut/engine/native/decode_step.c): every row, prefill tokens included,
  through one C forward; batch invariant by construction (one fused multiply-add chain per
  matmul output, row-local everything else);
- ``torch`` (sut/model/torch_step.py): torch's operators, the path on CUDA and the CPU fallback.

Batch invariance (a task's tokens never depend on what else is in the step) is bit for bit on
the native backend, by construction, on any CPU. The torch backend cannot promise bits: a BLAS
may pick its GEMM kernel by row count (MKL on Intel Sapphire Rapids does, even for the padded
counts below), and a GEMM call per row (one batched call of 1-row GEMMs, or one call each) made
the matmuls 4-17x slower at 32-128 rows (Zen 3).
So its promise is a row's logits within 1e-5 of its largest logit (measured: 2.4e-7 when the
BLAS sees a different row count per batch) and the same greedy token; bit for bit where the
BLAS keeps the measures below (AMD Zen 3 and Zen 4 with MKL). tests/test_engine.py holds each
backend to its promise, ``describe()`` puts it in the engine's stats, and a CPU run on this
backend says so once in its log. Two kernels on CPU change their floating-point reduction order
with the shape of the call (docs/engine.md):

- GEMM: rows the BLAS micro-kernel computes in a full group of 4 differ in the last bits
  from tail rows and from the M=1 (GEMV) path. Every matmul therefore runs on a row count
  padded to a multiple of ROW_ALIGN, so each row always goes through the same
  micro-kernel whatever else is in the step (the padding rows write and attend nothing).
- Attention: the softmax and the P.V reduction depend on the key length's tail. Decode key
  lengths are padded to a multiple of KEY_ALIGN (masked), which gives identical results for
  any padded length and run composition; a prefill attends over exactly its own length,
  which depends on its sequence only.

LayerNorm, GELU, embedding lookups, argmax and the row-wise sampling are row-local. (On CUDA,
cuBLAS chooses algorithms by shape: the padding still helps, but bitwise invariance there is not
claimed.)
"""
from __future__ import annotations

import logging
from functools import lru_cache

import torch
from torch import Tensor

from sut.engine import token_choice
from sut.engine.native import library as native, sampling as native_sampling
from sut.engine.native.step import NativeStep
from sut.model.gpt import NanoCodeGen
from sut.model.torch_step import ROW_ALIGN, Decode, Prefill, TorchStep, lay_out, new_cache, round_up

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def _warn_torch_invariance() -> None:
    """Say once a process that this run's outputs may move with the batch in the last bits (module docstring)."""
    log.warning("torch backend on CPU: a row's logits do not depend on the batch beyond float rounding, but they "
                "are bitwise batch invariant only where the CPU's BLAS keeps it (docs/engine.md); the native "
                "backend is bitwise")


class BatchModel:
    """A model plus a KV cache of ``n_slots`` sequence slots of ``block_size`` positions each.

    ``backend``: "native", "torch", or "auto" (native where it builds and applies: CPU float32).
    ``cache=False``: no cache and no step, only the token choice (``pick``): the no-KV-cache reference way
    runs training's full forward itself, and a cache it never reads would cost n_slots x window x 2 x
    n_layer x d_model floats (512 MiB at 64 slots of 2,048 positions)."""

    def __init__(self, model: NanoCodeGen, n_slots: int, backend: str = "auto", cache: bool = True) -> None:
        self.model = model
        cfg = model.config
        self.device = model.wte.weight.device
        self.window = cfg.block_size
        self.n_slots = max(1, n_slots)
        self.kv = new_cache(model, self.n_slots) if cache else None   # (nl, 2, L, S, nh, hd), sut/model/torch_step.py
        # the native step (sut/engine/native/step.py) where it applies, else torch's operators
        self.backend = native.resolve(backend, self.device, model.wte.weight.dtype,
                                      cfg.n_embd // cfg.n_head) if cache else "torch"
        self._native = NativeStep(model, self.kv) if self.backend == "native" else None
        self._torch = TorchStep(model, self.kv) if cache and self._native is None else None
        if self.backend == "torch" and self.device.type == "cpu":
            _warn_torch_invariance()
        self.native_draws = self.backend == "native"
        # FLOPs of one token through the matmuls (embedding lookups excluded, LM head included)
        self.matmul_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))

    def pick(self, logits: Tensor, sampled: list[int], temperature: float, top_k: int | None, keys: list[int],
             counters: list[int]) -> list[int]:
        """Every row's next token: the argmax, except the rows ``sampled``, drawn at their ``keys`` and token
        ``counters`` (sut/engine/token_choice.py's contract). On the native backend the argmax, the top-k
        scores and the draw are sut/engine/native/sampling.c's, the softmax torch's: the same tokens, a
        fraction of the operator calls."""
        if not self.native_draws:
            return token_choice.choose(logits, sampled, temperature, top_k, keys, counters)
        logits = logits.contiguous()
        tokens = native_sampling.argmax_rows(logits)
        if sampled:
            probs = self._native_probs(logits, sampled, temperature, top_k)
            for i, t in zip(sampled, native_sampling.draw_rows(probs, keys, counters)):
                tokens[i] = t
        return tokens

    @staticmethod
    def _native_probs(logits: Tensor, rows: list[int], temperature: float, top_k: int | None) -> Tensor:
        """The sampled rows' probabilities over rows ``rows`` of contiguous ``logits``: the scores in C
        (torch's where C declines: a NaN, a top_k over 256), the softmax torch's."""
        x = native_sampling.topk_scores(logits, rows, temperature, top_k)
        if x is None:
            x = token_choice.top_k_scores(logits[rows], temperature, top_k)
        return torch.softmax(x, dim=-1)

    def accept(self, logits: Tensor, drafts: list[list[int]], temperature: float, top_k: int | None,
               keys: list[int], counters: list[int]) -> list[list[int]]:
        """The tokens each speculative group yields (``token_choice.accept``): ``logits`` holds, group after
        group, len(draft) + 1 rows; a group's tokens are drawn row by row, row j at token index
        ``counters[g] + j``, while they equal its draft: what sequential decoding would write."""
        logits = logits.contiguous()
        if not self.native_draws:
            return token_choice.accept(logits, drafts, temperature, top_k, keys, counters)
        if temperature <= 0:
            return token_choice.greedy_accept(native_sampling.argmax_rows(logits), drafts)
        probs, out, r = self._native_probs(logits, list(range(logits.shape[0])), temperature, top_k), [], 0
        for draft, key, n0 in zip(drafts, keys, counters):
            out.append(native_sampling.draw_accept(probs[r:r + len(draft) + 1], draft, key, n0))
            r += len(draft) + 1
        return out

    def describe(self) -> dict[str, object]:
        """What runs, for the engine's stats: the backend, the native matmul kernel (CPU, ISA, tile) and
        how far batch invariance holds."""
        return {"backend": self.backend, "native_kernel": self._native.tile.info() if self._native else None,
                "batch_invariance": "bitwise" if self._native else (
                    "to float rounding (bitwise only where the CPU's BLAS keeps it)" if self.device.type == "cpu"
                    else "to float rounding (cuBLAS chooses kernels by shape)")}

    def rows_computed(self, rows: int) -> int:
        """Rows a step of ``rows`` rows runs through the matmuls: torch's pads them to ROW_ALIGN."""
        return rows if self.backend == "native" else round_up(rows, ROW_ALIGN)

    def token_flops(self, context: int) -> int:
        """Model FLOPs to produce one token at ``context`` keys: 2 per matmul weight + QK^T and PV."""
        return self.tokens_flops(1, context)

    def tokens_flops(self, n: int, contexts: int) -> int:
        """``token_flops`` summed over ``n`` tokens whose contexts add up to ``contexts`` (one step's rows)."""
        cfg = self.model.config
        return 2 * self.matmul_params * n + 4 * cfg.n_layer * cfg.n_embd * contexts

    def prefill_flops(self, start: int, end: int) -> int:
        """Model FLOPs to prefill positions start..end-1 (each attends to the keys up to itself)."""
        cfg = self.model.config
        return 2 * self.matmul_params * (end - start) + 4 * cfg.n_layer * cfg.n_embd * sum(range(start + 1, end + 1))

    def move_slot(self, src: int, dst: int, n: int) -> None:
        """Copy positions 0..n-1 of slot ``src`` to slot ``dst`` in every layer (keys and values):
        the sequence continues in ``dst`` with the same bits (the engine's compaction)."""
        if n <= 0:
            return
        if self._native is not None:   # a native memcpy a position: torch's indexing costs ~40 us a call
            nl, _, window, n_slots, nh, hd = self.kv.shape
            if native._load().copy_slot(self.kv.data_ptr(), nl, window, n_slots, nh * hd, src, dst, n) != 0:
                raise ValueError(f"move_slot: slot {src} or {dst} or {n} positions out of range")
        else:
            self.kv[:, :, :n, dst] = self.kv[:, :, :n, src]

    # -- the batched forward -------------------------------------------------------------
    def prefill(self, ids: list[int], steps: list[int], slot: int, start: int) -> Tensor:
        """Run ``ids`` (positions start..) into ``slot``; logits after the last token (V,): a step
        with this one prefill and no decode rows."""
        return self.step([], [(slot, ids, steps, start)])[0]

    def step(self, dec: list[Decode], pre: list[Prefill], spec: list[Prefill] = ()) -> Tensor:
        """One batched forward: a token for each decoding row ``(slot, token, step, pos)`` (sorted by
        slot), the new tokens of each prefill ``(slot, ids, steps, start)`` and of each speculative
        row group ``spec`` (laid out as a prefill: a sequence's last token and its draft). Logits
        (len(dec) + len(pre) + the spec groups' tokens, V): the decode rows, each prefill's last
        position, then every position of each spec group (native backend only).

        With the native step (sut/engine/native/step.py) every row is one row of one call, a prefill's
        tokens included (they attend causally through the cache, sut/engine/native/decode_step.c); with
        ``backend="torch"``, sut/model/torch_step.py.
        """
        if self._native is None:
            assert not spec, "speculative rows need the native backend"
            return self._torch(dec, pre)
        slots, toks, steps, pos, offs = lay_out(dec, [*pre, *spec], self.window)
        head = list(range(len(dec))) + [o + len(ids) - 1 for o, (_, ids, _, _) in zip(offs, pre)]
        for o, (_, ids, _, _) in zip(offs[len(pre):], spec):
            head += range(o, o + len(ids))
        return self._native(native.int64_rows(slots + toks + steps + pos).view(4, -1), head)

    def decode(self, slots: list[int], tokens: list[int], steps: list[int], pos: list[int]) -> Tensor:
        """A step of decode rows only; logits (n, V)."""
        return self.step(list(zip(slots, tokens, steps, pos)), [])
