"""benchmarks/engine_peers.py for real, at its smallest: native against vLLM in process, decode only.

Needs the ``[vllm]`` extra (``bash scripts/setup.sh --vllm``); without it the test skips. No server: ~40 s on 2 cores.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="the [vllm] extra is not installed (bash scripts/setup.sh --vllm)")

REPO = Path(__file__).resolve().parent.parent


def test_peers_quick_decode_writes_rates_and_ratios(tmp_path):
    out = tmp_path / "x.json"
    # 48 tokens, not --quick's 16: natively 16 tokens at batch 1 take ~2 ms, within a busy machine's jitter; and
    # vLLM on one thread: with two on a busy 2-core machine its steps stall at OpenMP barriers by 10x
    r = subprocess.run([sys.executable, "-m", "benchmarks.engine_bench", "--peers", "vllm", "--quick",
                        "--new-tokens", "48", "--reps", "4", "--vllm-threads", "1", "--sections", "decode,breakdown",
                        "--json", str(out), "--out", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert not res["errors"] and res["machine"]["cpu"] and res["machine"]["vllm_threads"] == "1"
    d = res["decode"]
    assert d["new_tokens"] == 48 and list(d["batches"]) == ["1", "8"]
    for row in d["batches"].values():
        ours, theirs = row["native"]["decode_tok_s"], row["vllm"]["decode_tok_s"]
        assert ours is not None and theirs is not None and ours > 0 and theirs > 0, row
        assert row["ratio_vllm"] == pytest.approx(ours / theirs)
        assert "server" not in row                       # --quick leaves the server out
        assert row["greedy_agree_vllm"] >= 1             # the same checkpoint, prompt and greedy first token
        assert row["breakdown"]["native"]["wall"] > 0 and row["breakdown"]["vllm"]["wall"] > 0
    assert "decode tokens/s" in r.stdout and "vLLM" in r.stdout
    assert (tmp_path / "engine_peers.png").stat().st_size > 0   # the plot, under --out
    # the same file again is refused (one line, exit 2) unless --force
    again = subprocess.run([sys.executable, "-m", "benchmarks.engine_peers", "--quick", "--json", str(out)],
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "--force" in again.stderr
