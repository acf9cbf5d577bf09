"""The engine's batched forward: prefills and one-token decodes of many sequences in one call.

``BatchModel.step`` runs, as rows of one forward, the new tokens of every sequence starting
an attempt and one token for every decoding sequence, each row at its own position in its own
cache slot. The cache is position-major, (layer, k/v, position, slot, head, head_dim): the
keys a step's rows read at one position are one contiguous block. Only the rows that need
logits (decode rows, a prefill's last position) reach the LM head. Two backends:

- ``native`` (sut/engine/native/step.py, sut/engine/native/decode_step.c): every row, prefill tokens included,
  through one C forward; batch invariant by construction (one fused multiply-add chain per
  matmul output, row-local everything else);
- ``torch`` (``torch_step``): torch's operators, the path on CUDA and the CPU fallback.

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
import torch.nn.functional as F
from torch import Tensor

from sut.engine.native import library as native, sampling as native_sampling
from sut.model.gpt import NanoCodeGen
from sut.engine.native.sampling import NativeGenerator
from sut.engine.native.step import NativeStep

log = logging.getLogger(__name__)
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


def top_k_scores(logits: Tensor, temperature: float, top_k: int | None) -> Tensor:
    """Rows of logits as ``sut.agent.sample_next`` scores them before its softmax (row-local)."""
    x = logits.float() / temperature
    if top_k is not None and top_k < x.shape[-1]:
        x = x.masked_fill(x < torch.topk(x, top_k, dim=-1).values[:, -1:], float("-inf"))
    return x


def sample_rows(logits: Tensor, temperature: float, top_k: int | None, gens: list[torch.Generator]) -> list[int]:
    """``sut.agent.sample_next`` for many rows at once: the same tokens, row by row, bit for bit.

    Temperature, top-k and softmax are row-local, so they run once over the batch. The draw
    is the one ``torch.multinomial(probs, 1, generator=g)`` makes (ATen's one-sample path:
    ``argmax(probs / q)`` with ``q ~ Exp(1)`` drawn from ``g``): each row draws its ``q`` from
    its own generator, then one batched divide and argmax. That skips multinomial's
    per-call validity checks, half its cost. tests/test_engine.py pins the equivalence; the native
    backend draws the same tokens in C (``BatchModel.pick``).
    """
    probs = torch.softmax(top_k_scores(logits, temperature, top_k), dim=-1)
    q = torch.empty_like(probs)
    for i, g in enumerate(gens):
        q[i].exponential_(1, generator=g)
    return (probs / q).argmax(-1).tolist()


@lru_cache(maxsize=1)
def _warn_torch_invariance() -> None:
    """Say once a process that this run's outputs may move with the batch in the last bits (module docstring)."""
    log.warning("torch backend on CPU: a row's logits do not depend on the batch beyond float rounding, but they "
                "are bitwise batch invariant only where the CPU's BLAS keeps it (docs/engine.md); the native "
                "backend is bitwise")


class BatchModel:
    """A model plus a KV cache of ``n_slots`` sequence slots of ``block_size`` positions each.

    ``backend``: "native", "torch", or "auto" (native where it builds and applies: CPU float32)."""

    def __init__(self, model: NanoCodeGen, n_slots: int, use_kv_cache: bool = True, backend: str = "auto") -> None:
        self.model = model
        cfg = model.config
        self.device = model.wte.weight.device
        self.window = cfg.block_size
        self.n_slots = max(1, n_slots)
        self.nh, self.hd = cfg.n_head, cfg.n_embd // cfg.n_head
        self.use_kv_cache = use_kv_cache
        if use_kv_cache:
            # keys and values in one tensor: a step writes a layer's new keys and values for all its
            # rows with one index_put_
            # position-major: a step's rows in adjacent slots read one contiguous block per position
            self.kv = torch.zeros(cfg.n_layer, 2, cfg.block_size, self.n_slots, self.nh, self.hd,
                                  device=self.device, dtype=model.wte.weight.dtype)   # (nl, 2, L, S, nh, hd)
            self._layers = [(b.ln_1.weight, b.ln_1.bias, b.ln_1.eps, b.attn.c_attn.weight, b.attn.c_attn.bias,
                             b.attn.c_proj.weight, b.attn.c_proj.bias, b.ln_2.weight, b.ln_2.bias, b.ln_2.eps,
                             b.mlp.c_fc.weight, b.mlp.c_fc.bias, b.mlp.c_proj.weight, b.mlp.c_proj.bias)
                            for b in model.blocks]
        self._key_pos = torch.arange(self.window, device=self.device)
        # the native step (sut/engine/native/step.py) where it applies, else torch's operators; without the KV
        # cache (the reference's way) every token is torch's full forward
        self.backend = native.resolve(backend, self.device, model.wte.weight.dtype, self.hd) if use_kv_cache \
            else "torch"
        self._native = NativeStep(model, self.kv) if self.backend == "native" else None
        if self.backend == "torch" and self.device.type == "cpu" and use_kv_cache:
            _warn_torch_invariance()
        self.native_draws = self.backend == "native" and native_sampling.enabled()
        # FLOPs of one token through the matmuls (embedding lookups excluded, LM head included)
        self.matmul_params = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))

    def generator(self, seed: int) -> torch.Generator | NativeGenerator:
        """A retry's generator for ``sample_rows``: torch's, or on the native backend the same stream in
        native memory (sut/engine/native/sampling.py)."""
        if self.native_draws:
            return NativeGenerator(seed)
        return torch.Generator(device=self.device).manual_seed(seed)

    def pick(self, logits: Tensor, sampled: list[int], temperature: float, top_k: int | None,
             gens: list[torch.Generator] | list[NativeGenerator]) -> list[int]:
        """Every row's next token: the argmax, except the rows ``sampled``, drawn with ``gens`` (what
        ``sut.agent.sample_next`` picks, row by row). On the native backend the argmax, the top-k
        scores and the draw are sut/engine/native/sampling.c's, the softmax torch's: the same bits, a fraction of
        the operator calls."""
        if not self.native_draws:
            tokens = logits.argmax(-1).tolist()
            if sampled:
                for i, t in zip(sampled, sample_rows(logits[sampled], temperature, top_k, gens)):
                    tokens[i] = t
            return tokens
        logits = logits.contiguous()
        tokens = native_sampling.argmax_rows(logits)
        if sampled:
            for i, t in zip(sampled, native_sampling.race(self._native_probs(logits, sampled, temperature, top_k), gens)):
                tokens[i] = t
        return tokens

    @staticmethod
    def _native_probs(logits: Tensor, rows: list[int], temperature: float, top_k: int | None) -> Tensor:
        """sample_next's distribution over rows ``rows`` of contiguous ``logits``: the scores in C
        (torch's where C declines: a NaN, a top_k over 256), the softmax torch's."""
        x = native_sampling.topk_scores(logits, rows, temperature, top_k)
        if x is None:
            x = top_k_scores(logits[rows], temperature, top_k)
        return torch.softmax(x, dim=-1)

    def accept(self, logits: Tensor, drafts: list[list[int]], temperature: float, top_k: int | None,
               gens: list[NativeGenerator]) -> list[list[int]]:
        """The tokens each speculative group yields: ``logits`` holds, group after group, len(draft) + 1
        rows (its positions); each group's tokens are drawn with its generator row by row while they
        equal its draft (sut/engine/native/sampling.c's race_accept): what sequential sampling would draw. Greedy
        (``temperature`` <= 0): each row's argmax while it equals the draft, then the first that does not."""
        logits = logits.contiguous()
        if temperature <= 0:   # speculation runs on the native backend only: pick's argmax
            return greedy_accept(native_sampling.argmax_rows(logits), drafts)
        probs, out, r = self._native_probs(logits, list(range(logits.shape[0])), temperature, top_k), [], 0
        for draft, gen in zip(drafts, gens):
            out.append(native_sampling.race_accept(probs[r:r + len(draft) + 1], draft, gen))
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
        with this one prefill and no decode rows (with no cache: the full forward)."""
        if not self.use_kv_cache:
            return self.full_logits(ids, steps)
        return self.step([], [(slot, ids, steps, start)])[0]

    def full_logits(self, ids: list[int], steps: list[int]) -> Tensor:
        """The reference's way: recompute the whole context for one token; logits (V,)."""
        logits, _ = self.model(torch.tensor([ids], device=self.device), torch.tensor([steps], device=self.device))
        return logits[0, -1]

    def step(self, dec: list[tuple[int, int, int, int]], pre: list[tuple[int, list[int], list[int], int]],
             spec: list[tuple[int, list[int], list[int], int]] = ()) -> Tensor:
        """One batched forward: a token for each decoding row ``(slot, token, step, pos)`` (sorted by
        slot), the new tokens of each prefill ``(slot, ids, steps, start)`` and of each speculative
        row group ``spec`` (laid out as a prefill: a sequence's last token and its draft). Logits
        (len(dec) + len(pre) + the spec groups' tokens, V): the decode rows, each prefill's last
        position, then every position of each spec group (native backend only).

        With the native step (sut/engine/native/step.py) every row is one row of one call, a prefill's
        tokens included (they attend causally through the cache, sut/engine/native/decode_step.c); with
        ``backend="torch"``, ``torch_step``.
        """
        assert self.use_kv_cache, "step() needs the KV cache; without it use full_logits()"
        if self._native is None:
            assert not spec, "speculative rows need the native backend"
            return self.torch_step(dec, pre)
        slots, toks, steps, pos, offs = self._rows(dec, [*pre, *spec])
        head = list(range(len(dec))) + [o + len(ids) - 1 for o, (_, ids, _, _) in zip(offs, pre)]
        for o, (_, ids, _, _) in zip(offs[len(pre):], spec):
            head += range(o, o + len(ids))
        return self._native(native.int64_rows(slots + toks + steps + pos).view(4, -1), head)

    def _rows(self, dec: list[tuple[int, int, int, int]], pre: list[tuple[int, list[int], list[int], int]]
              ) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
        """The step's rows, decode rows then each prefill's tokens: slots, tokens, retry steps,
        positions, and the row where each prefill starts."""
        r_slot, r_tok, r_step, r_pos = ([d[j] for d in dec] for j in range(4))
        offs = []
        for slot, ids, steps, start in pre:
            if start + len(ids) > self.window:
                raise ValueError(f"a row would reach position {start + len(ids)}: the cache holds {self.window} tokens")
            offs.append(len(r_slot))
            r_slot += [slot] * len(ids)
            r_tok += ids
            r_step += steps
            r_pos += range(start, start + len(ids))
        return r_slot, r_tok, r_step, r_pos, offs

    def torch_step(self, dec: list[tuple[int, int, int, int]], pre: list[tuple[int, list[int], list[int], int]]) -> Tensor:
        """``step`` in torch's operators: all rows through the same matmuls (nothing but the decode
        rows and each prefill's last position reaches the LM head).

        The matmuls run on rows padded to a multiple of ROW_ALIGN with copies of row 0; the
        copies write nothing to the cache and attend to nothing. Attention: decode rows in runs
        of slots on views of the cache (padded key lengths); each prefill causally over its own
        slot, exactly its length.
        """
        m, C, dev, nh, hd = self.model, self.model.config.n_embd, self.device, self.nh, self.hd
        n = len(dec)
        r_slot, r_tok, r_step, r_pos, offs = self._rows(dec, pre)
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

    def decode(self, slots: list[int], tokens: list[int], steps: list[int], pos: list[int]) -> Tensor:
        """A step of decode rows only; logits (n, V)."""
        return self.step(list(zip(slots, tokens, steps, pos)), [])

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


def greedy_accept(argmax: list[int], drafts: list[list[int]]) -> list[list[int]]:
    """What greedy decoding writes over speculative groups laid out as in ``BatchModel.accept`` (each group
    len(draft) + 1 rows): row j's argmax is the token after the group's first j draft tokens, so a group
    yields argmaxes while they confirm the draft, and the first that departs from it."""
    out, r = [], 0
    for draft in drafts:
        got = []
        for j in range(len(draft) + 1):
            got.append(argmax[r + j])
            if j == len(draft) or argmax[r + j] != draft[j]:
                break
        out.append(got)
        r += len(draft) + 1
    return out

