"""The batched engine: same tokens as one task alone (an engine of one sequence) under every batch size, arrival
order and ablation switch; bitwise batch-invariant decoding; exactly one on_done per task
under real faults (a killed sandbox worker, a model that raises, a loop bug)."""
from __future__ import annotations

import copy
import json
import os
import random
import signal
import threading
import time
from collections import Counter

import pytest
import torch

from sut.model import transcript as tr
from sut.agent import AgentConfig
from sut.engine import batch as engine_batch
from sut.engine import token_choice
from sut.engine.batch import BatchModel
from sut.engine.scheduler import Engine, run_agent
from sut.model import torch_step
from sut.records import AgentResult
from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.tasks.record import Task
from sut.tasks.basic import load_eval_tasks
from sut.model.tokenizer import CodeTokenizer, train_tokenizer
from verifier.checks import ValueCheck
from verifier.pool import SandboxPool

torch.set_num_threads(1)
CFG = AgentConfig(max_attempts=4, max_new_tokens=30)


@pytest.fixture(scope="module")
def tasks() -> list[Task]:
    return load_eval_tasks()[:30]


@pytest.fixture(scope="module")
def tok() -> CodeTokenizer:
    rows = load_eval_tasks()[:300]
    return train_tokenizer([t.prompt for t in rows] + [t.solution for t in rows], vocab_size=400)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(workers=2, timeout_s=2.0) as p:
        yield p


def random_model(tok: CodeTokenizer, block_size: int = 160, seed: int = 0, n_layer: int = 2) -> NanoCodeGen:
    """Untrained, with sharp logits: it fails every task, so retries, feedback and truncation all run."""
    torch.manual_seed(seed)
    markers = bool(tok.attempt_ids)   # the shipped tokenizers carry the attempt as a marker: GPT-2
    m = NanoCodeGen(GPTConfig(vocab_size=tok.vocab_size, block_size=block_size, n_layer=n_layer, n_embd=64, n_head=2,
                              max_retries=0 if markers else 16))
    with torch.no_grad():
        m.wte.weight.normal_(0, 1.0)
        if not markers:
            m.wse.weight.normal_(0, 1.0)
    return m.eval()


def tokens(results: list[AgentResult]) -> list[list[tuple]]:
    return [[(a.token_ids, a.code, a.status, a.truncated, a.context_len) for a in r.attempts] for r in results]


@pytest.fixture(scope="module")
def reference(tok, pool, tasks):
    model = random_model(tok)
    return model, [run_agent(t, model, tok, pool, CFG) for t in tasks]


def run_shuffled(engine: Engine, tasks: list[Task], seed: int) -> list[AgentResult]:
    order = list(range(len(tasks)))
    random.Random(seed).shuffle(order)
    got = engine.run([tasks[i] for i in order])
    out: list[AgentResult] = [None] * len(tasks)  # type: ignore[list-item]
    for j, i in enumerate(order):
        out[i] = got[j]
    return out


@pytest.mark.parametrize("max_batch", [1, 7, 64])
def test_same_tokens_as_run_agent_any_batch_and_order(tok, pool, tasks, reference, max_batch) -> None:
    model, ref = reference
    engine = Engine(model, tok, pool, CFG, max_batch=max_batch)
    got = run_shuffled(engine, tasks, seed=max_batch)
    engine.stop(close_pool=False)
    assert tokens(got) == tokens(ref)
    assert any(a.truncated for r in ref for a in r.attempts)           # the truncation path ran too
    assert any(a.redraws for r in ref for a in r.attempts)             # and redraws (AgentConfig.redraws)
    for r in ref:   # a retry resubmits rejected code only once its redraws are used up
        for k, a in enumerate(r.attempts[1:], 1):
            assert a.code not in {b.code for b in r.attempts[:k]} or a.redraws == CFG.redraws
    s = engine.stats()
    recs = [a for r in got for a in r.attempts]
    assert s["tasks_done"] == len(tasks) and s["attempts"] == len(recs) and s["tasks_failed_with_error"] == 0
    assert s["reused_tokens"] == sum(a.reused_tokens for a in recs) > 0
    assert s["prefilled_tokens"] == sum(a.prefilled_tokens for a in recs)
    assert s["prefix_reuse_hit_rate"] == pytest.approx(s["reused_tokens"] / (s["reused_tokens"] + s["prefilled_tokens"]))
    assert s["cache_rebuilds"] == sum(a.truncated for a in recs)
    assert 0 < s["step_cpu_s"] <= s["engine_thread_cpu_s"]            # the CPU split engine_bench prints
    assert s["tokens_generated"] == sum(r.n_tokens for r in got)
    for r, x in zip(got, ref):
        assert r.n_tokens == x.n_tokens
        for a, b in zip(r.attempts, x.attempts):   # the cache bookkeeping is the agent's, attempt by attempt
            assert (a.reused_tokens, a.prefilled_tokens, a.prompt_tokens, a.kv_bytes, a.redraws, a.redrawn_tokens) == \
                   (b.reused_tokens, b.prefilled_tokens, b.prompt_tokens, b.kv_bytes, b.redraws, b.redrawn_tokens)
            if a.truncated:
                assert a.reused_tokens == 0 and a.prefilled_tokens == a.prompt_tokens
    if max_batch == 64:
        assert s["mean_decode_rows"] > 8                              # continuous batching really batched
    if max_batch == 7:   # tasks finished out of slot order: sequences moved down to close the gaps (_compact)
        assert s["slot_moves"] > 0


def test_a_sequence_moved_to_another_slot_continues_with_the_same_bits(tok, reference) -> None:
    """BatchModel.move_slot copies a slot's cached keys and values exactly: decoding on from the new
    slot gives the logits decoding on from the old one gives (both backends)."""
    model, _ = reference
    ids = tok.encode("def f(x):\n    return x + 1")[:12]
    for backend in ("native", "torch"):
        bm = BatchModel(model, 6, backend=backend)
        bm.prefill(ids, [0] * len(ids), 4, 0)
        stay = bm.decode([4], [7], [0], [len(ids)])
        bm.move_slot(4, 1, len(ids))
        bm.kv[:, :, :, 4] = float("nan")                           # the old slot is gone
        moved = bm.decode([1], [7], [0], [len(ids)])
        assert torch.equal(stay, moved), backend


@pytest.mark.parametrize("switch", ["no_kv_cache", "no_prefix_reuse", "torch_backend", "no_speculation"])
def test_ablation_switches_give_the_same_outputs(tok, pool, tasks, reference, switch) -> None:
    model, ref = reference
    n = 10 if switch == "no_kv_cache" else len(tasks)   # the no-cache path is the slow reference way
    engine = Engine(model, tok, pool, CFG, max_batch=8, use_kv_cache=switch != "no_kv_cache",
                    prefix_reuse=switch != "no_prefix_reuse", backend="torch" if switch == "torch_backend" else "auto",
                    speculate=switch != "no_speculation")
    got = engine.run(tasks[:n])
    engine.stop(close_pool=False)
    assert tokens(got) == tokens(ref[:n])
    # the torch switch, and the reference way (no KV cache: training's full forward), run torch
    assert engine.stats()["backend"] == ("torch" if switch in ("no_kv_cache", "torch_backend") else "native")
    assert engine.stats()["speculate"] == (switch == "no_prefix_reuse")   # drafts need native draws, and ask for it
    assert (engine.bm.kv is None) == (switch == "no_kv_cache")           # the reference way holds no cache
    if switch in ("torch_backend", "no_speculation"):
        return
    assert all(a.reused_tokens == 0 and a.prefilled_tokens == a.prompt_tokens for r in got for a in r.attempts)
    assert engine.stats()["prefix_reuse_hit_rate"] == 0.0


@pytest.mark.parametrize("backend, row_align", [("native", None), ("torch", 8), ("torch", 1)],
                         ids=["native", "torch", "torch-unpadded"])
def test_decode_rows_are_batch_invariant(tok, monkeypatch, backend, row_align) -> None:
    """A row's logits do not change with the batch around it (size, neighbours, their lengths, idle
    slots, prefills sharing the step), and neither do a prefill's logits and cache entries.

    Native backend: bit for bit, by construction, on any CPU. Torch backend: within 1e-5 of the row's
    largest logit, with the same greedy token; bit for bit only where the CPU's BLAS computes a row
    the same whatever the row count (docs/engine.md). ``torch-unpadded`` (ROW_ALIGN 1) hands the BLAS
    a different row count for each batch, which changes the last bits on every CPU we have seen, as
    Sapphire Rapids does even with the padding: the tolerance is exercised whatever the machine."""
    if row_align is not None:
        monkeypatch.setattr(torch_step, "ROW_ALIGN", row_align)

    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        if backend == "native":
            return torch.equal(a, b)
        if (a - b).abs().max() > 1e-5 * a.abs().max():
            return False
        return a.dim() > 1 or int(a.argmax()) == int(b.argmax())     # logits: the same greedy token

    model = random_model(tok, block_size=512, n_layer=3)
    bm = BatchModel(model, 24, backend=backend)
    assert bm.backend == backend
    assert bm.describe()["batch_invariance"] == ("bitwise" if backend == "native" else
                                                 "to float rounding (bitwise only where the CPU's BLAS keeps it)")
    g = torch.Generator().manual_seed(0)
    lengths = [int(x) for x in torch.randint(5, 400, (20,), generator=g)]
    seqs = [torch.randint(6, tok.vocab_size, (n,), generator=g).tolist() for n in lengths]
    with torch.inference_mode():
        for slot, ids in enumerate(seqs):
            bm.prefill(ids, [0] * len(ids), slot, 0)

        def decode_row(target: int, others: list[int], token: int, pre: list | None = None) -> torch.Tensor:
            live = sorted({target, *others})
            out = bm.step([(r, token if r == target else 7 + r, 1, lengths[r]) for r in live], pre or [])
            return out[live.index(target)].clone()

        for target in (0, 3, 13):
            alone = decode_row(target, [], 9)
            assert same(alone, decode_row(target, [1, 2, 5], 9))
            assert same(alone, decode_row(target, list(range(20)), 9))
            assert same(alone, decode_row(target, [19], 9))
            assert same(alone, decode_row(target, [t for t in range(20) if t % 3], 9))   # holes: idle slots
            assert same(alone, decode_row(target, [4, 8], 9, [(21, seqs[7][:37], [0] * 37, 0)]))
            assert not same(alone, decode_row(target, [], 10))     # the row's own input does matter

        # a prefill: alone, beside decode rows, beside another prefill: same logits, same cache
        new, steps = seqs[5][:23], [2] * 23
        a = bm.step([], [(22, new, steps, 100)])[0].clone()
        keys_a = bm.kv[:, :, 100:123, 22].clone()
        b = bm.step([(r, 7, 1, lengths[r]) for r in (1, 2, 9)], [(23, seqs[6][:11], [0] * 11, 0), (22, new, steps, 100)])
        assert same(a, b[4]) and same(keys_a, bm.kv[:, :, 100:123, 22])


def test_a_torch_backend_run_says_its_batch_invariance_is_not_bitwise(tok, pool, tasks, reference, monkeypatch,
                                                                     caplog) -> None:
    """On CPU the torch backend keeps batch invariance to float rounding only: a run says so, in its
    stats and once in the log, and its greedy and sampled tokens still match those of each task run alone
    on a sample of tasks at batch sizes 1 and 8 with unpadded rows (every row count a different BLAS call)."""
    model, ref = reference
    engine_batch._warn_torch_invariance.cache_clear()
    monkeypatch.setattr(torch_step, "ROW_ALIGN", 1)
    for max_batch in (1, 8):
        engine = Engine(model, tok, pool, CFG, max_batch=max_batch, backend="torch")
        got = engine.run(tasks[:12])
        engine.stop(close_pool=False)
        assert tokens(got) == tokens(ref[:12])
        st = engine.stats()
        assert (st["backend"], st["native_kernel"]) == ("torch", None)
        assert st["batch_invariance"] == "to float rounding (bitwise only where the CPU's BLAS keeps it)"
    assert caplog.text.count("bitwise batch invariant only where the CPU's BLAS keeps it") == 1


def test_attention_runs_merge_when_one_call_is_cheaper() -> None:
    """Equal key lengths share one call; a row far longer than its neighbours gets its own, so
    short rows do not read up to its length; small holes are bridged, large ones split."""
    runs = torch_step.TorchStep._runs
    assert runs(list(range(64)), [128] * 64) == [(0, 64)]
    assert runs(list(range(9)), [32] * 4 + [1024] + [32] * 4) == [(0, 4), (4, 5), (5, 9)]
    assert runs([0, 1, 3, 4], [64] * 4) == [(0, 5)]
    assert runs([0, 1, 40, 41], [64] * 4) == [(0, 2), (40, 42)]


# -- faults: every task gets exactly one on_done -------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.done: Counter[str] = Counter()
        self.results: dict[str, AgentResult] = {}
        self.first: dict[str, list[tuple[int, float]]] = {}
        self.all_done = threading.Event()
        self.expected = 0

    def submit(self, engine: Engine, task: Task) -> None:
        with self.lock:
            self.expected += 1
            self.all_done.clear()
        engine.submit(task, lambda r, t=task.id: self._done(t, r),
                      lambda tok, t=task.id: self.first.setdefault(t, []).append((tok, time.perf_counter())))

    def _done(self, task_id: str, r: AgentResult) -> None:
        with self.lock:
            self.done[task_id] += 1
            self.results[task_id] = r
            if sum(self.done.values()) >= self.expected:
                self.all_done.set()

    def wait(self, timeout: float = 60) -> None:
        assert self.all_done.wait(timeout), f"only {sum(self.done.values())} of {self.expected} tasks completed"


class Flaky(torch.nn.Module):
    """Wraps a real piece of the model's forward and raises on its n-th call: the native step (one call
    per batched forward) or, on torch's path, the final LayerNorm (called once per batched step)."""

    def __init__(self, inner, fail_on: int) -> None:
        super().__init__()
        self.inner, self.fail_on, self.calls = inner, fail_on, 0

    def forward(self, *args):
        self.calls += 1
        if self.calls == self.fail_on:
            raise RuntimeError("injected failure")
        return self.inner(*args)


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_model_faults_fail_only_their_tasks(tok, pool, tasks, reference, backend) -> None:
    model, ref = reference
    flaky = copy.deepcopy(model)
    engine = Engine(flaky, tok, pool, CFG, max_batch=4, backend=backend)
    native = engine.bm._native

    def fail_on(n: int) -> None:
        if backend == "native":
            engine.bm._native = Flaky(native, n)
        else:
            flaky.ln_f = Flaky(model.ln_f, n)

    engine.start()
    rec = Recorder()
    huge = Task("huge", "x", 1, "word " * 400, "", ValueCheck(1))   # longer than the 160-token window
    for t in [huge, *tasks[:8]]:
        rec.submit(engine, t)
    rec.wait()
    assert set(rec.done.values()) == {1} and len(rec.done) == 9
    assert "context window" in rec.results["huge"].error and rec.results["huge"].attempts == []
    for i, t in enumerate(tasks[:8]):      # the others are untouched by their neighbour's failure
        assert rec.results[t.id].error is None and tokens([rec.results[t.id]]) == tokens([ref[i]])

    # the model raises in a task's first step (its prefill): that task fails, the next ones do not
    fail_on(1)
    rec.submit(engine, tasks[8])
    rec.wait()
    assert rec.results[tasks[8].id].error == "model: RuntimeError: injected failure"
    assert rec.results[tasks[8].id].attempts == []

    # a batched step that raises mid-generation fails the rows of that step, with their attempts so far
    fail_on(40)
    for t in tasks[9:15]:
        rec.submit(engine, t)
    rec.wait()
    failed = [rec.results[t.id] for t in tasks[9:15] if rec.results[t.id].error]
    assert failed and all(r.error == "model: RuntimeError: injected failure" for r in failed)
    later = Recorder()
    later.submit(engine, tasks[20])
    later.wait()
    assert later.results[tasks[20].id].error is None and tokens([later.results[tasks[20].id]]) == tokens([ref[20]])
    engine.stop(close_pool=False)
    assert set(rec.done.values()) == {1}


def scripted_model(tok: CodeTokenizer, prompt: str, program: str) -> NanoCodeGen:
    """A real model whose weights make it write ``program`` after ``prompt`` (position-keyed): the
    blocks are zeroed to identities and each position's embedding points at the next token."""
    model = random_model(tok, block_size=160, seed=5)
    out = tok.encode(program) + [tok.end_id]
    start = len(tr.prompt_prefix(tok, prompt)) - 1
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "c_proj" in name:
                p.zero_()
        for i, t in enumerate(out):
            model.wpe.weight[start + i] = 50 * model.wte.weight[t]
    return model


def test_killed_verifier_worker_fails_its_task_once(tok) -> None:
    prompt = "Loop forever."
    model = scripted_model(tok, prompt, "while True:\n    pass\n")
    with SandboxPool(workers=1, timeout_s=3.0) as own_pool:
        engine = Engine(model, tok, own_pool, CFG, max_batch=4)
        engine.start()
        rec = Recorder()
        rec.submit(engine, Task("loop", "x", 1, prompt, "", ValueCheck(1)))
        deadline = time.monotonic() + 30
        while "loop" not in rec.first and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.8)                           # the worker is now running the endless loop
        workers = own_pool.worker_pids()
        assert workers, "no sandbox worker process found"
        for pid in workers:                       # the worker's process group is its whole sandbox
            os.killpg(pid, signal.SIGKILL)
        for t in load_eval_tasks()[:3]:           # served after the kill, by a replacement worker
            rec.submit(engine, t)
        rec.wait(60)
        engine.stop()
    assert set(rec.done.values()) == {1} and len(rec.done) == 4
    r = rec.results["loop"]
    assert r.error is not None and r.error.startswith("verifier: ") and not r.passed, [(a.status, a.feedback, a.verify_ms) for a in r.attempts]
    assert [a.code for a in r.attempts] == ["while True:\n    pass\n"] and r.attempts[0].status == "sandbox_error"
    assert all(rec.results[t.id].error is None for t in load_eval_tasks()[:3])


def test_first_token_stop_and_loop_errors(tok, pool, tasks, reference) -> None:
    model, ref = reference

    class BuggyEngine(Engine):  # a bug in the scheduler loop itself, once
        fail_at: int | None = None

        def _step(self) -> None:
            if self.fail_at is not None and self._n["steps"] >= self.fail_at:
                self.fail_at = None
                raise KeyError("scheduler bug")
            super()._step()

    engine = BuggyEngine(model, tok, pool, CFG, max_batch=8, batch_wait_ms=300)
    rec = Recorder()
    t0 = time.perf_counter()
    for t in tasks[:4]:
        rec.submit(engine, t)
        time.sleep(0.02)
    engine.start()
    rec.wait()
    for i, t in enumerate(tasks[:4]):        # on_first_token: once, attempt 0's first token
        assert [tok_id for tok_id, _ in rec.first[t.id]] == [ref[i].attempts[0].token_ids[0]]
        assert rec.first[t.id][0][1] - t0 >= 0.25    # Server: the empty batch waited to gather arrivals
    engine.fail_at = engine.stats()["steps"] + 5
    for t in tasks[4:8]:
        rec.submit(engine, t)
    rec.wait()
    assert engine.stats()["loop_errors"] == 1
    assert all(rec.results[t.id].error == "engine: KeyError: 'scheduler bug'" for t in tasks[4:8])
    for t in tasks[8:10]:                   # still serving
        rec.submit(engine, t)
    rec.wait()
    assert all(rec.results[t.id].error is None for t in tasks[8:10])
    for t in tasks[10:16]:
        rec.submit(engine, t)
    engine.stop(drain=False, close_pool=False)
    rec.submit(engine, tasks[16])            # after stop: answered at once, with an error
    rec.wait(5)
    assert set(rec.done.values()) == {1} and len(rec.done) == 17
    assert rec.results[tasks[16].id].error.startswith("engine: stopped")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_device(tok, pool, tasks) -> None:
    """The engine runs on CUDA with its tensors there, and the token choice of CUDA logits is
    the CPU's. (Token equality with run_agent is not asserted: cuBLAS is not batch-invariant.)"""
    logits = torch.randn(6, 400) * 3
    keys, counters = list(range(100, 106)), list(range(6))
    assert token_choice.choose(logits.cuda(), [1, 2, 5], 0.7, 20, keys[:3], counters[:3]) == \
        token_choice.choose(logits, [1, 2, 5], 0.7, 20, keys[:3], counters[:3])
    model = random_model(tok)
    engine = Engine(model, tok, pool, CFG, max_batch=8, device="cuda")
    got = engine.run(tasks[:8])
    engine.stop(close_pool=False)
    assert all(r.error is None and len(r.attempts) == CFG.max_attempts for r in got)
    assert next(model.parameters()).is_cuda


def test_bench_command_runs_and_rejects_bad_flags(tmp_path, capsys) -> None:
    """The documented benchmark command works end to end (one cheap section) and bad flags fail in one line."""
    from benchmarks.engine_bench import main

    assert main(["--sections", "prefill", "--json", "-", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr()
    res = json.loads(printed.out)                                  # --json -: stdout holds the JSON alone
    assert "prefill ms" in printed.err                             # and the table went to stderr
    assert res["machine"]["threads"] == 1 and res["matmul_peak_gflops"] > 0
    sweep = res["prefill_sweep"]
    assert sweep and all(r["reuse_ms"] > 0 and r["full_ms"] > 0 for r in sweep)
    assert sweep[-1]["full_ms"] > sweep[-1]["reuse_ms"]          # a long context costs more without reuse
    figure = tmp_path / "prefill_vs_context.png"                   # under --out
    assert res["figures"] == [str(figure)] and figure.stat().st_size > 0
    for bad in (["--tasks", "0"], ["--sections", "decode,bogus"]):
        with pytest.raises(SystemExit) as e:
            main(bad)
        assert e.value.code == 2
    assert "--tasks must be at least 1" in capsys.readouterr().err


def test_step_profile_command_names_where_a_step_goes(capsys) -> None:
    """benchmarks/step_profile.py (the profile docs/engine.md quotes) runs and shows the matmuls."""
    from benchmarks.step_profile import main

    assert main(["--batch", "1", "--steps", "8", "--rows", "5"]) == 0
    out = capsys.readouterr().out
    assert "batch 1: torch backend" in out and "ms per decode step" in out and "native step" in out
    assert "aten::addmm" in out


def test_attention_runs_command_compares_both_rules(capsys) -> None:
    """benchmarks/attention_runs.py (the A/B docs/engine.md quotes) times both rules side by side."""
    from benchmarks.attention_runs import main

    assert main(["--batch", "8", "--reps", "1", "--steps", "1"]) == 0
    out = capsys.readouterr().out
    assert "fixed/engine" in out and out.count("x\n") >= 2 and "512 row-keys" in out


def test_step_variants_command_times_the_backends_side_by_side(capsys) -> None:
    """benchmarks/step_variants.py (the SDPA and torch.compile A/B docs/engine.md quotes) runs and prints ratios."""
    from benchmarks.step_variants import main

    assert main(["--batch", "1", "4", "--reps", "1", "--steps", "2", "--skip-compile"]) == 0
    out = capsys.readouterr().out
    assert "attend/native" in out and "sdpa/attend" in out and "native/torch" in out and "scattered/adjacent" in out
    assert "torch/native" in out
    assert out.count("x\n") == 2 + 2 * 5 + 5 + 4    # two step rows, five matmul rows per batch size, five slot rows,
                                                     # four token-choice rows
    with pytest.raises(SystemExit) as e:
        main(["--steps", "0"])
    assert e.value.code == 2
    assert "--steps must be at least 1" in capsys.readouterr().err


def test_step_variants_compiled_dense_part_matches_eager() -> None:
    """The torch.compile A/B times the same function: inductor's output agrees with eager's to float precision."""
    from benchmarks.step_variants import compile_ab

    torch.manual_seed(0)
    model = NanoCodeGen(GPTConfig(vocab_size=64, n_layer=2, n_embd=32, n_head=2, block_size=64)).eval()
    compile_s, rows = compile_ab(model, [8, 16], reps=1, calls=2)
    assert compile_s > 0 and [r["rows"] for r in rows] == [8, 16]
    assert all(r["max_abs_diff"] < 1e-5 and r["eager"] > 0 and r["compiled"] > 0 for r in rows)


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_prefill_logits_do_not_depend_on_the_cache_slot_count(tok, backend) -> None:
    """The position-major cache gives a slot's keys a stride that grows with the slot count; a
    prefill (native, or SDPA over strided views) and the decode rows after it must not notice."""
    model = random_model(tok, block_size=512, n_layer=2)
    g = torch.Generator().manual_seed(5)
    ids = torch.randint(6, tok.vocab_size, (300,), generator=g).tolist()
    outs = []
    with torch.inference_mode():
        for n_slots in (1, 3, 64):
            bm = BatchModel(model, n_slots, backend=backend)
            slot = n_slots - 1
            a = bm.step([], [(slot, ids[:200], [0] * 200, 0)])[0].clone()
            b = bm.step([], [(slot, ids[200:223], [1] * 23, 200)])[0].clone()
            c = bm.step([(slot, 9, 1, 223)], [])[0].clone()
            outs.append((a, b, c))
    assert all(torch.equal(x, y) for o in outs[1:] for x, y in zip(outs[0], o))


def test_backend_agreement_command_compares_both_backends(capsys) -> None:
    """benchmarks/backend_agreement.py (the 1,024-task agreement docs/engine.md quotes) on a few tasks."""
    from benchmarks.backend_agreement import main

    assert main(["--count", "6"]) == 0
    out = capsys.readouterr().out
    assert "native: pass@final" in out and "torch: pass@final" in out
    assert "tasks whose attempts differ between the two: 0 of 6" in out


@pytest.mark.parametrize("temperature", [0.7, 0.0])
def test_speculative_retries_write_what_sequential_decoding_writes(pool, temperature) -> None:
    """A shipped checkpoint's retries repeat much of their earlier attempts, so prompt-lookup drafts are
    accepted (sut/engine/draft.py); the tokens, attempt by attempt, are those of decoding a token a step,
    sampled or greedy (greedy drafts are checked against each row's argmax; once they were accepted whole)."""
    from sut.model.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint

    model, tok, _ = load_checkpoint(DEFAULT_CHECKPOINT.parent / "retry-small")   # fails more first attempts
    hard = load_eval_tasks()[:96]
    runs = {}
    for speculate in (True, False):
        engine = Engine(model, tok, pool, AgentConfig(temperature=temperature), max_batch=4, speculate=speculate)
        runs[speculate] = engine.run(hard)
        stats = engine.stats()
        engine.stop(close_pool=False)
        if speculate:   # drafts depend on the transcripts alone: so do these counts
            assert stats["accepted_draft_tokens"] > 50 and stats["drafted_tokens"] >= stats["accepted_draft_tokens"]
        else:
            assert stats["spec_groups"] == 0 == stats["drafted_tokens"]
    assert sum(len(r.attempts) > 1 for r in runs[True]) >= 5   # retries ran
    assert tokens(runs[True]) == tokens(runs[False])


def test_a_speculative_group_gives_the_logits_of_decoding_its_tokens_one_by_one(tok, reference) -> None:
    """BatchModel.step's spec rows (a sequence's last token and its draft) attend causally through the cache:
    each row's logits are those of decoding the tokens a step at a time, bit for bit, beside other rows."""
    model, _ = reference
    ids = tok.encode("def f(x):\n    return x + 1")[:10]
    draft = [7, 9, 11, 13]
    one, grouped = BatchModel(model, 4, backend="native"), BatchModel(model, 4, backend="native")
    for bm in (one, grouped):
        bm.prefill(ids, [0] * len(ids), 2, 0)
        bm.prefill(ids[:6], [0] * 6, 0, 0)
    want = [one.decode([2], [t], [1], [len(ids) + i])[0] for i, t in enumerate([5, *draft])]
    got = grouped.step([(0, 3, 0, 6)], [], [(2, [5, *draft], [1] * 5, len(ids))])
    assert got.shape[0] == 1 + 5
    for i in range(5):
        assert torch.equal(got[1 + i], want[i])


def test_drafts_continue_the_latest_earlier_occurrence() -> None:
    from sut.engine.draft import draft

    class Buf:
        grams_of, grams_upto = None, 0

    b = Buf()
    b.ids = [1, 2, 3, 4, 5, 9, 1, 2, 3, 6, 7, 8, 1, 2, 3]
    assert draft(b, 8) == [6, 7, 8, 1, 2, 3]          # after the latest earlier 1 2 3 (trigram)
    assert draft(b, 2) == [6, 7]                       # within the limit
    b.ids.append(6)                                    # extended in place: the index grows
    assert draft(b, 3) == [7, 8, 1]                    # 2 3 6 -> 7 8 1
    b.ids = [4, 4, 9, 5, 4, 9]                         # a new transcript: rebuilt; no trigram, a bigram
    assert draft(b, 8) == [5, 4, 9]
    b.ids = [1, 2, 3]
    assert draft(b, 8) == [] and draft(b, 0) == []
