"""`python -m sut.evaluate`: the documented command works; bad input is one line and a nonzero exit."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sut.model.checkpoint import DEFAULT_CHECKPOINT

REPO = Path(__file__).resolve().parent.parent


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sut.evaluate", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def test_json_summary_on_a_few_tasks(tmp_path: Path) -> None:
    results = tmp_path / "results.jsonl"
    proc = _run("--count", "4", "--json", "-", "--jsonl", str(results))
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads(proc.stdout)
    assert s["tasks"] == 4 and 0 <= s["pass@1"] <= s["pass@final"] <= 1
    assert 1 <= s["mean_attempts"] <= 5 and s["mean_tokens"] > 0 and s["errors"] == 0
    assert s["retries"] == round((s["mean_attempts"] - 1) * 4)
    assert 0 <= s["retries_repeating_first"] <= s["retries_repeating_earlier"] <= s["retries"]
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [r["task_id"] for r in rows] == ["eval-0000", "eval-0001", "eval-0002", "eval-0003"]


def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = _run("--checkpoint", str(tmp_path / "missing"), "--count", "1")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "sut.train" in proc.stderr
    bad = tmp_path / "bad"
    shutil.copytree(DEFAULT_CHECKPOINT, bad)
    (bad / "tokenizer.json").write_text((bad / "tokenizer.json").read_text().replace('"<|code|>"', '"<|kode|>"', 1))
    proc = _run("--checkpoint", str(bad), "--count", "1")
    assert proc.returncode == 2 and "tokenizer does not match the checkpoint" in proc.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--device", "bogus"], "--device 'bogus'"), (["--device", "cuda:99"], "--device cuda:99"),
    (["--threads", "-3"], "--threads must be at least 1"), (["--threads", "100000"], "--threads must be at most"),
    (["--workers", "0"], "--workers must be at least 1"), (["--temperature", "nan"], "--temperature"),
    (["--seed", "-1"], "--seed must be at least 0"), (["--top-k", "-1"], "--top-k"),
])
def test_bad_engine_options_are_one_line_and_exit_2(args: list[str], fragment: str) -> None:
    """The rules of harness/run.py's engine options (sut/engine/factory.py), not a torch or pool traceback."""
    proc = _run("--count", "1", *args)
    assert proc.returncode == 2 and fragment in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")


def test_record_writes_reference_figures_only_with_default_settings(tmp_path: Path) -> None:
    """--record is refused for anything but the reference's own settings, and never runs then."""
    ckpt = tmp_path / "ckpt"
    shutil.copytree(DEFAULT_CHECKPOINT, ckpt)
    before = (ckpt / "metrics.json").read_text()
    for extra in (["--count", "4"], ["--temperature", "1.0"], ["--top-k", "0"], ["--max-attempts", "2"],
                  ["--redraws", "0"]):
        proc = _run("--checkpoint", str(ckpt), "--record", *extra)
        assert proc.returncode == 2 and "--record" in proc.stderr, extra
    assert (ckpt / "metrics.json").read_text() == before


def test_the_failed_tasks_are_listed_by_evaluation_index() -> None:
    proc = _run("--count", "20", "--json", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = json.loads(proc.stdout)
    ref = json.loads((DEFAULT_CHECKPOINT / "metrics.json").read_text())["eval"]["failed_final"]
    assert s["failed_final"] == [i for i in ref if i < 20]   # the same verdicts as the recorded reference run


def test_retry_small_checkpoint_reproduces_its_recorded_verdicts() -> None:
    """checkpoints/retry-small (the size where retries add >= 5 points, docs/model.md): its recorded
    figures come from real runs; the first 40 tasks give the same verdicts again."""
    ckpt = DEFAULT_CHECKPOINT.parent / "retry-small"
    proc = _run("--checkpoint", str(ckpt), "--count", "40", "--json", "-")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = json.loads((ckpt / "metrics.json").read_text())["eval"]
    assert json.loads(proc.stdout)["failed_final"] == [i for i in ref["failed_final"] if i < 40]
    assert ref["tasks"] == 1024 and ref["pass@final"] >= 0.85 and ref["pass@final"] - ref["pass@1"] >= 0.05


def test_tasks_that_end_in_an_engine_error_make_the_command_fail(tmp_path: Path) -> None:
    """An endpoint that lists its model but answers every completion with HTTP 500: the tasks end in errors,
    and evaluate says so on stderr and exits 1 instead of printing a pass rate as if it measured something."""
    pytest.importorskip("openai")
    import http.server
    import threading

    class Broken(http.server.BaseHTTPRequestHandler):
        def _send(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:   # noqa: N802 - http.server's name
            self._send(200, {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "t",
                                                         "max_model_len": 512}]})

        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self._send(500, {"error": {"message": "broken on purpose", "type": "server_error"}})

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Broken)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        proc = _run("--count", "2", "--engine", "openai", "--base-url", f"http://127.0.0.1:{server.server_port}/v1",
                    "--request-timeout-s", "5")
    finally:
        server.shutdown()
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: 2 of 2 task(s) ended in an error") and "eval-0000" in last, proc.stderr[-2000:]
