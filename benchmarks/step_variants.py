"""The decode step's implementation choices, each against its alternatives, in one run.

    python -m benchmarks.step_variants

1. Whole decode steps of ``BatchModel.step``, interleaved rep by rep (random weights of the
   shipped checkpoint's shape): the engine's native step (``sut/engine/native/step.py``) against
   torch's operators (``backend="torch"``: 8-row padded matmuls, torch's one-query attention
   ``sut.engine.batch.attend`` over views of the slot cache, ``index_put`` cache writes) and
   against that with ``F.scaled_dot_product_attention`` swapped in for ``attend``.
2. The native attention alone, per layer, with the GB/s at which it reads the keys and values.
3. Memory streaming of a step's keys and values (``torch.sum``) in the position-major layout
   against the earlier slot-major one: why the cache is position-major.
4. ``torch.compile``: the part of a layer that is not attention (out-projection, residual,
   LayerNorm, MLP, residual, the next layer's LayerNorm and QKV projection: four matmuls and
   their elementwise neighbours, the fusion gpt-fast relies on) eager against inductor-compiled,
   on the row counts the engine runs (multiples of 8). Compiled once with dynamic shapes; the
   compile time is printed and not counted. (The torch backend's alternative to native code.)
5. The native step's matmul (``sut.engine.native.library.linear``) against ``F.linear`` (MKL) on the step's
   shapes, GFLOP/s.
6. The native attention with a step's rows in adjacent cache slots (what the engine's
   compaction keeps, ``Engine._compact``) against the same rows scattered over a 64-slot
   cache (what a run's tail had before it), interleaved rep by rep.
7. A step's token choice (``BatchModel.pick``): torch's (argmax, then ``token_choice.choose`` for the
   sampled rows) against the native one (sut/engine/native/sampling.c: the same tokens), for a full batch
   with a few retry rows and for retry rows alone.

Ratios above 1 mean the engine's choice (native; eager over compiled) is faster. docs/engine.md
quotes the figures with the machine they ran on.
"""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

import sut.engine.batch as engine_batch
from sut.model import torch_step
from benchmarks.bench_util import random_model
from sut.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from sut.platform_info import cpu_model


def sdpa_attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """The candidate: PyTorch's fused attention, same inputs and mask as ``torch_step.attend``."""
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def best_us(fns: dict[str, Callable[[], object]], reps: int, calls: int) -> dict[str, float]:
    """Best microseconds per call of each function, interleaved rep by rep (a busy spell hits all alike)."""
    best = {name: float("inf") for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t) / calls * 1e6)
    return best


def backend_ab(model: torch.nn.Module, batches: list[int], context: int, reps: int, steps: int) -> list[dict]:
    """Whole decode steps: the native step, torch's operators, and torch's with SDPA swapped in."""
    rows = []
    shipped = torch_step.attend
    for n in batches:
        dec = [(s, 7, 0, context) for s in range(n)]
        bms = {name: engine_batch.BatchModel(model, n, backend=name) for name in ("native", "torch")}
        with torch.inference_mode():
            for bm in bms.values():
                for s in range(n):
                    bm.step([], [(s, [5] * context, [0] * context, 0)])

            def run(bm: engine_batch.BatchModel, fn: Callable = shipped) -> Callable[[], object]:
                def step() -> object:
                    torch_step.attend = fn
                    try:
                        return bm.step(dec, [])
                    finally:
                        torch_step.attend = shipped
                return step
            t = best_us({"native": run(bms["native"]), "attend": run(bms["torch"]),
                         "sdpa": run(bms["torch"], sdpa_attend)}, reps, steps)
        rows.append({"batch": n, "context": context, **t})
    return rows


def kernel_alone(cases: list[tuple[int, int]], reps: int, calls: int, nh: int = 4, hd: int = 32,
                 window: int = 512, layers: int = 4) -> list[dict]:
    """The native attention alone: us per layer and the GB/s of keys and values it reads, for each (rows,
    context), cycling ``layers`` cache layers as a step does (so they do not all sit in cache). Rows
    sit in adjacent slots of a cache of ``window`` positions, as in an Offline step."""
    from sut.engine.native import library as native
    g = torch.Generator().manual_seed(0)
    out = []
    for n, ctx in cases:
        kvs = [torch.randn(2, window, n, nh, hd, generator=g) for _ in range(layers)]
        q, y = torch.randn(n, nh, hd, generator=g), torch.empty(n, nh, hd)
        slots, lens = torch.arange(n), torch.full((n,), ctx)
        scratch = torch.empty(native.scratch_floats(n, nh, window))

        def step() -> None:
            for kv in kvs:
                native.decode_attention(q, kv, slots, lens, y, scratch)
        us = best_us({"kernel": step}, reps, calls)["kernel"] / layers
        mb = 2 * n * ctx * nh * hd * 4 / 1e6
        out.append({"n": n, "context": ctx, "mb": mb, "us": us, "gb_s": mb / us * 1e3})
    return out


def layout_streaming(reps: int, slots: int = 128, nh: int = 4, hd: int = 32, ctx: int = 129,
                     window: int = 512) -> dict[str, float]:
    """GB/s of ``torch.sum`` over the keys and values a step reads (4 layers, ``slots`` rows at ``ctx``
    positions), in the engine's position-major layout and in the earlier slot-major one, where each
    (slot, head) holds its positions in a block of its own with the unused window after it."""
    layers = 4
    pm = [torch.randn(2, window, slots, nh, hd) for _ in range(layers)]
    sm = [torch.randn(2, slots, nh, window, hd) for _ in range(layers)]
    gb = layers * 2 * slots * nh * ctx * hd * 4 / 1e9
    t = best_us({"position-major": lambda: [c[:, :ctx].sum() for c in pm],
                 "slot-major": lambda: [c[:, :, :, :ctx].sum() for c in sm]}, reps, 3)
    return {k: gb / (v / 1e6) for k, v in t.items()}


def slots_ab(cases: list[tuple[int, int]], reps: int, calls: int, n_slots: int = 64, nh: int = 4, hd: int = 32,
             window: int = 512, layers: int = 4) -> list[dict]:
    """The native attention over ``layers`` cache layers of ``n_slots`` slots, us per step, for each
    (rows, context): rows in slots 0..n-1 against the same rows spread over the cache (slot 29 r mod
    n_slots). Same values in both places, so the outputs must be equal."""
    from sut.engine.native import library as native
    g = torch.Generator().manual_seed(0)
    out = []
    for n, ctx in cases:
        places = {"adjacent": torch.arange(n), "scattered": torch.tensor(sorted(29 * r % n_slots for r in range(n)))}
        caches = {"adjacent": [torch.randn(2, window, n_slots, nh, hd, generator=g) for _ in range(layers)]}
        caches["scattered"] = [torch.zeros_like(kv) for kv in caches["adjacent"]]
        for kv, other in zip(caches["adjacent"], caches["scattered"]):   # the same rows, elsewhere
            other[:, :, places["scattered"]] = kv[:, :, places["adjacent"]]
        q, y = torch.randn(n, nh, hd, generator=g), torch.empty(n, nh, hd)
        lens = torch.full((n,), ctx)
        scratch = torch.empty(native.scratch_floats(n, nh, window))
        ys = {}

        def run(name: str) -> Callable[[], None]:
            def step() -> None:
                for kv in caches[name]:
                    native.decode_attention(q, kv, places[name], lens, y, scratch)
                ys[name] = y.clone()
            return step
        t = best_us({name: run(name) for name in places}, reps, calls)
        assert torch.equal(ys["adjacent"], ys["scattered"])
        out.append({"n": n, "context": ctx, **t})
    return out


def dense_part(model: torch.nn.Module) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """Layer 0's non-attention work followed by layer 1's QKV projection, as ``BatchModel.step`` runs it."""
    b0, b1 = model.blocks[0], model.blocks[1]
    C = model.config.n_embd

    def f(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        x = x + F.linear(y, b0.attn.c_proj.weight, b0.attn.c_proj.bias)
        h = F.layer_norm(x, (C,), b0.ln_2.weight, b0.ln_2.bias, b0.ln_2.eps)
        x = x + F.linear(F.gelu(F.linear(h, b0.mlp.c_fc.weight, b0.mlp.c_fc.bias)), b0.mlp.c_proj.weight,
                         b0.mlp.c_proj.bias)
        return x, F.linear(F.layer_norm(x, (C,), b1.ln_1.weight, b1.ln_1.bias, b1.ln_1.eps),
                           b1.attn.c_attn.weight, b1.attn.c_attn.bias)
    return f


def compile_ab(model: torch.nn.Module, row_counts: list[int], reps: int, calls: int) -> tuple[float, list[dict]]:
    """Eager vs inductor on the dense part; returns (compile seconds, rows)."""
    eager = dense_part(model)
    compiled = torch.compile(eager, dynamic=True)
    C = model.config.n_embd
    g = torch.Generator().manual_seed(0)
    rows, compile_s = [], 0.0
    with torch.inference_mode():
        for m in row_counts:
            x, y = torch.randn(m, C, generator=g), torch.randn(m, C, generator=g)
            t0 = time.perf_counter()
            out = compiled(x, y)        # the first call compiles; later row counts reuse the dynamic graph
            compile_s += time.perf_counter() - t0
            diff = (out[1] - eager(x, y)[1]).abs().max().item()
            t = best_us({"eager": lambda: eager(x, y), "compiled": lambda: compiled(x, y)}, reps, calls)
            rows.append({"rows": m, **t, "ratio": t["compiled"] / t["eager"], "max_abs_diff": diff})
    return compile_s, rows


def matmul_ab(model: torch.nn.Module, row_counts: list[int], reps: int, calls: int) -> list[dict]:
    """GFLOP/s of the native matmul (the kernel the native step chose for this CPU and model) and of
    F.linear on layer 0's four weights and the LM head."""
    from sut.engine.native import library as native
    chosen = engine_batch.BatchModel(model, 1, backend="native").describe()["native_kernel"]
    kernel = native.tiles().index(chosen["tile"])
    b = model.blocks[0]
    layers = {"qkv": b.attn.c_attn, "proj": b.attn.c_proj, "fc": b.mlp.c_fc, "out": b.mlp.c_proj}
    weights = [(name, m.weight.detach(), m.bias.detach()) for name, m in layers.items()]
    weights.append(("lm_head", model.lm_head.weight.detach(), torch.zeros(model.config.vocab_size)))
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for n in row_counts:
            for name, w, bias in weights:
                x, packed = torch.randn(n, w.shape[1], generator=g), native.pack_panels(w, kernel)
                t = best_us({"native": lambda: native.linear(x, packed, bias, kernel),
                             "torch": lambda: F.linear(x, w, bias)}, reps, calls)
                flop = 2 * n * w.numel()
                rows.append({"rows": n, "weight": name, "shape": f"{w.shape[1]}x{w.shape[0]}",
                             "native_gflops": flop / t["native"] / 1e3, "torch_gflops": flop / t["torch"] / 1e3})
    return rows


def pick_ab(model: torch.nn.Module, cases: list[tuple[int, int]], reps: int, calls: int) -> list[dict]:
    """Section 7: us per ``pick`` of ``rows`` logits with ``sampled`` retry rows, torch's way vs native."""
    from sut.agent import attempt_seed
    V = model.config.vocab_size
    native_bm = engine_batch.BatchModel(model, 1, backend="native")
    torch_bm = engine_batch.BatchModel(model, 1, backend="torch")
    out = []
    for rows, n_sampled in cases:
        logits = torch.randn(rows, V, generator=torch.Generator().manual_seed(rows)) * 3
        sampled = list(range(n_sampled))
        keys, counters = [attempt_seed(0, f"t{i}", 1) for i in sampled], [0] * n_sampled
        bms = {"torch": torch_bm, "native": native_bm}
        us = best_us({k: (lambda k=k: bms[k].pick(logits, sampled, 0.7, 20, keys, counters)) for k in bms}, reps, calls)
        out.append({"rows": rows, "sampled": n_sampled, **us})
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.step_variants", description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[1, 32, 128], help="decode rows per step (attention A/B)")
    p.add_argument("--context", type=int, default=64, help="tokens already in each row's cache")
    p.add_argument("--rows", type=int, nargs="+", default=[8, 32, 128], help="row counts for the compile A/B")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--steps", type=int, default=50, help="timed steps (or calls) per rep")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-compile", action="store_true", help="skip the torch.compile A/B (its compile takes ~20 s)")
    a = p.parse_args(argv)
    for name in ("reps", "steps", "threads", "context"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be at least 1, got {getattr(a, name)}")
    torch.set_num_threads(a.threads)
    shipped, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT, "cpu")     # its shape and tokenizer
    model = random_model(shipped.config, tok, "cpu")
    print(f"machine: {cpu_model(detail=True)}, torch {torch.__version__}, {a.threads} thread(s)")
    print(f"\n1. decode step, us (context {a.context}): the native step, torch's operators (attend), "
          f"torch's with scaled_dot_product_attention")
    print(f"  {'batch':>6} {'native':>9} {'attend':>9} {'sdpa':>9} {'attend/native':>14} {'sdpa/attend':>12}")
    for r in backend_ab(model, a.batch, a.context, a.reps, a.steps):
        print(f"  {r['batch']:>6} {r['native']:>9.0f} {r['attend']:>9.0f} {r['sdpa']:>9.0f} "
              f"{r['attend'] / r['native']:>13.2f}x {r['sdpa'] / r['attend']:>11.2f}x")
    print("\n2. the native attention alone (4 heads x 32, 4 layers cycled as in a step): us per layer, GB/s of keys and values")
    print(f"  {'rows':>5} {'context':>8} {'MB':>6} {'us':>8} {'GB/s':>6}")
    for r in kernel_alone([(1, 129), (8, 64), (32, 129), (128, 129)], a.reps, a.steps):
        print(f"  {r['n']:>5} {r['context']:>8} {r['mb']:>6.2f} {r['us']:>8.0f} {r['gb_s']:>6.1f}")
    bw = layout_streaming(a.reps)
    print("\n3. torch.sum over a batch-128 step's keys and values (4 layers, context 129), GB/s: "
          f"position-major {bw['position-major']:.1f}, slot-major {bw['slot-major']:.1f}")
    if not a.skip_compile:
        compile_s, rows = compile_ab(model, a.rows, a.reps, a.steps * 10)
        print(f"\n4. a layer's dense part, us: eager vs torch.compile (inductor, dynamic; compile {compile_s:.1f} s)")
        print(f"  {'rows':>6} {'eager':>9} {'compiled':>9} {'compiled/eager':>15} {'max |diff|':>11}")
        for r in rows:
            print(f"  {r['rows']:>6} {r['eager']:>9.1f} {r['compiled']:>9.1f} {r['ratio']:>14.2f}x {r['max_abs_diff']:>11.1e}")
    print("\n5. matmul, GFLOP/s: the native step's (sut.engine.native.library.linear) vs F.linear (torch's BLAS)")
    print(f"  {'rows':>6} {'weight':>8} {'in x out':>10} {'native':>8} {'torch':>8} {'native/torch':>13}")
    for r in matmul_ab(model, a.batch, a.reps, a.steps):
        print(f"  {r['rows']:>6} {r['weight']:>8} {r['shape']:>10} {r['native_gflops']:>8.1f} {r['torch_gflops']:>8.1f} "
              f"{r['native_gflops'] / r['torch_gflops']:>12.2f}x")
    print("\n6. the native attention over 4 layers of a 64-slot cache, us: the rows in adjacent slots vs scattered")
    print(f"  {'rows':>5} {'context':>8} {'adjacent':>9} {'scattered':>10} {'scattered/adjacent':>19}")
    for r in slots_ab([(4, 250), (8, 200), (12, 200), (16, 200), (32, 100)], a.reps, max(1, a.steps // 5)):
        print(f"  {r['n']:>5} {r['context']:>8} {r['adjacent']:>9.0f} {r['scattered']:>10.0f} "
              f"{r['scattered'] / r['adjacent']:>18.2f}x")
    print("\n7. a step's token choice (BatchModel.pick: argmax, top-k sampling of the retry rows), us: torch's vs native")
    print(f"  {'rows':>5} {'sampled':>8} {'torch':>8} {'native':>8} {'torch/native':>13}")
    for r in pick_ab(model, [(64, 0), (64, 4), (4, 4), (1, 1)], a.reps, a.steps):
        print(f"  {r['rows']:>5} {r['sampled']:>8} {r['torch']:>8.0f} {r['native']:>8.0f} {r['torch'] / r['native']:>12.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
