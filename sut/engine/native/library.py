"""The engine's native kernels: built once per machine from C, called through ctypes.

One library, built from ``sut/engine/native/decode_step.c`` (which includes ``sut/engine/native/decode_attention.c``):

- ``decode_step``: the whole batched forward of the engine's rows (sut/engine/native/step.py);
- ``decode_attention``: one-query attention of rows over the position-major slot cache;
- ``write_kv``: a step's new keys and values into the cache (what an ``index_put`` writes);
- the token choice: argmax, top-k scores and the counter-based draw (``sut/engine/native/sampling.c``,
  wrapped by sut/engine/native/sampling.py; the contract is sut/engine/token_choice.py's).
``decode_attention`` and ``write_kv`` are the step's parts; the wrappers below call them alone, for tests and benchmarks.

Why native code: a decode step of this model is small, and in eager torch its ~80 operator calls
and 8-row padded matmuls cost more than its arithmetic; torch's one-query attention runs as
batched GEMMs of 1 x head_dim matrices with a per-matrix overhead (docs/engine.md).

The matmul comes in several tile shapes, all built into the library (``tiles()``); the native step
runs the one ``sut/engine/native/tiles.py`` chose for this CPU and the model's shapes.

Build: ``verifier.cbuild`` compiles the C files with the system C compiler (``-O3 -march=native``)
into ``$NANO_CODEGEN_CACHE`` (default ``~/.cache/nano-codegen-agent``), under a name that hashes the
sources, the flags and the CPU (model and feature flags). The compile takes a few seconds and
happens at the first use on a machine. Without a compiler, ``available()`` is False with the reason, and the
engine falls back to torch's operators (``BatchModel(backend="auto")``); asking for the native
backend explicitly then fails with that reason.

Numerics: each row is computed in a fixed order of its own (one fused multiply-add chain per
matmul output, lane sums in a fixed tree, a branch-free exp, positions past its length
contributing exact zeros), so a row's result does not depend on which other rows share the
call: the engine's bitwise batch invariance holds by construction. It agrees with torch to
float rounding (tests/test_attention_kernel.py, tests/test_native_step.py), not bit for bit.
"""
from __future__ import annotations

import array
import ctypes
import logging
from functools import lru_cache
from pathlib import Path

import torch
from torch import Tensor

from sut.platform_info import cpu_flags, cpu_model
from verifier import cbuild

log = logging.getLogger(__name__)
SOURCE = Path(__file__).with_name("decode_step.c")            # includes decode_attention.c, sampling.c
SOURCES = (SOURCE, *(Path(__file__).with_name(f) for f in ("decode_attention.c", "sampling.c")))
# -ffp-contract=off: no multiply-add the source does not spell out (clang contracts by default), so every
# build, whatever the compiler or vector width, computes the same bits (tests/test_native_step.py)
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-shared", "-fPIC", "-std=c11"]
MODES = ("auto", "native", "torch")


class KernelUnavailable(RuntimeError):
    """The kernel cannot be built or loaded here (the message says why and what to do)."""


@lru_cache(maxsize=1)
def _load() -> ctypes.CDLL:
    """The library, built for this CPU (every matmul tile shape is in it: sut/engine/native/tiles.py picks one)."""
    machine = " ".join([cpu_model(detail=True), cpu_flags()])   # -march=native: this CPU's build only
    try:
        lib = cbuild.build("nano_codegen_native", SOURCE, SOURCES, FLAGS, ["-lm"], machine)
    except cbuild.BuildError as e:
        raise KernelUnavailable(str(e)) from e
    return _bind(ctypes.CDLL(str(lib)))


def isa() -> str:
    """The vector instructions this machine's build uses for the matmul: avx512, avx2 or scalar."""
    return {16: "avx512", 8: "avx2"}.get(_load().vector_width(), "scalar")


def tiles() -> list[str]:
    """The matmul kernels built in, as "rows x vectors" tile shapes ("6x2"); kernel k is tiles()[k]."""
    lib = _load()
    return [f"{lib.kernel_rows(k)}x{lib.kernel_vectors(k)}" for k in range(lib.kernel_count())]


def _bind(dll: ctypes.CDLL) -> ctypes.CDLL:
    """Declare the C functions' signatures on a loaded library."""
    p, i64 = ctypes.c_void_p, ctypes.c_int64
    dll.decode_attention.argtypes = [p, i64, p, i64, i64, p, p, i64, i64, i64, ctypes.c_float, p, i64, p, i64, i64]
    dll.decode_attention.restype = ctypes.c_int
    dll.write_kv.argtypes = [p, i64, p, i64, i64, p, p, i64, i64, i64, i64]
    dll.write_kv.restype = ctypes.c_int
    dll.decode_step.argtypes = [p, i64, p, i64, p, i64, i64, i64, i64, i64, ctypes.c_float, p, i64, i64, p, p, i64]
    dll.decode_step.restype = ctypes.c_int
    dll.decode_step_scratch.argtypes = [i64, i64, i64, i64]
    dll.decode_attention_scratch.argtypes = [i64, i64, i64]
    dll.decode_attention_scratch.restype = i64
    dll.decode_step_scratch.restype = i64
    for f in (dll.vector_width, dll.kernel_count):
        f.argtypes, f.restype = [], ctypes.c_int
    for f in (dll.kernel_rows, dll.kernel_vectors):
        f.argtypes, f.restype = [ctypes.c_int], ctypes.c_int
    dll.linear_packed.argtypes = [i64, p, i64, i64, p, p, i64, p]
    dll.linear_packed.restype = ctypes.c_int
    dll.philox_uniform.argtypes = [ctypes.c_uint64, ctypes.c_uint64]
    dll.philox_uniform.restype = ctypes.c_double
    dll.draw_rows.argtypes = [p, i64, i64, p, p, p]
    dll.draw_rows.restype = None
    dll.copy_slot.argtypes = [p, i64, i64, i64, i64, i64, i64, i64]
    dll.copy_slot.restype = ctypes.c_int
    dll.draw_accept.argtypes = [p, i64, i64, p, ctypes.c_uint64, ctypes.c_uint64, p]
    dll.draw_accept.restype = i64
    dll.argmax_rows.argtypes = [p, i64, i64, p]
    dll.argmax_rows.restype = None
    dll.topk_scores.argtypes = [p, i64, p, i64, ctypes.c_float, i64, p]
    dll.topk_scores.restype = ctypes.c_int
    return dll


def int64_rows(values: list[int]) -> Tensor:
    """A CPU int64 tensor of ``values`` through an ``array`` buffer, for the kernels' row indices:
    ``torch.tensor(list)`` converts element by element, several times slower at a step's sizes."""
    if not values:
        return torch.empty(0, dtype=torch.int64)
    return torch.frombuffer(array.array("q", values), dtype=torch.int64)


def available() -> tuple[bool, str]:
    """(True, "") if the kernel loads here, else (False, why)."""
    try:
        _load()
        return True, ""
    except (KernelUnavailable, OSError) as e:
        return False, str(e)


def resolve(mode: str, device: torch.device, dtype: torch.dtype, head_dim: int) -> str:
    """The backend a BatchModel uses: "native" or "torch". ``mode`` "auto" takes native where it applies
    (CPU, float32, head_dim a multiple of 8) and builds; "native" insists (KernelUnavailable if not)."""
    if mode not in MODES:
        raise ValueError(f"backend {mode!r}: choose one of {', '.join(MODES)}")
    if mode == "torch":
        return "torch"
    fits = device.type == "cpu" and dtype == torch.float32 and head_dim % 8 == 0 and head_dim <= 256
    ok, why = available() if fits else (False, f"it runs on CPU float32 with head_dim a multiple of 8 (here "
                                                f"{device.type} {dtype}, head_dim {head_dim})")
    if ok:
        return "native"
    if mode == "native":
        raise KernelUnavailable(f"native backend unavailable: {why}; use --backend torch")
    if device.type == "cpu":
        log.warning("native backend unavailable (%s): using torch's operators", why)
    return "torch"


def scratch_floats(n_rows: int, n_head: int, window: int) -> int:
    """Scratch ``decode_attention`` needs for up to ``n_rows`` rows: scores, maxima, sums and lengths."""
    return _load().decode_attention_scratch(n_rows, n_head, window)


def decode_attention(q: Tensor, kv: Tensor, slots: Tensor, lens: Tensor, out: Tensor, scratch: Tensor) -> None:
    """out[r] = attention of q[r] (nh, hd) over keys 0..lens[r]-1 of slot slots[r] of ``kv``.

    ``kv``: one contiguous layer of the engine's cache, (2, L, S, nh, hd), position-major (the
    kernel's layout, sut/engine/native/decode_attention.c). ``q`` and ``out`` may be row-strided views (heads
    contiguous); ``slots``/``lens`` contiguous int64 CPU tensors; ``scratch`` float32 with at least
    ``scratch_floats(len(q), nh, L)`` entries."""
    n, nh, hd = q.shape
    _, window, n_slots, _, _ = kv.shape
    assert q.stride(2) == 1 and q.stride(1) == hd and out.stride(2) == 1 and out.stride(1) == hd
    assert kv.is_contiguous() and slots.dtype == lens.dtype == torch.int64 and slots.is_contiguous()
    assert lens.is_contiguous() and scratch.numel() >= scratch_floats(n, nh, window)
    rc = _load().decode_attention(q.data_ptr(), q.stride(0), kv.data_ptr(), kv.stride(1), kv.stride(0),
                                  slots.data_ptr(), lens.data_ptr(), n, nh, hd, hd ** -0.5, out.data_ptr(),
                                  out.stride(0), scratch.data_ptr(), n_slots, window)
    if rc == -1:
        raise ValueError(f"decode attention kernel refused head_dim {hd} (a multiple of 8, at most 256)")
    if rc != 0:
        raise ValueError(f"decode attention: a slot outside 0..{n_slots - 1} or a length outside 1..{window}")


def write_kv(qkv: Tensor, kv: Tensor, slots: Tensor, pos: Tensor, m: int) -> None:
    """kv[:, pos[r], slots[r]] = the keys and values of qkv row r (columns C..3C), for r < m: what
    ``kv[:, pos, slots] = qkv[:m, C:].view(m, 2, nh, hd).transpose(0, 1)`` writes, without
    index_put's overhead.

    ``qkv`` (rows, 3C) with contiguous rows; ``kv`` a contiguous cache layer (2, L, S, nh, hd);
    ``slots``/``pos`` contiguous int64 CPU tensors of at least m entries."""
    _, window, n_slots, nh, hd = kv.shape
    assert qkv.stride(1) == 1 and qkv.shape[1] == 3 * nh * hd and kv.is_contiguous()
    assert slots.dtype == pos.dtype == torch.int64 and slots.is_contiguous() and pos.is_contiguous()
    assert slots.numel() >= m and pos.numel() >= m
    rc = _load().write_kv(qkv.data_ptr(), qkv.stride(0), kv.data_ptr(), kv.stride(1), kv.stride(0),
                          slots.data_ptr(), pos.data_ptr(), m, nh * hd, n_slots, window)
    if rc != 0:
        raise ValueError(f"write_kv: a slot outside 0..{n_slots - 1} or a position outside 0..{window - 1}")


def pack_panels(weight: Tensor, kernel: int) -> Tensor:
    """A Linear's (out, in) weight in matmul kernel ``kernel``'s layout: (in, out) cut into column panels
    of its tile's width (vectors x vector width; the last may be narrower), each panel's rows
    contiguous, one after the other (sut/engine/native/decode_step.c): a tile reads its panel front to back."""
    lib = _load()
    pw = lib.kernel_vectors(kernel) * lib.vector_width()
    if pw <= 0:
        raise ValueError(f"no matmul kernel {kernel}: this build has {lib.kernel_count()} ({', '.join(tiles())})")
    wt = weight.detach().float().t()
    return torch.cat([wt[:, j:j + pw].reshape(-1) for j in range(0, wt.shape[1], pw)])


def linear(x: Tensor, packed: Tensor, bias: Tensor, kernel: int) -> Tensor:
    """``F.linear(x, weight, bias)`` through the native step's matmul kernel ``kernel``, ``packed =
    pack_panels(weight, kernel)``: each output is its bias then one fused multiply-add per input in
    order, whatever the row count or the kernel."""
    n, K = x.shape
    N = bias.numel()
    assert x.is_contiguous() and bias.is_contiguous() and packed.numel() == K * N
    y = torch.empty(n, N)
    if _load().linear_packed(kernel, x.data_ptr(), n, K, packed.data_ptr(), bias.data_ptr(), N, y.data_ptr()):
        raise ValueError(f"no matmul kernel {kernel}: this build has {', '.join(tiles())}")
    return y
