"""The Hugging Face checkpoint format (format 2): a plain GPT-2 directory any engine loads.

    DIR/config.json              transformers GPT2Config (model_type "gpt2", activation "gelu")
    DIR/generation_config.json   greedy, stops at <|end|>
    DIR/model.safetensors        GPT2LMHeadModel's tensors (Conv1D weights are (in, out))
    DIR/tokenizer.json           the byte-level BPE with its special and attempt-marker tokens
    DIR/tokenizer_config.json    PreTrainedTokenizerFast, so AutoTokenizer loads it
    DIR/nano_codegen.json        the project's own record: suite, training config, tokenizer sha256

NanoCodeGen with ``max_retries = 0`` *is* GPT-2 (learned positions, pre-LayerNorm, exact GELU,
tied LM head): the attempt number travels as marker tokens in the context, so nothing but a
renaming and a transpose separates our tensors from GPT2LMHeadModel's. Writing goes through
transformers itself (``save_pretrained``), so the files are what that library writes; reading
needs only safetensors and json, so the engines never import transformers.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.model.tokenizer import ATTEMPT_MARKERS, END, PAD, SPECIAL_TOKENS, START, CodeTokenizer

PROJECT_FILE = "nano_codegen.json"
FORMAT_VERSION = 2
_LINEAR = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")   # nn.Linear here, Conv1D (transposed) in HF


class FormatError(ValueError):
    """An HF directory this project cannot run (another architecture, or options GPT-2 has that we lack)."""


def is_hf_dir(d: Path) -> bool:
    return (Path(d) / PROJECT_FILE).is_file()


def hf_name(ours: str) -> str:
    """Our parameter name -> GPT2LMHeadModel's."""
    if ours.startswith("blocks."):
        return "transformer.h." + ours[len("blocks."):]
    return "transformer." + ours


def to_hf_state(model: NanoCodeGen) -> dict[str, torch.Tensor]:
    """GPT2LMHeadModel's state dict for ``model`` (the tied head and the zero step row are not tensors there)."""
    out = {}
    for name, t in model.state_dict().items():
        if name in ("lm_head.weight", "wse.weight"):
            continue
        t = t.detach().to("cpu", torch.float32)
        if name.endswith(".weight") and any(f".{m}." in f".{name}" for m in _LINEAR):
            t = t.t()
        out[hf_name(name)] = t.contiguous()
    return out


def save_hf(out: Path, model: NanoCodeGen, tok: CodeTokenizer, project: dict[str, Any]) -> str:
    """Write the directory with transformers' own writers; returns the written tokenizer.json's sha256."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast  # noqa: PLC0415 - saving only
    from tokenizers import Tokenizer  # noqa: PLC0415

    if model.config.max_retries:
        raise FormatError("only a model without the retry-step embedding (max_retries 0) is GPT-2")
    c = model.config
    hf_cfg = GPT2Config(vocab_size=c.vocab_size, n_positions=c.block_size, n_embd=c.n_embd, n_layer=c.n_layer,
                        n_head=c.n_head, activation_function="gelu", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                        layer_norm_epsilon=model.ln_f.eps, bos_token_id=tok.start_id, eos_token_id=tok.end_id,
                        pad_token_id=tok.pad_id, tie_word_embeddings=True)
    hf = GPT2LMHeadModel(hf_cfg)
    missing, unexpected = hf.load_state_dict(to_hf_state(model), strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise FormatError(f"GPT-2 tensors do not match: missing {missing[:3]}, unexpected {unexpected[:3]}")
    hf.generation_config.do_sample = False
    hf.save_pretrained(out)
    fast = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(tok.to_str()), bos_token=START, eos_token=END,
                                   pad_token=PAD, additional_special_tokens=[s for s in SPECIAL_TOKENS + ATTEMPT_MARKERS
                                                                            if s not in (START, END, PAD)])
    fast.save_pretrained(out)
    text = (Path(out) / "tokenizer.json").read_text(encoding="utf-8")
    CodeTokenizer.from_str(text)   # what transformers wrote still carries our special tokens
    sha = hashlib.sha256(text.encode("utf-8")).hexdigest()   # of the file's text, as load_checkpoint checks it
    (Path(out) / PROJECT_FILE).write_text(json.dumps({**project, "format": FORMAT_VERSION,
                                                      "tokenizer_sha256": sha}, indent=2) + "\n")
    return sha


def read_model_config(path: Path) -> GPTConfig:
    """GPTConfig from an HF config.json; FormatError names an architecture or option we do not run."""
    d = json.loads(Path(path).read_text(encoding="utf-8"))
    if d.get("model_type") != "gpt2":
        raise FormatError(f"model_type {d.get('model_type')!r}: only gpt2 checkpoints run here")
    if d.get("activation_function", "gelu_new") != "gelu":
        raise FormatError(f"activation_function {d.get('activation_function')!r}: the engines compute exact gelu")
    if d.get("n_inner") not in (None, 4 * d["n_embd"]) or not d.get("tie_word_embeddings", True):
        raise FormatError("n_inner other than 4 x n_embd or an untied LM head: not this project's GPT-2")
    if d.get("scale_attn_by_inverse_layer_idx") or d.get("reorder_and_upcast_attn"):
        raise FormatError("scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn are not supported")
    return GPTConfig(vocab_size=d["vocab_size"], block_size=d["n_positions"], n_layer=d["n_layer"],
                     n_head=d["n_head"], n_embd=d["n_embd"], max_retries=0)


def load_hf_state(path: Path, model: NanoCodeGen) -> None:
    """Load GPT2LMHeadModel tensors from ``path`` into ``model``; FormatError on any mismatch."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise FormatError(f"corrupt safetensors file ({str(e).splitlines()[0]})") from None
    want = {hf_name(k): (k, v.shape) for k, v in model.state_dict().items() if k not in ("lm_head.weight", "wse.weight")}
    state.pop("lm_head.weight", None)   # a writer that stores the tied head twice
    missing, unexpected = sorted(set(want) - set(state)), sorted(set(state) - set(want))
    if missing or unexpected:
        raise FormatError(f"tensors do not fit config.json (missing {missing[:3]}, unexpected {unexpected[:3]})")
    ours = {}
    for hf_key, (name, shape) in want.items():
        t = state[hf_key]
        if name.endswith(".weight") and any(f".{m}." in f".{name}" for m in _LINEAR):
            t = t.t()
        if t.shape != shape:
            raise FormatError(f"tensor {hf_key} has shape {tuple(state[hf_key].shape)}, config.json implies otherwise")
        ours[name] = t.contiguous()
    model.load_state_dict(ours, strict=False)   # the tied head and the frozen zero step row stay as built


@torch.no_grad()
def with_attempt_markers(model: NanoCodeGen, tok: CodeTokenizer) -> tuple[NanoCodeGen, CodeTokenizer]:
    """A format-1 model and tokenizer turned into GPT-2 with attempt markers: the start of a fine-tune.

    The step-0 row of the retry-step embedding is folded into the position table, which keeps
    first attempts exactly as they were; the 15 markers are appended to the vocabulary, each
    starting from the mean token plus its step row's difference from step 0. Retries still need
    the fine-tune (sut.train.self_repair --attempt-markers): a marker is one token in the context,
    where the step row was added to every token of the attempt.
    """
    from dataclasses import replace  # noqa: PLC0415
    from tokenizers import AddedToken, Tokenizer  # noqa: PLC0415

    if not model.config.max_retries:
        raise FormatError("the model already uses attempt markers")
    raw = Tokenizer.from_str(tok.to_str())
    raw.add_special_tokens([AddedToken(m, special=True, normalized=False) for m in ATTEMPT_MARKERS])
    new_tok = CodeTokenizer(raw)
    old_v = model.config.vocab_size
    if new_tok.attempt_ids != list(range(old_v, old_v + len(ATTEMPT_MARKERS))):
        raise FormatError(f"the markers did not land at ids {old_v}.. (tokenizer vocabulary {tok.vocab_size}, "
                          f"model vocabulary {old_v})")
    new = NanoCodeGen(replace(model.config, vocab_size=new_tok.vocab_size, max_retries=0))
    state = {k: v for k, v in model.state_dict().items() if k not in ("wse.weight", "wte.weight", "lm_head.weight",
                                                                      "wpe.weight")}
    new.load_state_dict(state, strict=False)
    wse = model.wse.weight
    new.wpe.weight.copy_(model.wpe.weight + wse[0])
    new.wte.weight[:old_v].copy_(model.wte.weight)
    mean = model.wte.weight.mean(0)
    for k in range(1, len(ATTEMPT_MARKERS) + 1):
        new.wte.weight[old_v + k - 1].copy_(mean + wse[min(k, wse.shape[0] - 1)] - wse[0])
    return new, new_tok


@torch.no_grad()
def with_heads(model: NanoCodeGen, n_head: int) -> NanoCodeGen:
    """The same weights read as ``n_head`` attention heads: the start of a fine-tune that moves a model to a
    head size another engine has kernels for (vLLM's CPU attention has none for 24, sut.engine.external.vllm_generator).
    The attention it computes is a different one until the fine-tune (sut.train.self_repair --n-head) relearns it."""
    from dataclasses import replace  # noqa: PLC0415

    if n_head < 1 or model.config.n_embd % n_head:
        raise FormatError(f"--n-head {n_head}: must divide n_embd {model.config.n_embd}")
    new = NanoCodeGen(replace(model.config, n_head=n_head))
    new.load_state_dict(model.state_dict())
    return new.to(next(model.parameters()).device)
