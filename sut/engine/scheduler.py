"""Continuous-batching engine: many agent retry loops decoded together over one slot KV cache.

One engine thread drives the model. Each turn of its loop it

1. collects the verdicts that arrived (the verifier's workers are other processes): a pass
   or the last attempt completes the task; a failure appends the feedback to the same
   transcript (``sut.agent.append_feedback``: the layout and truncation rule every engine shares)
   and the sequence goes back to prefill;
2. admits queued tasks into free cache slots (up to ``max_batch``);
3. runs one batched forward holding, as rows of the same matmuls, what is new for each
   sequence starting an attempt (the prompt of a new task; for a retry only the feedback
   tokens: prefix reuse; everything again after a truncation, recorded in the attempt, or
   with prefix reuse off) and one token for every decoding sequence (rows at different
   positions), or for a retry its last token and a draft of what follows (speculative retries:
   the draft's rows checked in the same pass); then chooses each row's token, a retry's drawn
   at (seed, task, attempt, redraw, token index) alone (sut/engine/token_choice.py).
   An attempt that ends (``<|end|>`` or budget) is handed to ``pool.submit`` and its
   sequence parks; it never stalls the others.

Every submitted task gets exactly one ``on_done``: a model or tokenizer error fails only
its task (an error in the batched forward fails the rows of that step), a SANDBOX_ERROR verdict
(dead verifier worker) fails the task with ``error="verifier: ..."``, and an exception in
the loop itself fails every task in flight while the engine keeps serving new ones.
The generated tokens do not depend on batch size, composition or arrival order (sut/engine/batch.py
says why; docs/engine.md): ``run_agent``, one task through an engine of one sequence, gives what
the task gets in any batch. This module is the batching (queue, slots, steps, thread); one task's
attempt lifecycle is sut/engine/attempts.py's.
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import torch

from sut.model import transcript as tr
from sut.agent import AgentConfig
from sut.engine.attempts import AttemptLifecycle
from sut.engine.batch import BatchModel
from sut.engine.draft import draft
from sut.engine.seq import DECODE, PARKED, PREFILL, OnDone, OnFirstToken, Seq, call, one_line, run_all
from sut.engine.stats import EngineCounters
from sut.model.gpt import NanoCodeGen
from sut.model.tokenizer import CodeTokenizer
from sut.records import AgentResult

log = logging.getLogger(__name__)


class Engine(AttemptLifecycle):
    """Batched, continuously batched agent loops; see the module docstring."""

    def __init__(self, model: NanoCodeGen, tokenizer: CodeTokenizer, pool: Any, cfg: AgentConfig | None = None,
                 max_batch: int = 64, batch_wait_ms: float = 0.0, use_kv_cache: bool = True,
                 prefix_reuse: bool = True, device: str = "cpu", backend: str = "auto", speculate: bool = True) -> None:
        cfg = cfg or AgentConfig()
        if max_batch < 1 or batch_wait_ms < 0 or cfg.max_attempts < 1 or cfg.max_new_tokens < 1:
            raise ValueError(f"bad engine settings: max_batch={max_batch} (>= 1), batch_wait_ms={batch_wait_ms} (>= 0), "
                             f"max_attempts={cfg.max_attempts} (>= 1), max_new_tokens={cfg.max_new_tokens} (>= 1)")
        self.model = model.to(torch.device(device)).eval()
        self.tok, self.pool, self.cfg = tokenizer, pool, cfg
        self.max_batch, self.batch_wait_s = max_batch, batch_wait_ms / 1e3
        self.use_kv_cache, self.prefix_reuse = use_kv_cache, prefix_reuse and use_kv_cache
        self.isolation: str = getattr(pool, "isolation", "unknown")
        self.window = model.config.block_size
        # without the cache every token is the full forward (the reference's way, torch's): its stats say torch
        self.bm = BatchModel(self.model, max_batch, backend, cache=use_kv_cache)
        # retries draft by prompt lookup and verify drafts in one pass (sut/engine/draft.py); needs the
        # native step (a group's logits at every position), native draws (the sequential check) and the cache
        self.speculate = speculate and self.bm.native_draws and use_kv_cache
        self._kv_token_bytes = model.kv_bytes(1)
        self._cv = threading.Condition()
        # (task, on_done, on_first_token, submit time, its prompt tokenized or the error that stopped it)
        self._queue: deque[tuple[Any, OnDone, OnFirstToken | None, float, tr.Piece | Exception]] = deque()
        self._ready: deque[Seq] = deque()     # parked sequences whose verdict has arrived
        self._free = list(range(max_batch))   # a heap: the lowest free slot first keeps decode rows few
        self._active: dict[int, Seq] = {}     # slot -> sequence (engine thread only)
        self._thread: threading.Thread | None = None
        self._stopping = self._closed = False
        self._drain = True
        self._counters = EngineCounters()
        self._n, self._t = self._counters.n, self._counters.t

    # -- public API -------------------------------------------------------------------------
    def submit(self, task: Any, on_done: OnDone, on_first_token: OnFirstToken | None = None) -> None:
        """Queue ``task``; returns at once. ``on_done`` runs exactly once (on the engine thread,
        or right here if the engine is stopped); ``on_first_token`` once, at attempt 0's first token.
        The prompt is tokenized here, on the caller's thread, not on the engine's."""
        try:
            prefix: tr.Piece | Exception = tr.prompt_prefix(self.tok, task.prompt)
        except Exception as e:   # reported through on_done when the task is admitted
            prefix = e
        with self._cv:
            if not self._closed:
                self._queue.append((task, on_done, on_first_token, time.perf_counter(), prefix))
                self._n["submitted"] += 1
                self._cv.notify()
                return
        call(on_done, AgentResult(getattr(task, "id", "?"), error="engine: stopped; the task was not run"))

    def start(self) -> None:
        """Start the engine thread (idempotent)."""
        with self._cv:
            if self._thread is not None or self._closed:
                return
            self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
            self._thread.start()

    def stop(self, drain: bool = True, close_pool: bool = True) -> None:
        """Finish (``drain``) or fail everything queued and in flight, join the thread, close the pool
        (``close_pool=False`` leaves a pool shared with others open)."""
        self.start()
        with self._cv:
            self._stopping, self._drain = True, drain
            self._cv.notify_all()
        assert self._thread is not None
        self._thread.join()
        if close_pool and hasattr(self.pool, "close"):
            self.pool.close()

    def run(self, tasks: Sequence[Any], progress: bool = False) -> list[AgentResult]:
        """Submit every task, wait for all, return the results in input order (starts the engine)."""
        return run_all(self, tasks, "agent", progress)

    def stats(self) -> dict[str, Any]:
        """Counters since construction (a snapshot; safe to call from any thread; sut/engine/stats.py)."""
        return self._counters.snapshot(max_batch=self.max_batch, use_kv_cache=self.use_kv_cache,
                                       prefix_reuse=self.prefix_reuse, speculate=self.speculate,
                                       isolation=self.isolation, **self.bm.describe())

    # -- the engine thread -------------------------------------------------------------------
    def _loop(self) -> None:
        cpu0 = time.thread_time()
        with torch.inference_mode():
            while self._wait_for_work():
                try:
                    self._collect_verdicts()
                    self._admit()        # new tasks fill freed slots, lowest first
                    self._compact()      # then only gaps nobody filled move (the run's tail)
                    self._step()
                    self._t["loop_cpu_s"] = time.thread_time() - cpu0
                except Exception as e:  # a bug of ours: fail what is in flight, keep serving
                    log.exception("engine loop failed; failing %d tasks in flight", len(self._active))
                    self._n["loop_errors"] += 1
                    self._fail_all(one_line("engine: ", e))
            self._fail_all("engine: stopped before the task finished")
            with self._cv:
                self._closed = True
                queued, self._queue = list(self._queue), deque()
        for task, on_done, *_ in queued:
            self._n["done"] += 1
            self._n["errors"] += 1
            call(on_done, AgentResult(task.id, error="engine: stopped before the task started"))

    def _wait_for_work(self) -> bool:
        """Block until there is something to do; False when the engine should exit."""
        with self._cv:
            while True:
                if self._stopping and (not self._drain or (not self._active and not self._queue)):
                    return False
                busy = any(s.state != PARKED for s in self._active.values())
                if busy or self._ready or (self._queue and self._free):
                    return True
                self._cv.wait(0.5)

    def _compact(self) -> None:
        """Keep the occupied cache slots contiguous from slot 0: the sequence in the highest one moves
        into the lowest free one (an exact copy of its cached keys and values), until no gap is left.

        Why: the cache is position-major, so the rows of a step in adjacent slots read one block a
        position, which the hardware prefetcher streams; rows scattered over the slots (the tail of a
        run, where long retries keep the slots they were given) read a small piece of a different
        block each, and wait on memory (``python -m benchmarks.step_variants``, section 6: the
        attention 2.3-3.5x faster over adjacent slots at 8-32 rows). Runs between steps only, when
        every sequence's ``cached`` positions are exactly what its slot holds."""
        if not self.use_kv_cache:
            return
        while self._free and self._active:
            low, high = self._free[0], max(self._active)
            if low > high:
                return
            seq = self._active.pop(high)
            heapq.heapreplace(self._free, high)
            self.bm.move_slot(high, low, seq.cached)
            seq.slot = low
            self._active[low] = seq
            self._n["slot_moves"] += 1

    def _admit(self) -> None:
        with self._cv:
            if self.batch_wait_s > 0 and not self._active and self._queue and not self._stopping:
                deadline = self._queue[0][3] + self.batch_wait_s   # Server: gather arrivals into a batch
                while len(self._queue) < len(self._free) and not self._stopping:
                    left = deadline - time.perf_counter()
                    if left <= 0:
                        break
                    self._cv.wait(left)
            taken = []
            while self._queue and self._free:
                taken.append((self._queue.popleft(), heapq.heappop(self._free)))
        for (task, on_done, on_first, _, prefix), slot in taken:
            seq = self._active[slot] = Seq(task, on_done, on_first, slot)
            try:
                if isinstance(prefix, Exception):
                    raise prefix
                seq.prefix = prefix
                if len(seq.prefix) + 1 >= self.window:
                    raise ValueError(f"prompt is {len(seq.prefix)} tokens: the context window is {self.window}")
                seq.reset(seq.prefix)
            except Exception as e:
                log.warning("task %s rejected: %s", seq.task.id, e)
                self._finish(seq, one_line("", e))

    def _verdict_arrived(self, seq: Seq) -> None:  # any thread (the pool's)
        seq.t_verdict = time.perf_counter()
        with self._cv:
            self._ready.append(seq)
            self._cv.notify()

    def _collect_verdicts(self) -> None:
        with self._cv:
            ready, self._ready = list(self._ready), deque()
        for seq in ready:
            if seq.done:
                continue
            try:
                self._next_attempt(seq)
            except Exception as e:
                log.warning("task %s failed after its verdict: %s", seq.task.id, e)
                self._finish(seq, one_line("", e))

    def _step(self) -> None:
        """One batched forward: the prefills of the attempts starting now, one token for every
        decoding row, and for a decoding retry with a draft its last token and the draft (a
        speculative group, sut/engine/draft.py); then each row's token (a prefill's is its
        attempt's first), and each group's tokens as sequential decoding would draw them."""
        pre, dec, spec, drafts = self._rows()
        if not pre and not dec and not spec:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            logits = self._forward(dec, pre, spec, drafts)
            n = len(dec) + len(pre)
            tokens = self._pick(dec + pre, logits[:n])
            spec_tokens = self.bm.accept(logits[n:], drafts, self.cfg.temperature, self.cfg.top_k,
                                         [s.key for s in spec], [len(s.out) for s in spec]) if spec else []
        except Exception as e:  # one batched call: its rows share the failure
            log.exception("model step failed; failing its %d sequences", len(dec) + len(pre) + len(spec))
            for s in dec + pre + spec:
                self._finish(s, one_line("model: ", e))
            return
        t1 = time.perf_counter()
        self._counters.record_step(self.bm, dec, pre, spec, drafts, t1 - t0, time.thread_time() - c0)
        self._take_rows(dec + pre, tokens, t0, t1)
        self._take_groups(spec, drafts, spec_tokens)

    def _rows(self) -> tuple[list[Seq], list[Seq], list[Seq], list[list[int]]]:
        """The step's rows in slot order: prefills (their attempts begun; one that cannot start is finished),
        plain decoding rows, and speculative groups with their drafts."""
        by_slot = sorted(self._active.values(), key=lambda s: s.slot)
        pre = []
        for seq in (s for s in by_slot if s.state == PREFILL):
            try:
                self._begin_attempt(seq)
                pre.append(seq)
            except Exception as e:
                log.warning("task %s cannot start attempt %d: %s", seq.task.id, seq.attempt, e)
                self._finish(seq, one_line("", e))
        dec, spec, drafts = [], [], []
        for seq in (s for s in by_slot if s.state == DECODE):
            d = self._draft(seq) if self.speculate and seq.attempt > 0 else []
            if d:
                spec.append(seq)
                drafts.append(d)
            else:
                dec.append(seq)
        return pre, dec, spec, drafts

    def _take_rows(self, rows: list[Seq], tokens: list[int], t0: float, t1: float) -> None:
        """Each decode or prefill row's one token; a prefill turns to decoding (its prefill time and the first
        token's callback here); a row whose token fails it is finished alone."""
        for s, token in zip(rows, tokens):
            try:
                if s.state == PREFILL:
                    s.state = DECODE
                    if not s.draw:   # a redraw's one-token prefill is part of its attempt's decoding
                        s.prefill_ms, s.t_decode = (t1 - t0) * 1e3, t1
                    s.cached = len(s) if self.use_kv_cache else 0
                    if s.attempt == 0 and s.on_first is not None:
                        call(s.on_first, token)
                elif self.use_kv_cache:
                    s.cached += 1
                self._take(s, token)
            except Exception as e:
                self._finish(s, one_line("", e))

    def _take_groups(self, spec: list[Seq], drafts: list[list[int]], spec_tokens: list[list[int]]) -> None:
        """Each speculative group's accepted tokens, in order, until its attempt ends (the rest is dropped)."""
        for s, d, got in zip(spec, drafts, spec_tokens):
            self._n["spec_groups"] += 1
            self._n["drafted"] += len(d)
            self._n["accepted"] += len(got) - 1
            try:
                for token in got:   # row j's keys and values hold a token the sequence now has: cached
                    s.cached += 1
                    self._take(s, token)
                    if s.state != DECODE:   # the attempt ended: what was drawn past it is dropped
                        break
            except Exception as e:
                self._finish(s, one_line("", e))

    def _draft(self, seq: Seq) -> list[int]:
        """A retry's draft, within its budget (the step yields up to len(draft) + 1 tokens) and the window."""
        return draft(seq, min(seq.budget - len(seq.out) - 1, self.window - len(seq.ids)))

    def _forward(self, dec: list[Seq], pre: list[Seq], spec: list[Seq] = (), drafts: list[list[int]] = ()
                 ) -> torch.Tensor:
        """Logits for the decode rows, then for each prefill's last position, then for every row of each
        speculative group (a sequence's last token and its draft)."""
        if not self.use_kv_cache:  # the reference's way: training's full forward over each whole context, row by row
            self._n["rows_computed"] += sum(len(s) for s in dec + pre)
            dev = self.bm.device
            return torch.stack([self.model(torch.tensor([s.ids], device=dev), torch.tensor([s.steps], device=dev))[0][0, -1]
                                for s in dec + pre])
        self._n["rows_computed"] += self.bm.rows_computed(
            len(dec) + sum(len(s) - s.cached for s in pre) + sum(len(d) + 1 for d in drafts))
        return self.bm.step([(s.slot, s.ids[-1], s.steps[-1], s.cached) for s in dec],
                            [(s.slot, s.ids[s.cached:], s.steps[s.cached:], s.cached) for s in pre],
                            [(s.slot, [s.ids[-1], *d], [s.steps[-1]] + [s.step] * len(d), s.cached)
                             for s, d in zip(spec, drafts)])

    def _pick(self, rows: list[Seq], logits: torch.Tensor) -> list[int]:
        """Greedy rows by argmax, sampled rows drawn at their key and token index (``BatchModel.pick``)."""
        sampled = [i for i, s in enumerate(rows) if s.temperature > 0]
        return self.bm.pick(logits, sampled, self.cfg.temperature, self.cfg.top_k, [rows[i].key for i in sampled],
                            [len(rows[i].out) for i in sampled])

    def _finish(self, seq: Seq, error: str | None = None) -> None:
        """Complete a task exactly once: free its slot and call its on_done."""
        if seq.done:
            return
        seq.done = True
        if self._active.get(seq.slot) is seq:
            del self._active[seq.slot]
            heapq.heappush(self._free, seq.slot)
        if seq.future is not None and not seq.future.done():
            seq.future.cancel()
        seq.result.error = error
        self._n["done"] += 1
        self._n["errors"] += error is not None
        self._n["passed"] += seq.result.passed
        call(seq.on_done, seq.result)

    def _fail_all(self, error: str) -> None:
        for seq in list(self._active.values()):
            self._finish(seq, error)
        self._active.clear()
        self._free = list(range(self.max_batch))


def run_agent(task: Any, model: NanoCodeGen, tokenizer: CodeTokenizer, pool: Any, cfg: AgentConfig | None = None,
              device: str = "cpu", backend: str = "auto") -> AgentResult:
    """The retry loop on one task: the engine with one sequence. Never raises for a model or verifier
    failure: the error is in ``AgentResult.error`` with the attempts made so far."""
    engine = Engine(model, tokenizer, pool, cfg, max_batch=1, device=device, backend=backend)
    try:
        return engine.run([task])[0]
    finally:
        engine.stop(close_pool=False)
