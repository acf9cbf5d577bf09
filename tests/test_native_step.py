"""The native batched forward (sut/engine/native/step.py, sut/engine/native/decode_step.c), built and run for real against torch."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sut.engine.native import library as native, step as native_step
from sut.engine.batch import BatchModel
from sut.model.gpt import GPTConfig, NanoCodeGen


def model_of(n_embd: int = 64, n_head: int = 4, seed: int = 0) -> NanoCodeGen:
    torch.manual_seed(seed)
    m = NanoCodeGen(GPTConfig(vocab_size=200, block_size=300, n_layer=2, n_head=n_head, n_embd=n_embd)).eval()
    with torch.no_grad():                  # trained-looking scales: LayerNorm and biases away from 1 and 0
        for name, p in m.named_parameters():
            if "ln" in name or "bias" in name:
                p.add_(torch.randn_like(p) * 0.3)
    return m


def steps_of(bm: BatchModel, seqs: list[list[int]]) -> list[torch.Tensor]:
    """Prefill each sequence but its last token into its own slot, then one step decoding all last tokens
    beside a fresh prefill in another slot: every kind of row."""
    with torch.inference_mode():
        for slot, ids in enumerate(seqs):
            bm.step([], [(slot, ids[:-1], [1] * (len(ids) - 1), 0)])
        dec = [(slot, ids[-1], 2, len(ids) - 1) for slot, ids in enumerate(seqs)]
        return [bm.step(dec, [(len(seqs), seqs[-1][:9], [0] * 9, 0)]).clone(), bm.kv.clone()]


@pytest.mark.parametrize("n_embd, n_head", [(64, 4), (96, 4), (48, 2)])
def test_native_step_matches_the_torch_backend(n_embd: int, n_head: int) -> None:
    """Logits and cache agree with torch's operators to float rounding, for head_dim 16, 24 and 24 with
    widths whose last weight panel is narrower than a tile."""
    model = model_of(n_embd, n_head)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, 200, (n,), generator=g).tolist() for n in (2, 17, 40, 120)]
    nat, kv_nat = steps_of(BatchModel(model, 6, backend="native"), seqs)
    ref, kv_ref = steps_of(BatchModel(model, 6, backend="torch"), seqs)
    assert nat.shape == ref.shape == (5, 200)
    assert (nat - ref).abs().max() < 2e-4 * ref.abs().max()
    assert torch.equal(nat.argmax(-1), ref.argmax(-1))
    assert (kv_nat - kv_ref).abs().max() < 1e-4


def test_a_token_prefilled_or_decoded_gives_the_same_bits() -> None:
    """Prefill rows attend causally through the cache like decode rows, so a transcript prefilled at
    once, in pieces, or a token at a time gives identical logits and cache."""
    model = model_of()
    ids = torch.randint(0, 200, (30,), generator=torch.Generator().manual_seed(2)).tolist()
    bm = BatchModel(model, 3, backend="native")
    with torch.inference_mode():
        whole = bm.step([], [(0, ids, [0] * 30, 0)])[0].clone()
        bm.step([], [(1, ids[:11], [0] * 11, 0)])
        pieces = bm.step([], [(1, ids[11:], [0] * 19, 11)])[0].clone()
        for p, t in enumerate(ids):
            one = bm.step([(2, t, 0, p)], [])[0].clone()
    assert torch.equal(whole, pieces) and torch.equal(whole, one)
    assert torch.equal(bm.kv[:, :, :30, 0], bm.kv[:, :, :30, 1]) and torch.equal(bm.kv[:, :, :30, 0], bm.kv[:, :, :30, 2])


def test_a_step_split_over_calls_gives_the_same_bits(monkeypatch) -> None:
    """A step of more rows than one native call takes (CHUNK) runs in position order over several calls:
    the same logits and cache as in one call."""
    model = model_of()
    g = torch.Generator().manual_seed(3)
    pre = [(s, torch.randint(0, 200, (n,), generator=g).tolist(), [0] * n, 0) for s, n in enumerate((50, 7, 90))]
    outs = []
    for chunk in (native_step.CHUNK, 13):
        monkeypatch.setattr(native_step, "CHUNK", chunk)
        bm = BatchModel(model, 3, backend="native")
        with torch.inference_mode():
            outs.append((bm.step([], pre).clone(), bm.kv.clone()))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_bad_rows_are_refused_before_anything_is_written() -> None:
    model = model_of()
    bm = BatchModel(model, 2, backend="native")
    before = bm.kv.clone()
    for dec in ([(0, 200, 0, 3)], [(2, 5, 0, 3)], [(0, 5, 16, 3)], [(0, 5, 0, 300)]):   # token, slot, step, position
        with pytest.raises(ValueError, match="out of range"):
            bm.step(dec, [])
    assert torch.equal(bm.kv, before)


@pytest.mark.parametrize("n_out", [384, 96, 40, 7])
def test_native_matmul_matches_f_linear_and_ignores_the_other_rows(n_out: int) -> None:
    """Whole panels, a narrower last panel of whole vectors, and columns past the last vector; every
    tile shape built in gives the same bits, for a row alone or among others."""
    g = torch.Generator().manual_seed(n_out)
    x, w, b = torch.randn(21, 128, generator=g), torch.randn(n_out, 128, generator=g), torch.randn(n_out, generator=g)
    first = None
    for kernel in range(len(native.tiles())):
        packed = native.pack_panels(w, kernel)
        y = native.linear(x, packed, b, kernel)
        assert (y - F.linear(x, w, b)).abs().max() < 1e-4
        for r in (0, 8, 20):       # a row alone, the first of a tile, a tail row: the same bits
            assert torch.equal(native.linear(x[r:r + 1].contiguous(), packed, b, kernel)[0], y[r])
        first = y if first is None else first
        assert torch.equal(y, first), native.tiles()[kernel]


def _isa_builds() -> list[str]:
    """-march values this CPU runs besides native: AVX2+FMA (8-wide vectors, 4-row tiles) where it has
    them, and plain x86-64 (SSE2, the scalar matmul with fmaf)."""
    from sut.platform_info import cpu_flags
    import platform
    if platform.machine() not in ("x86_64", "AMD64"):
        return []
    flags = cpu_flags().split()
    return (["x86-64-v3"] if {"avx2", "fma"} <= set(flags) else []) + ["x86-64"]


@pytest.mark.parametrize("march", _isa_builds())
def test_every_vector_width_computes_the_same_bits(monkeypatch, tmp_path, march: str) -> None:
    """The native step built for AVX-512, AVX2 or plain SSE2 gives identical logits and cache: every
    matmul output is the same fused multiply-add chain, and nothing else may be contracted."""
    model = model_of(96, 4)
    g = torch.Generator().manual_seed(4)
    seqs = [torch.randint(0, 200, (n,), generator=g).tolist() for n in (3, 30, 70)]
    native_out = steps_of(BatchModel(model, 4, backend="native"), seqs)
    monkeypatch.setattr(native, "FLAGS", [f if f != "-march=native" else f"-march={march}" for f in native.FLAGS])
    monkeypatch.setenv("NANO_CODEGEN_CACHE", str(tmp_path))
    monkeypatch.setenv("NANO_CODEGEN_TILE", "4x2")   # AVX2 and scalar builds have it: the widths are under test
    native._load.cache_clear()
    try:
        ok, why = native.available()
        if not ok and "could not build" in why:
            pytest.skip(f"this compiler has no -march={march}: {why}")
        assert ok, why
        other = steps_of(BatchModel(model, 4, backend="native"), seqs)
    finally:
        native._load.cache_clear()
    assert torch.equal(native_out[0], other[0]) and torch.equal(native_out[1], other[1])


def test_every_tile_shape_computes_the_same_bits(monkeypatch) -> None:
    """The run-time tile choice (sut/engine/native/tiles.py) cannot change an output: a whole step (prefills,
    decode rows, the cache) under each kernel of this build gives the same bits."""
    model = model_of(96, 4)
    g = torch.Generator().manual_seed(5)
    seqs = [torch.randint(0, 200, (n,), generator=g).tolist() for n in (2, 17, 41, 12, 5, 9, 30, 3, 22, 14, 8, 6, 19,
                                                                           11, 4, 27)]   # up to 17 rows a step
    outs = {}
    for tile in native.tiles():
        monkeypatch.setenv("NANO_CODEGEN_TILE", tile)
        bm = BatchModel(model, 17, backend="native")
        assert bm.describe()["native_kernel"]["tile"] == tile
        assert bm.describe()["native_kernel"]["chosen_by"] == "NANO_CODEGEN_TILE"
        outs[tile] = steps_of(bm, seqs)
    first = next(iter(outs.values()))
    for tile, out in outs.items():
        assert torch.equal(first[0], out[0]) and torch.equal(first[1], out[1]), tile


def test_the_tile_is_timed_once_per_machine_and_model_and_can_be_forced(monkeypatch, tmp_path, caplog) -> None:
    """The first choice times every kernel on the model's shapes and writes it to the cache; a later
    process reads it; NANO_CODEGEN_TILE forces a tile of this build and a bad one is ignored, said."""
    from sut.engine.native import tiles as native_tiles

    shapes = ((64, 192, 2), (64, 64, 2), (256, 64, 2), (64, 200, 1))
    monkeypatch.delenv("NANO_CODEGEN_TILE", raising=False)
    monkeypatch.setattr(native_tiles, "_chosen", {})
    timed = native_tiles.choose(shapes, tmp_path, rounds=2)
    assert timed.chosen_by == "timing" and timed.tile in native.tiles() and native.tiles()[timed.kernel] == timed.tile
    assert set(timed.ms) == set(native.tiles()) and min(timed.ms.values()) == timed.ms[timed.tile]
    assert native_tiles.choose(shapes, tmp_path) is timed              # this process remembers it
    monkeypatch.setattr(native_tiles, "_chosen", {})                  # a later process: the cache file
    again = native_tiles.choose(shapes, tmp_path)
    assert (again.chosen_by, again.tile, again.ms) == ("cache", timed.tile, timed.ms)
    assert len(list(tmp_path.glob("tile-*.json"))) == 1
    other = native.tiles()[-1]
    monkeypatch.setenv("NANO_CODEGEN_TILE", other)
    assert native_tiles.choose(shapes, tmp_path).tile == other
    monkeypatch.setenv("NANO_CODEGEN_TILE", "20x9")
    assert native_tiles.choose(shapes, tmp_path).tile == timed.tile
    assert "NANO_CODEGEN_TILE=20x9 is not a tile of this" in caplog.text
    info = again.info()
    assert info["isa"] == {16: "avx512", 8: "avx2"}.get(info["vector_width"], "scalar") and info["cpu"]


def greedy_first_attempts_agree(suite: str, chunk: int = 64) -> tuple[int, int]:
    """Greedy first attempts of every frozen task of ``suite`` on the native backend, with the torch backend
    fed the same tokens beside it: (positions, positions whose argmaxes differ).

    Every position's logits must agree to float rounding; where the two argmaxes differ the native row's
    best two logits must be a near-tie (within that rounding)."""
    from sut.model.checkpoint import load_checkpoint
    from sut.model import transcript as tr
    from sut.tasks.suites import DEFAULTS, load_tasks

    d = DEFAULTS[suite]
    model, tok, _ = load_checkpoint(d.checkpoint)
    tasks = load_tasks(suite)
    nat, ref = BatchModel(model, chunk, backend="native"), BatchModel(model, chunk, backend="torch")
    positions = differ = 0
    with torch.inference_mode():
        for lo in range(0, len(tasks), chunk):
            prompts = [tr.prompt_prefix(tok, t.prompt).ids for t in tasks[lo:lo + chunk]]
            pre = [(s, ids, [0] * len(ids), 0) for s, ids in enumerate(prompts)]
            a, b = nat.step([], pre), ref.step([], pre)
            live, pos, made = list(range(len(prompts))), [len(p) for p in prompts], [0] * len(prompts)
            while live:
                scale = a.abs().amax(-1, keepdim=True)
                assert ((a - b).abs() <= 2e-4 * scale).all(), f"{suite}: logits apart beyond float rounding"
                top2 = a.topk(2, -1).values
                for r, (x, y) in enumerate(zip(a.argmax(-1).tolist(), b.argmax(-1).tolist())):
                    positions += 1
                    if x != y:
                        differ += 1
                        assert top2[r, 0] - top2[r, 1] <= 2e-4 * scale[r, 0], f"{suite}: argmaxes differ off a tie"
                nxt = a.argmax(-1).tolist()
                keep = [i for i, s in enumerate(live) if nxt[i] != tok.end_id and made[s] + 1 < d.max_new_tokens]
                live, toks = [live[i] for i in keep], [nxt[i] for i in keep]
                for s in live:
                    made[s] += 1
                dec = [(s, t, 0, pos[s] + made[s] - 1) for s, t in zip(live, toks)]
                if dec:
                    a, b = nat.step(dec, []), ref.step(dec, [])
    return positions, differ


@pytest.mark.skipif(not native.available()[0], reason="native kernels unavailable")
@pytest.mark.parametrize("suite", ["basic", "agentic"])
def test_both_backends_agree_on_every_evaluation_task(suite: str) -> None:
    """The one contract, two implementations (sut/model/torch_step.py and the native step): on every frozen
    evaluation task's greedy first attempt, with the shipped checkpoint, the logits agree to float
    rounding at every position and the greedy tokens are the same except at near-ties."""
    positions, differ = greedy_first_attempts_agree(suite)
    assert positions > 10_000 and differ <= 1 + positions // 10_000, (positions, differ)
