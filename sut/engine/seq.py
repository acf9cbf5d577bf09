"""One task in flight inside the engine (sut/engine/scheduler.py): its transcript, slot and attempt state.

``Seq`` offers the ``len`` / ``reset`` / ``append`` interface that ``sut.agent.append_feedback``
works on, so a retry's feedback and a truncation are laid out by the rules every engine shares.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any


from tqdm import tqdm

from sut.model import transcript as tr
from sut.records import AgentResult

log = logging.getLogger("sut.engine")

OnDone = Callable[[AgentResult], None]
OnFirstToken = Callable[[int], None]
PREFILL, DECODE, PARKED = "prefill", "decode", "parked"


def one_line(prefix: str, e: BaseException) -> str:
    return f"{prefix}{type(e).__name__}: {e}".splitlines()[0]


class Seq(tr.TokenBuffer):
    """One task in flight: its transcript, its slot, the attempt underway and its timings."""

    def __init__(self, task: Any, on_done: OnDone, on_first: OnFirstToken | None, slot: int) -> None:
        super().__init__()
        self.task, self.on_done, self.on_first, self.slot = task, on_done, on_first, slot
        self.result = AgentResult(task.id)
        self.prefix = tr.Piece()
        self.state = PREFILL
        self.attempt = 0
        self.truncated = False          # the current attempt's transcript was cut (cache rebuilt)
        self.out: list[int] = []        # tokens generated in the current attempt
        self.step = self.budget = self.prompt_tokens = self.reused = 0
        self.temperature = 0.0
        self.key = 0                    # the draw's sampling key (sut/engine/token_choice.py)
        self.prefill_ms = self.t_decode = self.t_submit = self.t_verdict = 0.0
        self.code = ""
        self.rejected: set[str] = set()  # code the verifier rejected for this task (AgentConfig.redraws)
        self.draw = self.redrawn = 0     # the current attempt's redraw count and discarded tokens
        self.future: Any = None
        self.grams: dict[tuple[int, ...], int] = {}   # the draft index (sut/engine/draft.py) over grams_of[:grams_upto]
        self.grams_of: list[int] | None = None
        self.grams_upto = 0
        self.done = False


def call(fn: Callable[..., None], *args: Any) -> None:
    """Run a user callback; its exception is logged, never allowed to break the engine."""
    try:
        fn(*args)
    except Exception:
        log.exception("engine callback %r raised", fn)


def run_all(engine: Any, tasks: Sequence[Any], desc: str, progress: bool,
            on_count: Callable[[int], None] | None = None) -> list[AgentResult]:
    """Submit every task to ``engine`` (anything with start/submit: the native or an external engine), wait
    for all, return the results in input order, with a progress bar if asked; ``on_count(done)`` after each."""
    results: list[AgentResult | None] = [None] * len(tasks)
    left, lock, all_done = [len(tasks)], threading.Lock(), threading.Event()
    bar = tqdm(total=len(tasks), desc=desc, unit="task", disable=not progress)

    def done(i: int, r: AgentResult) -> None:
        results[i] = r
        bar.update(1)
        with lock:
            left[0] -= 1
            if on_count is not None:
                on_count(len(tasks) - left[0])
            if left[0] == 0:
                all_done.set()

    engine.start()
    for i, task in enumerate(tasks):
        engine.submit(task, lambda r, i=i: done(i, r))
    if tasks:
        all_done.wait()
    bar.close()
    return results  # type: ignore[return-value]
