"""The decode-attention kernel (sut/engine/native/library.py, sut/engine/native/decode_attention.c), built and run for real."""
from __future__ import annotations

import pytest
import torch

from sut.engine.native import library as ak


def reference(q: torch.Tensor, kv: torch.Tensor, slots: list[int], lens: list[int]) -> torch.Tensor:
    """Softmax attention in float64, one row at a time."""
    out = []
    for r, (s, n) in enumerate(zip(slots, lens)):
        k, v = kv[0, :n, s].transpose(0, 1).double(), kv[1, :n, s].transpose(0, 1).double()   # (nh, n, hd)
        w = torch.softmax((k @ q[r].double()[:, :, None])[..., 0] * q.shape[-1] ** -0.5, -1)   # (nh, n)
        out.append((w[:, None] @ v)[:, 0])
    return torch.stack(out).float()


def call(q, kv, slots, lens, out=None):
    out = torch.full(q.shape, float("nan")) if out is None else out
    scratch = torch.empty(ak.scratch_floats(len(slots), q.shape[1], kv.shape[1]))
    ak.decode_attention(q, kv, torch.tensor(slots), torch.tensor(lens), out, scratch)
    return out


def test_the_kernel_builds_on_this_machine() -> None:
    """CI machines have a C compiler: the engine's fast path must be the one tested."""
    ok, why = ak.available()
    assert ok, why


@pytest.mark.parametrize("hd", [16, 24, 32, 64])
def test_matches_softmax_attention(hd: int) -> None:
    """Every length tail (1, 7, 8, 9, ..., the whole window), strided query rows, the fixed and generic head sizes."""
    g = torch.Generator().manual_seed(hd)
    nh, window = 4, 96
    kv = torch.randn(2, window, 6, nh, hd, generator=g) * 2
    lens = [1, 7, 8, 9, 33, window]
    slots = [5, 0, 3, 3, 1, 2]
    qkv = torch.randn(len(lens), 3 * nh * hd, generator=g)
    q = qkv[:, : nh * hd].view(len(lens), nh, hd)                 # row stride 3C, as the engine passes it
    got = call(q, kv, slots, lens)
    assert (got - reference(q, kv, slots, lens)).abs().max() < 2e-6


def test_a_rows_result_does_not_depend_on_the_other_rows() -> None:
    g = torch.Generator().manual_seed(1)
    kv = torch.randn(2, 200, 8, 4, 32, generator=g)
    q = torch.randn(8, 4, 32, generator=g)
    lens = [150, 3, 77, 200, 1, 64, 65, 12]
    full = call(q, kv, list(range(8)), lens)
    for r in (0, 3, 6):
        assert torch.equal(call(q[r:r + 1], kv, [r], [lens[r]])[0], full[r])
    # keys past a row's length are never read: changing them changes nothing
    kv[:, 77:, 2] = 1e9
    assert torch.equal(call(q, kv, list(range(8)), lens)[2], full[2])


def test_writes_only_its_rows_of_the_output() -> None:
    kv = torch.randn(2, 16, 2, 4, 32)
    out = torch.zeros(5, 4, 32)
    call(torch.randn(2, 4, 32), kv, [0, 1], [16, 4], out)
    assert out[:2].abs().sum() > 0 and torch.equal(out[2:], torch.zeros(3, 4, 32))


@pytest.mark.parametrize("slots, lens", [([2], [4]), ([-1], [4]), ([0], [0]), ([0], [17])])
def test_out_of_range_rows_are_refused_not_read(slots, lens) -> None:
    kv = torch.randn(2, 16, 2, 4, 32)
    with pytest.raises(ValueError, match="outside"):
        call(torch.randn(1, 4, 32), kv, slots, lens)


def test_resolve_picks_and_refuses() -> None:
    cpu = torch.device("cpu")
    assert ak.resolve("auto", cpu, torch.float32, 32) == "native"
    assert ak.resolve("torch", cpu, torch.float32, 32) == "torch"
    assert ak.resolve("auto", cpu, torch.float64, 32) == "torch"          # the kernel is float32 only
    with pytest.raises(ak.KernelUnavailable, match="--backend torch"):
        ak.resolve("native", cpu, torch.float32, 12)
    with pytest.raises(ValueError, match="choose one of auto, native, torch"):
        ak.resolve("fast", cpu, torch.float32, 32)


def test_no_compiler_falls_back_in_auto_and_fails_in_native_mode(monkeypatch, tmp_path, caplog) -> None:
    """A machine without a C compiler: auto uses torch's operators with a warning; --backend native
    fails with the reason and the fix. (A fresh cache dir, so nothing built earlier is found.)"""
    monkeypatch.setenv("NANO_CODEGEN_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "")
    monkeypatch.setenv("PATH", str(tmp_path))
    ak._load.cache_clear()
    try:
        assert ak.available() == (False, "no C compiler found (set $CC or install gcc)")
        assert ak.resolve("auto", torch.device("cpu"), torch.float32, 32) == "torch"
        assert "native backend unavailable" in caplog.text
        with pytest.raises(ak.KernelUnavailable, match="no C compiler found.*--backend torch"):
            ak.resolve("native", torch.device("cpu"), torch.float32, 32)
    finally:
        ak._load.cache_clear()


def test_builds_into_a_fresh_cache_under_a_machine_specific_name(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("NANO_CODEGEN_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("NANO_CODEGEN_TILE", "4x2")   # no tuning: the default build and the forced tile's
    ak._load.cache_clear()
    try:
        assert ak.available()[0]
        built = list((tmp_path / "c").iterdir())
        assert 1 <= len(built) <= 2
        assert all(b.name.startswith("nano_codegen_native-") and b.suffix == ".so" for b in built)
    finally:
        ak._load.cache_clear()


def test_write_kv_writes_what_index_put_writes() -> None:
    g = torch.Generator().manual_seed(2)
    nh, hd, C = 4, 32, 128
    qkv = torch.randn(10, 3 * C, generator=g)
    slots, pos = torch.tensor([0, 3, 3, 1, 2, 0, 5]), torch.tensor([0, 7, 8, 63, 5, 1, 30])
    ours, theirs = torch.zeros(2, 64, 6, nh, hd), torch.zeros(2, 64, 6, nh, hd)
    ak.write_kv(qkv, ours, slots, pos, 7)
    theirs[:, pos, slots] = qkv[:7, C:].view(7, 2, nh, hd).transpose(0, 1)
    assert torch.equal(ours, theirs)
    for bad_slots, bad_pos in (([6], [0]), ([0], [64]), ([-1], [0])):
        with pytest.raises(ValueError, match="outside"):
            ak.write_kv(qkv, ours, torch.tensor(bad_slots), torch.tensor(bad_pos), 1)
