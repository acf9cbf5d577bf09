"""The query sample library: the frozen evaluation tasks as LoadGen samples.

Tasks are tiny (a prompt and a check), so "loading to RAM" is building the index -> task
map for the requested indices; unloading drops it. LoadGen calls both around every run,
and the SUT only ever reads tasks LoadGen has loaded, which this class enforces.
"""
from __future__ import annotations

import logging
import threading

import mlperf_loadgen as lg

from sut.tasks.record import Task

log = logging.getLogger(__name__)


class TaskQSL:
    def __init__(self, tasks: list[Task], performance_count: int | None = None) -> None:
        if not tasks:
            raise ValueError("the QSL needs at least one task")
        self.tasks = tasks
        self.performance_count = performance_count or len(tasks)  # every task fits in RAM
        self._loaded: dict[int, Task] = {}
        self._lock = threading.Lock()
        self.qsl = lg.ConstructQSL(len(tasks), self.performance_count, self.load, self.unload)

    def load(self, indices: list[int]) -> None:
        with self._lock:
            for i in indices:
                self._loaded[i] = self.tasks[i]
        log.info("QSL loaded %d samples", len(indices))

    def unload(self, indices: list[int]) -> None:
        with self._lock:
            for i in indices:
                self._loaded.pop(i, None)

    def __getitem__(self, index: int) -> Task:
        task = self._loaded.get(index)
        if task is None:
            raise KeyError(f"sample {index} was not loaded by LoadGen")
        return task

    def destroy(self) -> None:
        lg.DestroyQSL(self.qsl)
