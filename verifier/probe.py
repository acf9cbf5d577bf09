"""Which sandbox level works on this machine: tried once per process, strongest first, fail closed.

``probe`` starts a real zygote at each candidate level (verifier/sandbox.py) through a real worker
(verifier/worker.py) until one answers; ``probe_keeping_zygote`` hands that worker over, so a pool
keeps it instead of starting one more. bwrap never falls back to the process level.
"""
from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Sequence

from verifier.sandbox import INSTALL_HINT, NAMESPACE_HINT, Level, SandboxUnavailable, candidate_levels
from verifier.worker import SandboxWorker, WorkerDied

log = logging.getLogger("verifier.sandbox")   # the warnings users and tests know by this name


_chosen: dict[str, Level] = {}
_lock = threading.Lock()


def probe(mode: str = "bwrap") -> Level:
    """The strongest level of ``mode`` that starts a working zygote here; cached per process.

    Raises SandboxUnavailable when none does: bwrap never falls back to the process level."""
    level, zygote = probe_keeping_zygote(mode)
    if zygote is not None:
        zygote.close()
    return level


def probe_keeping_zygote(mode: str = "bwrap", loop: str = "auto", preload: Sequence[str] | None = None
                         ) -> tuple[Level, SandboxWorker | None]:
    """``probe``, also handing over the zygote that proved the level, started as
    ``SandboxWorker(level, loop, preload)``, when this call had to find the level (None when it was
    known): a pool keeps it as a worker rather than start one more, a tenth of a second of start-up."""
    with _lock:
        if mode in _chosen:
            return _chosen[mode], None
        failures, reasons = [], []
        for level in candidate_levels(mode):
            worker = SandboxWorker(level, "auto" if loop == "native" else loop, preload)  # the level, not the loop, is probed
            try:
                worker.start()
            except WorkerDied as e:
                worker.close()
                failures.append(f"{level.label}: {e}")
                reasons.append(str(e).removeprefix("sandbox worker died: ").splitlines()[0][:160])
                continue
            if mode == "process":
                log.warning("verifier sandbox: using %s, as asked: no namespaces; generated code can reach this "
                            "machine's files and network", level.label)
            elif failures or "mapped to root" in level.label:
                log.warning("verifier sandbox: using %s; stronger levels failed: %s", level.label, "; ".join(failures) or "none available")
            _chosen[mode] = level
            if loop == "native" and worker.hello.get("loop") != "native":   # the pool's own start says why
                worker.close()
                return level, None
            worker.loop = loop
            return level, worker
        if mode == "bwrap":
            why = (f"bubblewrap (bwrap) is not on PATH; {INSTALL_HINT}" if not shutil.which("bwrap") else
                   f"bubblewrap cannot create its namespaces here ({'; '.join(dict.fromkeys(reasons))}); {NAMESPACE_HINT}")
            raise SandboxUnavailable(f"the verifier's sandbox needs bubblewrap: {why}")
        raise SandboxUnavailable(f"no sandbox level works for isolation={mode!r}: " + "; ".join(failures or ["none available"]))
