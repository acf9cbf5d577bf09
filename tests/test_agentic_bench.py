"""The agentic suite's measurements: transformers runs the shipped checkpoint as our engine does, and the
cost benchmark's table and plots come out of a real (small) run."""
from __future__ import annotations

import json
from pathlib import Path

from benchmarks.agentic_cost import main as cost_main
from benchmarks.hf_parity import parity
from sut.tasks.suites import DEFAULTS, load_tasks

AGENTIC = DEFAULTS["agentic"].checkpoint


def test_transformers_first_attempts_match_our_engine_on_a_sample() -> None:
    """Issue target: identical greedy first attempts on >= 99% of evaluation tasks (all 1,024 are measured by
    `python -m benchmarks.hf_parity`, docs/agentic.md); here every 32nd task, 32 in all."""
    tasks = load_tasks("agentic")[::32]
    share, differ = parity(AGENTIC, tasks, DEFAULTS["agentic"].max_new_tokens)
    assert share >= 31 / 32, differ


def test_cost_benchmark_table_and_plots(tmp_path: Path, capsys) -> None:
    out = tmp_path / "cost.json"
    assert cost_main(["--tasks", "12", "--decode-batch", "2", "--out", str(tmp_path), "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    rows, off = res["per_attempt"], {r["attempt"]: r for r in res["per_attempt_noreuse"]}
    assert rows[0]["attempt"] == 1 and len(rows) >= 2
    assert all(r["added"] > 0 for r in rows[1:] if not r["truncated"])   # each retry grows its task's context
    for r in rows[1:]:   # with reuse a retry prefills only what it adds; without, the whole transcript
        if r["attempt"] in off:
            assert r["prefilled"] < off[r["attempt"]]["prefilled"] == off[r["attempt"]]["context"]
    sweep = res["decode_sweep"]
    assert sweep[0]["context"] == 1 and sweep[-1]["per_token_us"] > sweep[0]["per_token_us"]
    assert {Path(p).name for p in res["figures"]} == {"agentic_decode_vs_context.png", "agentic_cost_by_attempts.png"}
    assert all(Path(p).stat().st_size > 0 for p in res["figures"])
    assert "per attempt, mean" in capsys.readouterr().out
