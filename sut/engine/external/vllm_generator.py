"""vLLM in this process, as a ``Generator`` for sut/engine/external/engine.py (``--engine vllm``).

vLLM's engine runs on one thread of ours that owns it: it adds the requests the agent loop
queues, calls ``LLMEngine.step()`` while any is unfinished (continuous batching, automatic prefix
caching: a retry's prompt is the previous attempt's transcript plus the feedback, so only the new
tokens are prefilled) and hands each request's tokens back to the loop as they finish. Prompts go in
as token ids (``skip_tokenizer_init``): the transcript is ours, token for token, as natively.

In-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``, the ``uni`` executor) is vLLM's fastest way here and
starts in about 16 s here (eager; `--vllm-compile` adds torch.compile's time); the issue that asked for this
engine measured vLLM's separate engine process 1.5-2x slower on 2 cores.
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sut.engine.external.engine import GenOut, GenRequest

log = logging.getLogger(__name__)

INSTALL_HINT = ("install the extra with `pip install -e '.[vllm]'` then remove the torchvision, torchaudio and "
                "torchcodec it brings (README, 'Other engines'); on a GPU machine install vLLM's CUDA build instead")


class EngineUnavailable(RuntimeError):
    """The engine asked for cannot run here (not installed, or it cannot load the checkpoint); one line, with the fix."""


def vllm_environment() -> None:
    """vLLM's settings for this process, unless the user set them: its engine core in this process, a 1 GiB KV
    cache (its default reserves far more), and its log on stderr at ERROR (stdout is for our own output,
    e.g. ``sut.evaluate --json -``). Must run before vLLM is imported."""
    for key, value in (("VLLM_ENABLE_V1_MULTIPROCESSING", "0"), ("VLLM_CPU_KVCACHE_SPACE", "1"),
                       ("VLLM_LOGGING_LEVEL", "ERROR"), ("VLLM_LOGGING_STREAM", "ext://sys.stderr")):
        os.environ.setdefault(key, value)
    if os.environ["VLLM_LOGGING_LEVEL"] == "ERROR":   # this one warns before vLLM's logging is set up, on every CPU run
        logging.getLogger("vllm.triton_utils.importing").setLevel(logging.ERROR)


def vllm_version() -> str | None:
    """The installed vLLM's version (vllm or vllm-cpu distribution), or None; imports nothing heavy."""
    from importlib import metadata  # noqa: PLC0415

    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return None


def check_vllm(checkpoint: Path) -> None:
    """EngineUnavailable unless vLLM is installed and knows the checkpoint's architecture (read from its
    config.json: what ``vllm.LLM`` would load), checked before a run writes anything."""
    import importlib.util  # noqa: PLC0415
    import json  # noqa: PLC0415

    try:
        found = importlib.util.find_spec("vllm") is not None
    except ValueError:   # a vllm module without a spec (hidden on purpose): not installed, as far as we are concerned
        found = False
    if not found:
        raise EngineUnavailable(f"--engine vllm: vLLM is not installed; {INSTALL_HINT}")
    try:
        config = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise EngineUnavailable(f"--engine vllm: cannot read {checkpoint}/config.json ({e})") from None
    if "model_type" not in config:
        raise EngineUnavailable(f"--engine vllm: {checkpoint} is not a Hugging Face model directory (its config.json has "
                                "no model_type); pass an HF-format checkpoint such as checkpoints/agentic")
    if not (Path(checkpoint) / "model.safetensors").is_file():
        raise EngineUnavailable(f"--engine vllm: {checkpoint} has no model.safetensors; pass a checkpoint written by "
                                "`python -m sut.train --suite agentic`")
    vllm_environment()
    try:
        from vllm import ModelRegistry  # noqa: PLC0415
    except ImportError as e:
        raise EngineUnavailable(f"--engine vllm: vLLM does not import ({e}); {INSTALL_HINT}") from None
    archs = config.get("architectures") or []
    supported = set(ModelRegistry.get_supported_archs())
    if not archs or not all(a in supported for a in archs):
        raise EngineUnavailable(f"--engine vllm: vLLM {vllm_version()} cannot load {checkpoint}: its architectures "
                                f"{archs} are not among vLLM's (GPT2LMHeadModel, LlamaForCausalLM, ...); export it "
                                "in a supported architecture")
    _check_head_size(checkpoint, config)


def _check_head_size(checkpoint: Path, config: dict) -> None:
    """vLLM's CPU attention has kernels for some head sizes only (32, 64, 80, ...); a model with another one
    loads and then fails every step, so it is refused here, before anything runs."""
    from vllm.platforms import current_platform  # noqa: PLC0415

    if not current_platform.is_cpu() or not config.get("n_embd") or not config.get("n_head"):
        return
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend  # noqa: PLC0415

    head = config["n_embd"] // config["n_head"]
    if not CPUAttentionBackend.supports_head_size(head):
        raise EngineUnavailable(f"--engine vllm: vLLM's CPU attention has no kernel for {checkpoint}'s head size {head} "
                                f"(it has {CPUAttentionBackend.get_supported_head_sizes()}); use --engine native, "
                                "or vLLM on a GPU")


class VLLMGenerator:
    """One in-process vLLM engine, stepped on a thread of its own; see the module docstring."""

    name = "vllm"

    def __init__(self, checkpoint: Path, max_batch: int, window: int, seed: int = 0, prefix_caching: bool = True,
                 compile: bool = False) -> None:
        check_vllm(checkpoint)
        vllm_environment()
        import vllm  # noqa: PLC0415

        # chunked prefill off: vLLM 0.32's CPU runner crashes when a seeded request's prefill is split
        # ("CPU Generator does not use offset"); sut/engine/external/vllm_server.py says the same for the server
        self.options = {"max_num_seqs": max_batch, "max_model_len": window, "enable_prefix_caching": prefix_caching,
                        "dtype": "float32", "enforce_eager": not compile, "distributed_executor_backend": "uni",
                        "seed": seed, "enable_chunked_prefill": False}
        t0 = time.perf_counter()
        try:
            llm = vllm.LLM(model=str(checkpoint), skip_tokenizer_init=True, **self.options)
        except Exception as e:  # noqa: BLE001 - vLLM raises many kinds; the user needs one line
            raise EngineUnavailable(f"--engine vllm: vLLM cannot load {checkpoint}: "
                                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        self.load_s = time.perf_counter() - t0
        self._engine = llm.llm_engine
        self._params = vllm.SamplingParams
        from vllm.sampling_params import RequestOutputKind  # noqa: PLC0415

        self._delta = RequestOutputKind.DELTA
        self._inbox: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._pending: dict[str, _Request] = {}
        self._ids = itertools.count()
        self._broken: BaseException | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="vllm-step", daemon=True)
        self._thread.start()

    def describe(self) -> dict[str, Any]:
        return {"engine": "vllm", "version": vllm_version(), "mode": "in-process", "options": self.options,
                "load_s": round(self.load_s, 2)}

    async def generate(self, prompt_ids: list[int], req: GenRequest,
                       on_first: Callable[[], None] | None = None) -> GenOut:
        if self._broken is not None:
            raise RuntimeError(f"engine failed earlier: {self._broken}")
        loop = asyncio.get_running_loop()
        r = _Request(loop, loop.create_future(), on_first, time.perf_counter())
        rid = str(next(self._ids))
        params = self._params(max_tokens=req.max_tokens, temperature=req.temperature, top_k=req.top_k or 0,
                              seed=req.seed if req.temperature > 0 else None, stop_token_ids=[req.stop_id],
                              detokenize=False, output_kind=self._delta)
        self._inbox.put(("add", (rid, prompt_ids, params, r)))
        self._wake.set()
        try:
            return await r.future
        except asyncio.CancelledError:
            self._inbox.put(("abort", rid))
            self._wake.set()
            raise

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)

    # -- the step thread --------------------------------------------------------------------
    def _serve(self) -> None:
        eng = self._engine
        while not self._stopping:
            self._take_inbox()
            if not self._pending:
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                outputs = eng.step()
            except Exception as e:  # noqa: BLE001 - the engine is gone: fail what waits, refuse what comes
                log.exception("vLLM step failed")
                self._broken = e
                for r in self._pending.values():
                    r.resolve(exc=RuntimeError(f"vLLM step failed: {type(e).__name__}: {e}"))
                self._pending.clear()
                continue
            for o in outputs:
                r = self._pending.get(o.request_id)
                if r is None:
                    continue
                r.tokens.extend(o.outputs[0].token_ids)
                if r.first_s is None and r.tokens:
                    r.first_s = time.perf_counter() - r.t0
                    if r.on_first is not None:
                        r.loop.call_soon_threadsafe(r.on_first)
                if o.finished:
                    del self._pending[o.request_id]
                    r.resolve(GenOut(list(r.tokens), r.first_s or 0.0, int(o.num_cached_tokens or 0)))

    def _take_inbox(self) -> None:
        while True:
            try:
                kind, item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if kind == "abort":
                if self._pending.pop(item, None) is not None:
                    self._engine.abort_request([item])
                continue
            rid, prompt_ids, params, r = item
            try:
                self._engine.add_request(rid, {"prompt_token_ids": prompt_ids}, params)
            except Exception as e:  # noqa: BLE001 - a request vLLM refuses fails that task alone
                r.resolve(exc=RuntimeError(f"vLLM refused the request: {type(e).__name__}: {e}"))
                continue
            self._pending[rid] = r


class _Request:
    """A request in flight: where its result goes (a future on the agent loop) and its tokens so far."""

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future, on_first: Callable[[], None] | None,
                 t0: float) -> None:
        self.loop, self.future, self.on_first, self.t0 = loop, future, on_first, t0
        self.tokens: list[int] = []
        self.first_s: float | None = None

    def resolve(self, out: GenOut | None = None, exc: BaseException | None = None) -> None:
        def settle() -> None:
            if not self.future.done():
                self.future.set_exception(exc) if exc is not None else self.future.set_result(out)
        try:
            self.loop.call_soon_threadsafe(settle)
        except RuntimeError:   # the agent loop has closed: nobody waits for this answer any more
            pass
