"""Save and load a checkpoint directory: weights, config and tokenizer, never pickle.

Two formats. Format 2 (sut/model/hf_format.py) is a Hugging Face GPT-2 directory that
transformers, vLLM or any GPT-2 engine loads; a model with attempt markers
(``max_retries = 0``) is always saved in it. Format 1, the retry-step-embedding model:

    DIR/model.safetensors   weights (safetensors; the tied LM head is stored once, as wte)
    DIR/config.json         {"format", "model": GPTConfig, "train": {...}, "tokenizer_sha256",
                             "commit", "n_params"}
    DIR/tokenizer.json      the `tokenizers` file; its sha256 must equal config's
    DIR/metrics.json        optional: the training report's figures

Every failure is a ``CheckpointError`` whose message is one line naming the file and
the fix, so ``python -m sut.evaluate --checkpoint BAD`` fails readably.
"""
from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from sut.model import hf_format
from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.model.tokenizer import CodeTokenizer, TokenizerError

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "reference"
WEIGHTS, CONFIG, TOKENIZER, METRICS = "model.safetensors", "config.json", "tokenizer.json", "metrics.json"
_TIED = "lm_head.weight"  # same tensor as wte.weight; not stored twice
_RETRAIN = "retrain it with `python -m sut.train --out DIR` or use the shipped checkpoints/reference"


class CheckpointError(RuntimeError):
    """A checkpoint directory that cannot be used; the message says which file and how to fix it."""


def git_commit(repo: Path = REPO_ROOT) -> str | None:
    """HEAD's hash (with '-dirty' if the tree has changes), or None outside a git checkout."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def save_checkpoint(out_dir: str | Path, model: NanoCodeGen, tokenizer: CodeTokenizer, model_config: GPTConfig,
                    train_config: dict[str, Any] | None = None, report: dict[str, Any] | None = None,
                    suite: str = "basic") -> Path:
    """Write the checkpoint directory (created if needed); returns its path. ``suite`` is the task
    suite it was trained for (its default there)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not model_config.max_retries:   # attempt markers: plain GPT-2, format 2
        hf_format.save_hf(out, model, tokenizer, {"suite": suite, "train": train_config or {}, "commit": git_commit(),
                                                  "n_params": model.num_params()})
        if report is not None:
            (out / METRICS).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        return out
    state = {k: v.detach().to("cpu", torch.float32).contiguous()
             for k, v in model.state_dict().items() if k != _TIED}
    save_file(state, str(out / WEIGHTS), metadata={"format": str(FORMAT_VERSION)})
    tokenizer.save(out / TOKENIZER)
    config = {
        "format": FORMAT_VERSION,
        "model": model_config.to_dict(),
        "train": train_config or {},
        "tokenizer_sha256": tokenizer.sha256(),
        "suite": suite,
        "commit": git_commit(),
        "n_params": model.num_params(),
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    if report is not None:
        (out / METRICS).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return out


def _read_config(path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        GPTConfig(**config["model"])
        config["tokenizer_sha256"]
        return config
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing; {_RETRAIN}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); {_RETRAIN}") from None
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: missing or unknown field {e}; {_RETRAIN}") from None


def _read_hf_config(d: Path) -> dict[str, Any]:
    """nano_codegen.json with "model" (the GPTConfig read from config.json) added."""
    try:
        config = json.loads((d / hf_format.PROJECT_FILE).read_text(encoding="utf-8"))
        config["tokenizer_sha256"]
        config["model"] = hf_format.read_model_config(d / CONFIG).to_dict()
        return config
    except FileNotFoundError as e:
        raise CheckpointError(f"{e.filename}: missing; {_RETRAIN}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{d}: a JSON file is not valid ({e}); {_RETRAIN}") from None
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{d}: missing or unknown field {e}; {_RETRAIN}") from None
    except hf_format.FormatError as e:
        raise CheckpointError(f"{d / CONFIG}: {e}; {_RETRAIN}") from None


def checkpoint_suite(config: dict[str, Any]) -> str:
    """The suite a checkpoint was trained for (format-1 checkpoints predate the record: basic)."""
    return config.get("suite", "basic")


def _load_tokenizer(tok_path: Path, config: dict[str, Any]) -> CodeTokenizer:
    """The tokenizer saved with the weights, or CheckpointError: missing, unreadable, or not the one whose
    sha256 config.json records (a different tokenizer would silently mis-read every token id)."""
    if not tok_path.is_file():
        raise CheckpointError(f"{tok_path}: missing; copy the tokenizer.json saved with these weights, or {_RETRAIN}")
    text = tok_path.read_text(encoding="utf-8", errors="replace")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != config["tokenizer_sha256"]:
        raise CheckpointError(f"{tok_path}: tokenizer does not match the checkpoint (sha256 differs from "
                              f"{CONFIG}); restore the tokenizer.json saved with these weights, or {_RETRAIN}")
    try:
        return CodeTokenizer.from_str(text)
    except TokenizerError as e:
        raise CheckpointError(f"{tok_path}: {e}") from None


def load_checkpoint(ckpt_dir: str | Path = DEFAULT_CHECKPOINT, device: str | torch.device = "cpu"
                    ) -> tuple[NanoCodeGen, CodeTokenizer, dict[str, Any]]:
    """(model in eval mode on ``device``, tokenizer, config.json contents)."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        raise CheckpointError(f"{d}: checkpoint directory not found; {_RETRAIN}")
    hf = hf_format.is_hf_dir(d)
    config = _read_hf_config(d) if hf else _read_config(d / CONFIG)

    tok_path = d / TOKENIZER
    tokenizer = _load_tokenizer(tok_path, config)

    mcfg = GPTConfig(**config["model"])
    if tokenizer.vocab_size != mcfg.vocab_size:
        raise CheckpointError(f"{tok_path}: vocabulary of {tokenizer.vocab_size} tokens, but {CONFIG} says "
                              f"{mcfg.vocab_size}; {_RETRAIN}")
    w_path = d / WEIGHTS
    if not w_path.is_file():
        raise CheckpointError(f"{w_path}: missing; {_RETRAIN}")
    if hf:
        model = NanoCodeGen(mcfg)
        try:
            hf_format.load_hf_state(w_path, model)
        except hf_format.FormatError as e:
            raise CheckpointError(f"{w_path}: {e}; {_RETRAIN}") from None
        model.to(device).eval()
        return model, tokenizer, config
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{w_path}: corrupt safetensors file ({str(e).splitlines()[0]}); {_RETRAIN}") from None

    model = NanoCodeGen(mcfg)
    expected = {k: v.shape for k, v in model.state_dict().items() if k != _TIED}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{w_path}: tensors do not fit {CONFIG} (missing {missing[:3]}, unexpected "
                              f"{unexpected[:3]}); {_RETRAIN}")
    for k, shape in expected.items():
        if state[k].shape != shape:
            raise CheckpointError(f"{w_path}: tensor {k} has shape {tuple(state[k].shape)} but {CONFIG} implies "
                                  f"{tuple(shape)}; {_RETRAIN}")
    model.load_state_dict(state, strict=False)  # lm_head.weight is tied to wte.weight
    model.to(device).eval()
    log.info("loaded %s: %d params, tokenizer %s", d, model.num_params(), config["tokenizer_sha256"][:12])
    return model, tokenizer, config
