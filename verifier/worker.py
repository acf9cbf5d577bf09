"""The parent's handle on one sandboxed zygote: start it, send a request, read the reply.

Every read has a deadline, so a zygote that dies, hangs or answers garbage raises
``WorkerDied`` instead of hanging the caller; the pool then kills and replaces it.
"""
from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import time
from collections.abc import Sequence

from verifier.sandbox import START_TIMEOUT_S, Level, start_zygote
from verifier.zygote import decode_reply, encode_request

MAX_FRAME = 64 << 20


class WorkerDied(Exception):
    """The zygote is gone or broke the protocol; the message says how."""


class SandboxWorker:
    def __init__(self, level: Level, loop: str = "auto", preload: Sequence[str] | None = None) -> None:
        self.level, self.loop = level, loop   # loop: the zygote's loop, "auto" (C where built), "native" or "python"
        self.preload = preload                # the modules the zygote imports (None: verifier.zygote.PRELOAD)
        self.proc: subprocess.Popen | None = None
        self.hello: dict = {}

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start the zygote and wait for its ready frame; raise WorkerDied with its stderr if it fails."""
        self.close()
        try:
            self.proc = start_zygote(self.level, native_loop=self.loop != "python", preload=self.preload)
        except OSError as e:
            raise WorkerDied(f"cannot start: {e}") from e
        self.hello = self._read_json(time.monotonic() + START_TIMEOUT_S)
        if not self.hello.get("ready"):
            self._fail("no ready frame")
        if self.loop == "native" and self.hello.get("loop") != "native":
            self._fail("could not run the native zygote loop (verifier/zygote_loop.c)")

    def run(self, request: dict, wall_s: float) -> dict:
        """Send one request; return the zygote's reply within ``wall_s`` seconds or raise WorkerDied."""
        if not self.alive:
            self.start()
        frame = encode_request(request)
        try:
            assert self.proc is not None and self.proc.stdin is not None
            self.proc.stdin.write(frame)
        except (BrokenPipeError, OSError, ValueError):
            self._fail("died before the request")
        try:
            return decode_reply(self._read_frame(time.monotonic() + wall_s))
        except (ValueError, struct.error):
            self._fail("sent a malformed frame")
        raise AssertionError("unreachable")

    def _read_frame(self, deadline: float) -> bytes:
        header = self._read_exact(4, deadline)
        size = int.from_bytes(header, "big")
        if size > MAX_FRAME:
            self._fail(f"frame of {size} bytes")
        return self._read_exact(size, deadline)

    def _read_json(self, deadline: float) -> dict:
        try:
            frame = json.loads(self._read_frame(deadline))
        except ValueError:
            frame = None
        if not isinstance(frame, dict):
            self._fail("sent a malformed frame")
        return frame

    def _read_exact(self, n: int, deadline: float) -> bytes:
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        buf = bytearray()
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        while len(buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not poller.poll(remaining * 1000):
                self._fail("did not answer in time")
            chunk = os.read(fd, n - len(buf))
            if not chunk:
                self._fail("died")
            buf += chunk
        return bytes(buf)

    def _fail(self, what: str) -> None:
        reason = f"sandbox worker {what}"
        err = self._stderr_tail()
        self.close()
        raise WorkerDied(reason + (f": {err}" if err else ""))

    def _stderr_tail(self) -> str:
        errfile = getattr(self.proc, "errfile", None)
        if errfile is None:
            return ""
        try:
            errfile.seek(0)
            lines = errfile.read()[-2000:].decode("utf-8", "replace").strip().splitlines()
            return lines[-1] if lines else ""
        except (OSError, ValueError):
            return ""

    def close(self, graceful: bool = False) -> None:
        """Stop the zygote (its sandbox dies with it) and release the pipes; kill unless ``graceful`` works."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if graceful and proc.stdin is not None:
            try:
                proc.stdin.close()  # end of file: the zygote exits, then each bwrap reaps its child and exits
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # the bwrap chain shares the session's group
            except (ProcessLookupError, PermissionError):
                proc.kill()
        proc.wait()
        for f in (proc.stdin, proc.stdout, getattr(proc, "errfile", None)):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
