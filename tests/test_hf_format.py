"""Format 2 checkpoints are plain Hugging Face GPT-2 directories: transformers loads them with no custom
code and computes what our engines compute; attempt markers replace the retry-step embedding."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers

from sut.model import transcript as tr
from sut.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from sut.model.gpt import GPTConfig, NanoCodeGen
from sut.model.tokenizer import train_tokenizer


TEXTS = ["def count_above(xs):\n    count = 0\n    for x in xs:\n        if x > 3:\n            count += 1\n    return count",
         "Write count_above(xs) that returns how many numbers of xs pass the threshold 3.",
         "6/8 passed\ncount_above([3, 5]) returned 1, expected 2"] * 40


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, NanoCodeGen]:
    tok = train_tokenizer(TEXTS, 400, attempt_markers=True)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=256, n_layer=2, n_head=2, n_embd=32, max_retries=0)
    torch.manual_seed(0)
    model = NanoCodeGen(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.normal_(0, 0.3)   # far from the init, so a wrong transpose or name would show
    out = tmp_path_factory.mktemp("hf") / "ckpt"
    save_checkpoint(out, model, tok, cfg, {"steps": 1}, {"val_pass@1": 0.5}, suite="agentic")
    return out, model


def test_directory_is_what_transformers_writes(saved: tuple[Path, NanoCodeGen]) -> None:
    out, _ = saved
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "nano_codegen.json", "metrics.json"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["activation_function"] == "gelu" and config["n_positions"] == 256
    assert json.loads((out / "nano_codegen.json").read_text())["suite"] == "agentic"


def test_transformers_loads_it_and_computes_the_same_logits(saved: tuple[Path, NanoCodeGen]) -> None:
    out, _ = saved
    ours, tok, meta = load_checkpoint(out)
    assert meta["suite"] == "agentic" and meta["model"]["max_retries"] == 0
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    prompt = "Write count_above(xs) that returns how many numbers of xs pass the threshold 4."
    assert hf_tok.encode(prompt, add_special_tokens=False) == tok.encode(prompt)
    seq = tr.prompt_prefix(tok, prompt).extend(tr.code_piece(tok, TEXTS[0], 0)).extend(
        tr.feedback_extension(tok, TEXTS[2], 1))
    assert tok.attempt_ids[0] in seq.ids and set(seq.steps) == {0}   # the marker carries the attempt number
    idx = torch.tensor([seq.ids])
    with torch.no_grad():
        a, _ = ours(idx, torch.zeros_like(idx))
        b = hf(idx).logits
    assert torch.allclose(a, b, atol=1e-5, rtol=0)
    gen = hf.generate(idx, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_id)
    with torch.no_grad():   # greedy continuation by our model, one full forward per token
        ids = list(seq.ids)
        for _ in range(gen.shape[1] - idx.shape[1]):
            x = torch.tensor([ids])
            ids.append(int(ours(x, torch.zeros_like(x))[0][0, -1].argmax()))
    assert gen[0].tolist() == ids


def test_attempt_markers_cap_at_the_last_one() -> None:
    tok = train_tokenizer(TEXTS, 400, attempt_markers=True)
    assert tok.attempt_marker(1) == [tok.attempt_ids[0]] and tok.attempt_marker(99) == [tok.attempt_ids[-1]]
    plain = train_tokenizer(TEXTS, 400)
    assert plain.attempt_ids == [] and plain.attempt_marker(3) == []
    assert tr.feedback_extension(plain, "x", 3).steps == [3] * len(tr.feedback_extension(plain, "x", 3))


@pytest.mark.parametrize("edit, fragment", [
    (lambda c: c.update(model_type="llama"), "only gpt2"),
    (lambda c: c.update(activation_function="gelu_new"), "exact gelu"),
    (lambda c: c.update(n_layer=3), "tensors do not fit"),
])
def test_foreign_or_mismatched_hf_directories_are_refused(saved: tuple[Path, NanoCodeGen], tmp_path: Path,
                                                          edit, fragment: str) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(saved[0], bad)
    config = json.loads((bad / "config.json").read_text())
    edit(config)
    (bad / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=fragment) as e:
        load_checkpoint(bad)
    assert "\n" not in str(e.value)


def test_steps_stay_zero_and_the_zero_row_is_frozen(saved: tuple[Path, NanoCodeGen]) -> None:
    model, _, _ = load_checkpoint(saved[0])
    assert not model.wse.weight.requires_grad and not model.wse.weight.any()
    assert model.num_params() == sum(p.numel() for n, p in model.named_parameters() if n != "wse.weight")


def test_a_format1_model_converts_to_gpt2_with_its_first_attempts_unchanged(tmp_path: Path) -> None:
    """sut.train.self_repair --attempt-markers starts from this conversion: the step-0 row folded into the
    positions gives the same first-attempt logits, the markers are new ids after the old vocabulary,
    and the result saves as an HF directory that loads back as GPT-2."""
    from sut.model.hf_format import FormatError, with_attempt_markers

    tok = train_tokenizer(TEXTS, 400)
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=2, n_head=2, n_embd=32, max_retries=16)
    torch.manual_seed(1)
    old = NanoCodeGen(cfg)
    with torch.no_grad():
        old.wse.weight.normal_(0, 0.3)           # a step-0 row far from zero: a missed fold would show
    new, new_tok = with_attempt_markers(old, tok)
    assert new_tok.attempt_ids == list(range(tok.vocab_size, tok.vocab_size + 15))
    assert new.config.max_retries == 0 and new.config.vocab_size == tok.vocab_size + 15
    ids = tr.prompt_prefix(tok, TEXTS[1]).ids
    assert tr.prompt_prefix(new_tok, TEXTS[1]).ids == ids and new_tok.encode(TEXTS[0]) == tok.encode(TEXTS[0])
    x = torch.tensor([ids])
    old.eval(), new.eval()
    a, b = old(x, torch.zeros_like(x))[0], new(x, torch.zeros_like(x))[0]
    torch.testing.assert_close(b[..., :tok.vocab_size], a, rtol=0, atol=1e-5)
    out = tmp_path / "converted"
    save_checkpoint(out, new, new_tok, new.config, {"steps": 0}, {}, suite="basic")
    loaded, loaded_tok, _ = load_checkpoint(out)
    assert (out / "config.json").is_file() and json.loads((out / "config.json").read_text())["model_type"] == "gpt2"
    assert loaded_tok.attempt_ids == new_tok.attempt_ids
    with pytest.raises(FormatError, match="already"):
        with_attempt_markers(new, new_tok)


def test_heads_can_be_reread_for_an_engine_with_other_kernels() -> None:
    """sut.train.self_repair --n-head starts from this: the same tensors, another head count, refused when it
    does not divide the width."""
    from sut.model.hf_format import FormatError, with_heads

    tok = train_tokenizer(TEXTS, 400, attempt_markers=True)
    model = NanoCodeGen(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=4, n_embd=96,
                                  max_retries=0))
    three = with_heads(model, 3)
    assert three.config.n_head == 3 and three.config.n_embd == 96
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), three.state_dict().values()))
    with pytest.raises(FormatError, match="must divide"):
        with_heads(model, 5)
