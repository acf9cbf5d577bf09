"""Where a decode step's time goes (engine_peers' breakdown section): the native step's parts timed alone, and
timers and forward hooks on vLLM's own calls and modules."""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any



def best_ms(fns: dict[str, Callable[[], object]], reps: int = 5) -> dict[str, float]:
    """Best milliseconds per call of each function, interleaved rep by rep; enough calls for ~20 ms a rep."""
    calls = {}
    for name, fn in fns.items():
        t = time.perf_counter()
        fn()
        calls[name] = max(1, min(200, int(0.02 / max(time.perf_counter() - t, 1e-6))))
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(reps):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            best[name] = min(best[name], (time.perf_counter() - t) / calls[name] * 1e3)
    return best


def native_parts(model: Any, batch: int, context: int) -> dict[str, Any]:
    """The native decode step at ``batch`` rows and ``context`` keys, and its parts timed alone (ms): every
    layer's four matmuls, the LM head, every layer's attention (over the step's own cache), the argmax.

    The parts are separate ctypes calls here but one C call inside the step, so the cost of a call (timed on a
    1-row, 8-wide matmul and a 1-row, 1-key attention) is taken off each: ``*_raw`` keeps the figures before."""
    import torch   # noqa: PLC0415

    from sut.engine.native import library as native   # noqa: PLC0415
    from sut.engine.batch import BatchModel   # noqa: PLC0415

    with torch.inference_mode():
        bm = BatchModel(model, batch)
        if bm.backend != "native":
            return {"unavailable": f"the native step does not run here (backend {bm.backend})"}
        cfg = model.config
        C, nh, V = cfg.n_embd, cfg.n_head, cfg.vocab_size
        kernel = native.tiles().index(bm.describe()["native_kernel"]["tile"])
        g = torch.Generator().manual_seed(0)
        xs = {C: torch.randn(batch, C, generator=g), 4 * C: torch.randn(batch, 4 * C, generator=g)}
        layers = [(native.pack_panels(m.weight, kernel), m.bias.detach().contiguous(), m.weight.shape[1])
                  for b in model.blocks for m in (b.attn.c_attn, b.attn.c_proj, b.mlp.c_fc, b.mlp.c_proj)]
        head = (native.pack_panels(model.lm_head.weight, kernel), torch.zeros(V))
        q = torch.randn(batch, nh, C // nh, generator=g)
        y = torch.empty_like(q)
        slots, lens = torch.arange(batch), torch.full((batch,), context + 1)
        scratch = torch.empty(native.scratch_floats(batch, nh, bm.window))
        logits = torch.randn(batch, V, generator=g)
        dec = [(s, 7, 0, context) for s in range(batch)]   # the cache's contents do not change the time
        tiny_x, tiny_w, tiny_b = torch.randn(1, 8), native.pack_panels(torch.randn(8, 8), kernel), torch.zeros(8)
        tiny_q, tiny_y, tiny_kv = torch.randn(1, 1, 8), torch.empty(1, 1, 8), torch.randn(2, 2, 1, 1, 8)
        zero, one = torch.zeros(1, dtype=torch.int64), torch.ones(1, dtype=torch.int64)
        tiny_scratch = torch.empty(native.scratch_floats(1, 1, 2))

        def matmuls() -> None:
            for packed, bias, k in layers:
                native.linear(xs[k], packed, bias, kernel)

        def attention() -> None:
            for layer in range(cfg.n_layer):
                native.decode_attention(q, bm.kv[layer], slots, lens, y, scratch)

        t = best_ms({"forward": lambda: bm.step(dec, []), "matmul": matmuls,
                     "lm_head": lambda: native.linear(xs[C], *head, kernel), "attention": attention,
                     "pick": lambda: bm.pick(logits, [], 0.0, None, [], []),
                     "linear_call": lambda: native.linear(tiny_x, tiny_w, tiny_b, kernel),
                     "attention_call": lambda: native.decode_attention(tiny_q, tiny_kv, zero, one, tiny_y,
                                                                       tiny_scratch)})
    return net_of_calls(t, len(layers), cfg.n_layer, context)


def net_of_calls(t: dict[str, float], n_linear: int, n_layer: int, context: int) -> dict[str, Any]:
    """native_parts' figures less the cost of the separate ctypes calls (one C call inside the step), the raw
    timings kept beside them; what the parts leave of the forward is the other model ops."""
    out = {"context": context, "forward": t["forward"], "pick": t["pick"], "matmul_raw": t["matmul"],
           "lm_head_raw": t["lm_head"], "attention_raw": t["attention"],
           "call_overhead_us": {"linear": t["linear_call"] * 1e3, "attention": t["attention_call"] * 1e3}}
    out["matmul"] = t["matmul"] - n_linear * t["linear_call"]
    out["lm_head"] = t["lm_head"] - t["linear_call"]
    out["attention"] = t["attention"] - n_layer * t["attention_call"]
    out["other_model"] = t["forward"] - out["matmul"] - out["lm_head"] - out["attention"]
    return out


class _Clock:
    """Wall time of wrapped methods and hooked modules, per engine step (a dict of seconds by part)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.cur: dict[str, float] | None = None
        self._undo: list[Callable[[], None]] = []
        self._open: dict[int, float] = {}

    def add(self, key: str, dt: float) -> None:
        if self.cur is not None:
            self.cur[key] = self.cur.get(key, 0.0) + dt

    def wrap(self, obj: Any, name: str, key: str, outer: bool = False,
             seen: Callable[[Any], None] | None = None) -> None:
        orig = getattr(obj, name)

        def timed(*args: Any, **kw: Any) -> Any:
            if outer:
                self.cur = {}
            t = time.perf_counter()
            try:
                out = orig(*args, **kw)
            finally:
                self.add(key, time.perf_counter() - t)
                if outer:
                    self.steps.append(self.cur)
                    self.cur = None
            if seen is not None:
                seen(out)
            return out

        setattr(obj, name, timed)
        self._undo.append(lambda: delattr(obj, name))

    def hook(self, module: Any, key: str) -> None:
        def pre(m: Any, *_: Any) -> None:
            self._open[id(m)] = time.perf_counter()

        def post(m: Any, *_: Any) -> None:
            self.add(key, time.perf_counter() - self._open.pop(id(m)))

        hs = [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
        self._undo.append(lambda: [h.remove() for h in hs])

    def undo(self) -> None:
        for f in reversed(self._undo):
            f()
        self._undo.clear()


def vllm_profile(llm: Any, prompts: list, params: Any, batch: int) -> dict[str, Any]:
    """One forced-length generation with timers on vLLM's own calls; the mean of its decode-only steps (ms)."""
    try:
        from vllm.model_executor.layers.attention import Attention   # noqa: PLC0415
        from vllm.model_executor.layers.linear import LinearBase   # noqa: PLC0415

        eng = llm.llm_engine
        core = eng.engine_core.engine_core
        runner = core.model_executor.driver_worker.worker.model_runner
        model = runner.model
    except (ImportError, AttributeError) as e:
        return {"unavailable": f"vLLM's internals are not where this vLLM version kept them ({e})"}
    clock = _Clock()
    decode_step: list[bool] = []
    clock.wrap(eng, "step", "step", outer=True)
    clock.wrap(core.scheduler, "schedule", "schedule", seen=lambda out: decode_step.append(
        out.total_num_scheduled_tokens == len(out.num_scheduled_tokens) == batch))
    clock.wrap(core.scheduler, "update_from_output", "update")
    clock.wrap(core.model_executor, "execute_model", "execute")
    clock.wrap(core.model_executor, "sample_tokens", "sample")
    clock.wrap(model, "compute_logits", "lm_head")
    clock.hook(model, "forward")
    clock.hook(runner.sampler, "sampler")
    n_attn, n_linear = hook_layers(clock, model, Attention, LinearBase)
    t = time.perf_counter()
    try:
        llm.generate(prompts, params, use_tqdm=False)
    finally:
        wall = time.perf_counter() - t
        clock.undo()
    steps = [s for s in clock.steps if s.get("schedule") is not None]
    flags = decode_step[:len(steps)]
    dec = [s for s, d in zip(steps, flags) if d][2:]   # decode-only steps, the first two left out (warm-up)
    if not dec or not n_attn or not n_linear:
        return {"unavailable": f"no decode-only step was seen ({len(steps)} steps, {n_attn} attention and "
                               f"{n_linear} linear modules hooked)"}

    # each part's median over the decode steps: one preempted step on a shared machine does not move it (medians
    # of parts need not add up to the median step exactly)
    per_step = [step_parts(s) for s in dec]
    out = {k: statistics.median(p[k] for p in per_step) for k in per_step[0]}
    out.update(steps=len(steps), decode_steps=len(dec), attention_modules=n_attn, linear_modules=n_linear,
               loop_other=1e3 * (wall - sum(s.get("step", 0.0) for s in clock.steps)) / max(len(clock.steps), 1))
    return out


def hook_layers(clock: _Clock, model: Any, attention: type, linear: type) -> tuple[int, int]:
    """Time every attention and linear module of vLLM's model; how many of each were hooked (none: wrong internals)."""
    n_attn = n_linear = 0
    for m in model.modules():
        if isinstance(m, attention):
            clock.hook(m, "attention")
            n_attn += 1
        elif isinstance(m, linear):
            clock.hook(m, "matmul")
            n_linear += 1
    return n_attn, n_linear


def step_parts(s: dict[str, float]) -> dict[str, float]:
    """One hooked vLLM step's seconds by timer as the breakdown's parts, ms (the rest of each level by difference)."""
    g = {k: 1e3 * s.get(k, 0.0) for k in ("step", "schedule", "update", "execute", "sample", "forward", "matmul",
                                           "attention", "lm_head", "sampler")}
    return {"hooked_step": g["step"], "schedule": g["schedule"], "update": g["update"],
            "engine_other": g["step"] - g["schedule"] - g["update"] - g["execute"] - g["sample"],
            "runner_other": g["execute"] + g["sample"] - g["forward"] - g["lm_head"] - g["sampler"],
            "forward": g["forward"], "matmul": g["matmul"], "lm_head": g["lm_head"], "attention": g["attention"],
            "other_model": g["forward"] - g["matmul"] - g["attention"], "pick": g["sampler"]}
