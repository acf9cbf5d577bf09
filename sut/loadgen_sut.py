"""The System Under Test as LoadGen sees it: issue-query and flush callbacks over the engine.

``issue_queries`` runs on a LoadGen thread holding the GIL, so it only hands each sample
to the engine (a queue put) and returns. The engine's threads run the agent loops and
call back ``_complete`` exactly once per sample, with a result or an error result; this
class turns that into ``QuerySamplesComplete`` and guards the exactly-once rule itself
(a second completion of the same query id is dropped and counted, never sent).
"""
from __future__ import annotations

import array
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import mlperf_loadgen as lg

from sut.records import AgentResult
from sut.tasks.record import Task
from verifier.response_format import encode

log = logging.getLogger(__name__)


class AgentEngine(Protocol):
    """What the SUT needs from an engine (sut.engine.scheduler.Engine implements it)."""

    def submit(self, task: Task, on_done: Callable[[AgentResult], None],
               on_first_token: Callable[[int], None] | None = None) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...


@dataclass
class SUTStats:
    issued: int = 0
    completed: int = 0
    errors: int = 0                 # samples answered with an error response
    duplicate_completions: int = 0  # engine bugs caught by the exactly-once guard
    attempts: int = 0
    tokens: int = 0
    started: float = field(default_factory=time.perf_counter)


class CodegenSUT:
    def __init__(self, get_task: Callable[[int], Task], engine: AgentEngine,
                 first_token: bool, on_progress: Callable[[SUTStats], None] | None = None) -> None:
        self.get_task = get_task
        self.engine = engine
        self.first_token = first_token  # SingleStream/Server: report TTFT via FirstTokenComplete
        self.on_progress = on_progress
        self.stats = SUTStats()
        self.records: list[dict[str, Any]] = []   # one per completed sample, for the results tree
        self._lock = threading.Lock()
        self._pending: dict[int, int] = {}        # query id -> qsl index, not yet completed
        self.sut = lg.ConstructSUT(self.issue_queries, self.flush_queries)

    # -- LoadGen callbacks (LoadGen threads) ------------------------------------------
    def issue_queries(self, query_samples: list[Any]) -> None:
        with self._lock:
            for qs in query_samples:
                self._pending[qs.id] = qs.index
            self.stats.issued += len(query_samples)
        for qs in query_samples:
            try:
                task = self.get_task(qs.index)
            except Exception as e:  # a bad index must still be answered
                self._complete(qs.id, qs.index, AgentResult(f"sample-{qs.index}", error=f"{type(e).__name__}: {e}"))
                continue
            on_first = (lambda tok, qid=qs.id: self._first_token(qid, tok)) if self.first_token else None
            self.engine.submit(task, lambda res, qid=qs.id, idx=qs.index: self._complete(qid, idx, res), on_first)

    def flush_queries(self) -> None:
        """Nothing is held back: the engine batches continuously, so there is nothing to flush."""

    # -- engine callbacks (engine threads) -----------------------------------------------
    def _first_token(self, qid: int, token_id: int) -> None:
        buf = array.array("B", int(token_id).to_bytes(4, "little"))
        ptr, n = buf.buffer_info()
        lg.FirstTokenComplete([lg.QuerySampleResponse(qid, ptr, n, 1)])

    def _complete(self, qid: int, index: int, result: AgentResult) -> None:
        with self._lock:
            if self._pending.pop(qid, None) is None:
                self.stats.duplicate_completions += 1
                log.error("engine completed query %d twice; the second completion was dropped", qid)
                return
            self.stats.completed += 1
            self.stats.attempts += len(result.attempts)
            self.stats.tokens += result.n_tokens
            if result.error:
                self.stats.errors += 1
                log.error("sample %d (%s) answered with an error: %s", index, result.task_id, result.error)
            self.records.append({"qsl_idx": index, **result.to_json()})
        buf = array.array("B", encode(result.to_response()))
        ptr, n = buf.buffer_info()
        # buf stays alive until QuerySamplesComplete returns (LoadGen copies it then).
        lg.QuerySamplesComplete([lg.QuerySampleResponse(qid, ptr, n, max(result.n_tokens, 1))])
        if self.on_progress is not None:
            self.on_progress(self.stats)

    @property
    def unanswered(self) -> int:
        with self._lock:
            return len(self._pending)

    def destroy(self) -> None:
        lg.DestroySUT(self.sut)
