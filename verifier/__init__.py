"""The judge: sandboxed execution of generated code, task checks with feedback, the accuracy pass.

Imports nothing of the rest of the project (the judge knows nothing of the judged).
"""
from verifier.checks import CallCheck, CasesCheck, Check, TestCheck, ValueCheck, check_from_json, check_to_json
from verifier.pool import SandboxPool, verify
from verifier.verdict import Status, Verdict

__all__ = ["CallCheck", "CasesCheck", "Check", "SandboxPool", "Status", "TestCheck", "ValueCheck", "Verdict",
           "check_from_json", "check_to_json", "verify"]
