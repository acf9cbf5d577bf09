"""The harness judges without a model: its checker, report, accuracy pass and audits, and the SUT's records
(sut/records.py), import no torch (issue 19). Nor does harness/lg_run.py, the LoadGen child, until its engine
loads a checkpoint: tests/oracle_engine.py's runs start in a fraction of a second for that reason."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TORCH_FREE = ("harness.check_submission", "harness.report", "harness.audits", "harness.audit_verify",
              "harness.compliance", "verifier.accuracy", "sut.loadgen_sut", "sut.records", "harness.lg_run")


def test_the_judging_modules_import_no_torch():
    code = (f"import sys\nimport {', '.join(TORCH_FREE)}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", f"torch imported by one of {TORCH_FREE}: {r.stdout}"
