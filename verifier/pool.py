"""SandboxPool: N sandboxed zygotes behind a thread-safe submit() that returns Futures of Verdicts.

One parent thread per worker takes jobs from a shared queue, compiles the code (syntax
errors never reach a sandbox), sends the request, and judges the reply. A worker that dies
or stops answering is killed and replaced; the execution it held gets SANDBOX_ERROR, never
a hang and never a pass. Every Verdict records the isolation level it ran under.
"""
from __future__ import annotations

import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from verifier import plaindata
from verifier.checks import Check
from verifier.child import COMPILED_TAG
from verifier.judge import Limits, judge_reply, precheck, request_for
from verifier.probe import probe_keeping_zygote
from verifier.sandbox import ISOLATION_MODES
from verifier.verdict import Status, Verdict, cap
from verifier.worker import SandboxWorker, WorkerDied

log = logging.getLogger(__name__)

GRACE_S = 5.0   # beyond timeout_s, how long the parent waits for a zygote's reply before killing it
RETRY_PAUSE_S = 0.5   # verify_judged's pause before judging sandbox errors again (doubled each time)


class InfrastructureError(RuntimeError):
    """The sandbox kept failing on some executions (``indices``, in the judged list); no verdict can be given for them."""

    def __init__(self, message: str, indices: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.indices = list(indices)


class SandboxPool:
    """A warm pool of sandboxed workers; each execution is forked fresh from a clean zygote."""

    def __init__(self, workers: int | None = None, timeout_s: float = 2.0, memory_mb: int = 512,
                 output_limit_bytes: int = 64_000, isolation: str = "bwrap", zygote_loop: str = "auto",
                 lint: bool = True, preload: Sequence[str] | None = None) -> None:
        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 1 or timeout_s <= 0 or memory_mb < 64 or output_limit_bytes < 1:
            raise ValueError(f"bad pool settings: workers={workers} (>= 1), timeout_s={timeout_s} (> 0), "
                             f"memory_mb={memory_mb} (>= 64), output_limit_bytes={output_limit_bytes} (>= 1)")
        if isolation not in ISOLATION_MODES:
            raise ValueError(f"isolation={isolation!r}: choose bwrap (the default, fail closed) or process (weaker, explicit)")
        if zygote_loop not in ("auto", "native", "python"):
            raise ValueError(f"zygote_loop={zygote_loop!r}: choose auto, native or python")
        self.level, first = probe_keeping_zygote(isolation, zygote_loop, preload)
        self.isolation: str = self.level.label
        self.limits = Limits(float(timeout_s), int(memory_mb), int(output_limit_bytes))
        self.lint = lint   # advisory notes in verdict.extra["lint"]; False skips the syntax tree they need
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        started = [threading.Event() for _ in range(workers)]
        # preload: the modules each zygote imports before forking (None: verifier.zygote.PRELOAD, common
        # ones); () when the programs import nothing: a smaller zygote forks faster (docs/verifier.md)
        self._workers = [SandboxWorker(self.level, zygote_loop, preload) for _ in range(workers)]
        if first is not None:   # the probe's zygote, already up: one start fewer
            self._workers[0] = first
        self._threads = [threading.Thread(target=self._serve, args=(w, ev), daemon=True, name=f"verifier-worker-{i}")
                         for i, (w, ev) in enumerate(zip(self._workers, started))]
        for t in self._threads:
            t.start()
        for ev in started:  # warm: every zygote is up (or has failed and will retry) before the first job
            ev.wait(30)
        # the zygotes' loop: "native" (verifier/zygote_loop.c) or "python"
        self.zygote_loop: str = next((w.hello["loop"] for w in self._workers if w.hello.get("loop")), "unknown")

    def submit(self, code: str, check: Check) -> concurrent.futures.Future[Verdict]:
        """Queue one execution; thread-safe. The Future always resolves to a Verdict."""
        fut: concurrent.futures.Future[Verdict] = concurrent.futures.Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("SandboxPool is closed")
            self._jobs.put((code, check, fut))
        return fut

    def verify(self, code: str, check: Check) -> Verdict:
        return self.submit(code, check).result()

    def verify_many(self, items: Sequence[tuple[str, Check]], progress: bool = False) -> list[Verdict]:
        """Verify all items in parallel; verdicts in input order."""
        futures = [self.submit(code, check) for code, check in items]
        if progress:
            from tqdm import tqdm  # noqa: PLC0415 - 30 ms of start-up that a command without a bar should not pay

            for _ in tqdm(concurrent.futures.as_completed(futures), total=len(futures), desc="verify", unit="exec"):
                pass
        return [f.result() for f in futures]

    def verify_judged(self, items: Sequence[tuple[str, Check]], tries: int = 3, progress: bool = False) -> list[Verdict]:
        """``verify_many`` for a judge: a ``sandbox_error`` verdict (the sandbox failed, not the
        program) is judged again, up to ``tries`` times in all; if one persists, InfrastructureError,
        never a model verdict (an accuracy figure must not move because a zygote died)."""
        verdicts = self.verify_many(items, progress=progress)
        for attempt in range(tries - 1):
            again = [i for i, v in enumerate(verdicts) if v.status is Status.SANDBOX_ERROR]
            if not again:
                break
            log.warning("verifier: judging %d execution(s) again after sandbox errors: %s", len(again),
                        verdicts[again[0]].feedback)
            time.sleep(RETRY_PAUSE_S * 2 ** attempt)   # a machine out of processes or memory for a moment recovers
            for i, v in zip(again, self.verify_many([items[i] for i in again])):
                verdicts[i] = v
        failed = [i for i, v in enumerate(verdicts) if v.status is Status.SANDBOX_ERROR]
        if failed:
            raise InfrastructureError(f"{len(failed)} execution(s) failed in the sandbox itself {tries} times "
                                      f"(e.g. {' '.join(verdicts[failed[0]].feedback.split())}); they cannot be "
                                      "judged: fix the machine and run again", failed)
        return verdicts

    def worker_pids(self) -> list[int]:
        """Host pids of the workers' outermost processes (killing one's group kills its sandbox), for monitoring."""
        return [w.proc.pid for w in self._workers if w.proc is not None]

    def close(self) -> None:
        """Finish queued work, then stop every worker and its sandbox."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
        for t in self._threads:
            t.join()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _serve(self, worker: SandboxWorker, started: threading.Event) -> None:
        try:
            if not worker.alive:
                worker.start()
        except WorkerDied as e:
            log.warning("verifier: a worker failed to start (will retry on its first job): %s", e)
        started.set()
        try:
            while (job := self._jobs.get()) is not None:
                code, check, fut = job
                if not fut.set_running_or_notify_cancel():
                    continue
                try:
                    verdict = self._run(worker, code, check)
                except Exception:  # a bug of ours must still resolve the Future
                    log.exception("verifier: internal error")
                    verdict = Verdict(Status.SANDBOX_ERROR, "sandbox_error: internal error", isolation=self.isolation)
                fut.set_result(verdict)
        finally:
            worker.close(graceful=True)

    def _run(self, worker: SandboxWorker, code: str, check: Check) -> Verdict:
        t0 = time.perf_counter()
        early, parse_ms, notes, program = precheck(code, check, self.lint)
        if early is None:
            try:
                loads = worker.hello.get("compiled_tag") == COMPILED_TAG   # the zygote runs our code objects
                request = request_for(code, check, self.limits, program if loads else None)
            except (plaindata.NotPlain, plaindata.TooLarge) as e:
                what = e.type_name if isinstance(e, plaindata.NotPlain) else "too large"
                early = Verdict(Status.SANDBOX_ERROR, cap(f"sandbox_error: the check's values are not plain data ({what})"))
        if early is None:
            try:
                reply = worker.run(request, self.limits.timeout_s + GRACE_S)
            except WorkerDied as e:
                log.warning("verifier: %s; replacing it", e)
                verdict = Verdict(Status.SANDBOX_ERROR, "sandbox_error: the sandbox worker died", message=cap(str(e), 300))
            else:
                verdict = judge_reply(check, reply, self.limits)
                if reply.get("outcome") == "zygote_error":  # e.g. leftovers it could not wipe: start afresh
                    log.warning("verifier: replacing a worker after: %s", reply.get("message"))
                    worker.close()
        else:
            verdict = early
        verdict.parse_ms = parse_ms
        verdict.isolation = self.isolation
        if notes:
            verdict.extra["lint"] = notes
        verdict.total_ms = (time.perf_counter() - t0) * 1000
        return verdict


def verify(code: str, check: Check, **pool_kwargs: Any) -> Verdict:
    """One-shot convenience: start a one-worker pool, verify, close it."""
    pool_kwargs.setdefault("workers", 1)
    with SandboxPool(**pool_kwargs) as pool:
        return pool.verify(code, check)
