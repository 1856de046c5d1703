"""`jobgpt export`: transformers loads the export offline and computes what our model computes.

Real parts throughout: a tokenizer trained here, checkpoints saved as training saves them, the
export stage run as the CLI runs it, and transformers' own GPT-2 (`--arch gpt`) and Qwen3
(`--arch modern`) loading the result. The model shapes are the presets' (m4 and modern with fewer
layers, to stay fast), plus bias=False, a tied modern head and another rotary base, with a tiny
vocabulary; every weight is perturbed off its init, so zero biases, unit norms or the modern
model's zero-initialised projections and head cannot hide a wrong mapping.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers reads it: nothing may be downloaded
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest
import torch
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from jobgpt.architectures import Model, build_model
from jobgpt.checkpoint import save_checkpoint
from jobgpt.cli import main
from jobgpt.config import ModelConfig
from jobgpt.errors import CheckpointError, JobGPTError
from jobgpt.export import load_safetensors_export
from jobgpt.modern import NORM_EPS, mlp_hidden
from jobgpt.presets import TRAIN_PRESETS
from jobgpt.qa import ANSWER_END, EOT, PAD, QA_MARKERS, format_qa_document
from jobgpt.sampling import generate_tokens
from jobgpt.stages import run_stage
from jobgpt.tokenizer import tokenizer_sha256, train_tokenizer

QUESTION = "이 구인 정보를 요약해줘."
DOC = "=== [뷁카오] 백엔드 개발자 채용 ===\n회사명: 뷁카오\n자격 요건: 파이썬 3년"
ANSWER = "요약:\n- 회사: 뷁카오\n- 자격: 파이썬 3년"
EXAMPLE = format_qa_document(QUESTION, DOC, ANSWER)
CORPUS = [
    EXAMPLE,
    "=== [네이버] 프론트엔드 개발자 채용 ===\n우대 사항: React, TypeScript\n근무지: 성남시",
    "hello world: we are hiring a data engineer (Python, SQL).",
]
# Korean the vocabulary lacks (byte fallback), emoji incl. a flag and ZWJ sequence, markers,
# runs of spaces, CRLF and tabs, a literal byte-token spelling: all must survive a round trip.
TEXTS = [
    EXAMPLE,
    "회사명: 뷁카오 🚀👩‍💻🇰🇷 연봉 5,000만원 ㆍ 재택 가능",
    f"{EOT}hi  there .  , !\r\n\tend <0x41> {PAD}",
    "",
]

# The presets' model shapes, the tiny one without biases, and modern ones: the modern preset's
# (untied head), the demo's (tied) and a tiny one with a tied head and another rotary base.
M4 = {**asdict(ModelConfig()), "n_layer": 2}  # m4 is the dataclass defaults; 2 of its 6 layers
TINY = TRAIN_PRESETS["tiny"]["model"]
ARCHS: dict[str, dict[str, Any]] = {
    "m4": M4,
    "tiny": TINY,
    "demo": TRAIN_PRESETS["demo"]["model"],
    # the demo preset's model before it took the modern recipe
    "gpt-small": {"block_size": 256, "n_layer": 3, "n_head": 3, "n_embd": 192, "dropout": 0.1},
    "tiny-no-bias": {**TINY, "bias": False},
    "modern": {**M4, **TRAIN_PRESETS["modern"]["model"]},
    "modern-tied-tiny": {**TINY, "arch": "modern", "tied_head": True, "rope_theta": 500.0},
}
MODERN = ["demo", "modern", "modern-tied-tiny"]
assert TRAIN_PRESETS["m4"] == {}, "m4 is ModelConfig's defaults: update M4 if it gets its own"


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return train_tokenizer(CORPUS, vocab_size=400, min_frequency=1)


def random_model(tok: Tokenizer, arch: dict[str, Any], seed: int = 0) -> Model:
    """A model with every parameter moved off its init (biases nonzero, norms not unit, the
    modern model's zero-initialised matrices and head nonzero)."""
    torch.manual_seed(seed)
    config = ModelConfig(**{**arch, "vocab_size": tok.get_vocab_size()})
    model = build_model(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            norm_or_bias = "ln" in name or "norm" in name or name.endswith("bias")
            p.add_(torch.randn_like(p) * (0.2 if norm_or_bias else 0.06))
    return model.eval()


def save(path: Path, model: Model, tok: Tokenizer, **extra: Any) -> Path:
    """A checkpoint as training writes it (the parts export reads)."""
    info = {
        "json": tok.to_str(),
        "sha256": tokenizer_sha256(tok),
        "vocab_size": tok.get_vocab_size(),
    }
    payload = {"model_config": asdict(model.config), "model": model.state_dict(), "tokenizer": info}
    save_checkpoint({**payload, **extra}, path)
    return path


def export(ckpt: Path, out: Path, fmt: str = "hf", **more: Any) -> Path:
    run_stage("export", {"checkpoint": str(ckpt), "out": str(out), "format": fmt, **more})
    return out


@pytest.fixture(scope="module", params=list(ARCHS))
def exported(request, tok: Tokenizer, tmp_path_factory) -> tuple[Model, Any, Path]:
    """(our model, transformers' model loaded from the hf export, the export directory)."""
    root = tmp_path_factory.mktemp(request.param)
    model = random_model(tok, ARCHS[request.param])
    out = export(save(root / "ckpt.pt", model, tok), root / "hf")
    hf, info = AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    # Every weight found its place: none left at transformers' random init, none ignored.
    assert not info["missing_keys"] and not info["unexpected_keys"], info
    return model, hf.eval(), out


def batch_ids(tok: Tokenizer, length: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, tok.get_vocab_size(), (3, length), generator=g)


# --- --format hf -------------------------------------------------------------------------------


def test_transformers_logits_equal_ours(exported, tok: Tokenizer) -> None:
    model, hf, _ = exported
    assert hf.dtype == torch.float32 and not hf.training
    for length in (17, model.config.block_size):  # the full context too: every position
        ids = batch_ids(tok, length)
        with torch.no_grad():
            ours, _ = model(ids)
            theirs = hf(input_ids=ids).logits
        assert theirs.shape == ours.shape
        assert (theirs - ours).abs().max().item() < 1e-4


def test_transformers_greedy_generation_equals_ours(exported, tok: Tokenizer) -> None:
    model, hf, _ = exported
    eot = tok.token_to_id(EOT)
    prompt = [[eot, *tok.encode("회사명: 뷁카오\n자격").ids]] * 2
    n = 24
    ours = torch.stack(
        list(generate_tokens(model, prompt, n, temperature=0, stop_ids={eot})), dim=1
    )[0].tolist()
    with torch.no_grad():
        out = hf.generate(torch.tensor(prompt), do_sample=False, max_new_tokens=n)
    theirs = out[0, len(prompt[0]) :].tolist()
    assert theirs == [t for t in ours if t >= 0]  # -1: finished (at <|endoftext|>)


@pytest.mark.parametrize("arch", ["gpt", "modern"])
def test_a_trained_model_answers_the_same_through_transformers(
    arch: str, tok: Tokenizer, tmp_path: Path
) -> None:
    """A model that memorised EXAMPLE: both answer the question with the memorised answer,
    token for token, and stop at <|endoftext|>."""
    eot = tok.token_to_id(EOT)
    ids = [eot, *tok.encode(EXAMPLE).ids, eot]
    model = random_model(tok, {**TINY, "arch": arch, "block_size": len(ids)})
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    x, y = torch.tensor([ids[:-1]]), torch.tensor([ids[1:]])
    for _ in range(100):
        _, loss = model(x, targets=y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    out = export(save(tmp_path / "ckpt.pt", model, tok), tmp_path / "hf")
    hf = AutoModelForCausalLM.from_pretrained(out)
    hf_tok = AutoTokenizer.from_pretrained(out)
    # The prompt: the training ids up to [ANSWER] (text prompts' token healing is ours alone).
    k = ids.index(tok.token_to_id("[ANSWER]")) + 1
    prompt, n = torch.tensor([ids[:k]]), len(ids) - k
    with torch.no_grad():
        theirs = hf.generate(prompt, do_sample=False, max_new_tokens=n)[0, k:].tolist()
    ours = [int(t) for t in generate_tokens(model, prompt, n, temperature=0, stop_ids={eot})]
    assert theirs == ours == ids[k:]  # the memorised answer, then <|endoftext|>: HF stopped
    assert hf_tok.decode(theirs, skip_special_tokens=True) == f"\n{ANSWER}\n{ANSWER_END}"


def test_exported_tokenizer_gives_our_ids_and_decodes_losslessly(exported, tok: Tokenizer) -> None:
    model, _, out = exported
    hf_tok = AutoTokenizer.from_pretrained(out)
    assert (hf_tok.eos_token_id, hf_tok.bos_token_id) == (tok.token_to_id(EOT),) * 2
    assert hf_tok.pad_token_id == tok.token_to_id(PAD)
    assert hf_tok.model_max_length == model.config.block_size
    for text in TEXTS:
        ids = tok.encode(text).ids
        assert hf_tok(text)["input_ids"] == ids  # no BOS/EOS added behind the user's back
        assert hf_tok.decode(ids) == text
        # skip_special_tokens drops <|endoftext|> and <|pad|> only, as our decode does
        assert hf_tok.decode(ids, skip_special_tokens=True) == tok.decode(ids)
    for marker in QA_MARKERS:  # one token each, kept as text (not special) like ours
        assert hf_tok(marker)["input_ids"] == [tok.token_to_id(marker)]
        assert marker not in hf_tok.all_special_tokens
    assert (out / "tokenizer.json").read_text(encoding="utf-8") == tok.to_str()


def test_export_directory_config_generation_config_and_card(
    tok: Tokenizer, tmp_path: Path, capsys
) -> None:
    model = random_model(tok, ARCHS["gpt-small"])
    history = [
        {"step": 50, "train_loss": 4.0, "val_loss": 4.2},
        {"step": 100, "train_loss": 3.1, "val_loss": 3.25, "val_bpb": 1.234},
    ]
    ckpt = save(
        tmp_path / "best.pt",
        model,
        tok,
        step=100,
        tokens_seen=204_800,
        monitor={"history": history},
        data={"dir": "runs/demo", "train_tokens": 123_456, "val_tokens": 6_789},
        train_config={
            "preset": "demo",
            "lr": 2e-3,
            "batch_size": 8,
            "grad_accum": 1,
            "warmup_steps": 30,
            "weight_decay": 0.1,
            "max_steps": 600,
            "dtype": "auto",
            "model": ARCHS["gpt-small"],
        },
    )
    out = export(ckpt, tmp_path / "hf")
    line = capsys.readouterr().out.strip()
    assert "\n" not in line and str(out) in line and "step 100" in line
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "special_tokens_map.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "hf"]  # no temp left
    config = json.loads((out / "config.json").read_text())
    assert config["activation_function"] == "gelu"  # the erf GELU, as F.gelu
    assert config["n_positions"] == 256 and config["tie_word_embeddings"] is True
    assert [config[k] for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")] == [0.0] * 3
    assert config["layer_norm_epsilon"] == model.ln_f.eps
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == config["eos_token_id"] == tok.token_to_id(EOT)
    assert generation["pad_token_id"] == tok.token_to_id(PAD)
    card = (out / "README.md").read_text(encoding="utf-8")
    for fact in (
        "123,456 training tokens",
        "steps: 100",
        "3.2500",
        "1.234 bits/byte",
        "preset `demo`",
        "lr 0.002",
        "AutoModelForCausalLM.from_pretrained",
    ):
        assert fact in card, fact


@pytest.mark.parametrize("arch", MODERN)
def test_modern_exports_as_qwen3_config_weights_and_card(
    arch: str, tok: Tokenizer, tmp_path: Path
) -> None:
    model = random_model(tok, ARCHS[arch])
    c = model.config
    out = export(save(tmp_path / "ckpt.pt", model, tok), tmp_path / "hf")
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["architectures"] == ["Qwen3ForCausalLM"]
    assert (config["hidden_size"], config["intermediate_size"]) == (c.n_embd, mlp_hidden(c.n_embd))
    assert config["num_attention_heads"] == config["num_key_value_heads"] == c.n_head
    assert config["head_dim"] == c.n_embd // c.n_head and config["rms_norm_eps"] == NORM_EPS
    assert config["max_position_embeddings"] == c.block_size
    assert config["tie_word_embeddings"] is c.tied and config["hidden_act"] == "silu"
    assert config["attention_bias"] is False and config["use_sliding_window"] is False
    assert AutoConfig.from_pretrained(out).rope_parameters["rope_theta"] == c.rope_theta
    weights = load_file(out / "model.safetensors")
    assert ("lm_head.weight" in weights) is not c.tied  # a tied head is transformers' to tie
    assert len(weights) == len(model.state_dict()) - c.tied
    assert "model.layers.0.self_attn.q_norm.weight" in weights
    assert all(t.dtype == torch.float32 for t in weights.values())
    card = (out / "README.md").read_text(encoding="utf-8")
    for fact in ("Qwen3-architecture", "- qwen3", "rotary positions", "vLLM", "convert_hf_to_gguf"):
        assert fact in card, fact


# --- --format safetensors ----------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["m4", "tiny-no-bias", *MODERN])
def test_safetensors_export_round_trips_into_our_model(
    arch: str, tok: Tokenizer, tmp_path: Path
) -> None:
    model = random_model(tok, ARCHS[arch])
    out = export(save(tmp_path / "ckpt.pt", model, tok), tmp_path / "st", "safetensors")
    assert json.loads((out / "config.json").read_text()) == asdict(model.config)
    loaded, loaded_tok = load_safetensors_export(out)
    assert loaded.config == model.config
    assert type(loaded) is type(model)
    assert (loaded.head.weight is loaded.tok_emb.weight) is model.config.tied  # tied as before
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    ids = batch_ids(tok, 40)
    with torch.no_grad():
        assert torch.equal(loaded(ids)[0], model(ids)[0])
    assert loaded_tok.to_str() == tok.to_str()


def test_loading_a_broken_safetensors_export_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="lacks config.json, model.safetensors"):
        load_safetensors_export(tmp_path)


# --- refusing, replacing, failing clearly ------------------------------------------------------


def test_existing_out_is_refused_unless_overwrite(tok: Tokenizer, tmp_path: Path) -> None:
    ckpt = save(tmp_path / "ckpt.pt", random_model(tok, ARCHS["tiny"]), tok)
    out = export(ckpt, tmp_path / "out")
    (out / "stray.txt").write_text("from an earlier export")
    with pytest.raises(JobGPTError, match="already exists"):
        export(ckpt, out, "safetensors")
    assert (out / "stray.txt").is_file() and (out / "special_tokens_map.json").is_file()
    export(ckpt, out, "safetensors", overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt", "out"]  # nothing left aside


def test_overwrite_never_deletes_what_is_not_an_export(
    tok: Tokenizer, tmp_path: Path, monkeypatch
) -> None:
    """`--out . --overwrite` or `--out checkpoints --overwrite` must not delete a project or
    the model being exported."""
    ckpt = save(tmp_path / "run" / "ckpt.pt", random_model(tok, ARCHS["tiny"]), tok)
    with pytest.raises(JobGPTError, match="holds the checkpoint"):
        export(ckpt, tmp_path, overwrite=True)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(JobGPTError, match="not an earlier export"):
        export(ckpt, tmp_path / "mine", overwrite=True)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and ckpt.is_file()
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    with pytest.raises(JobGPTError, match="current directory"):
        export(ckpt, Path("."), overwrite=True)
    monkeypatch.chdir(tmp_path)
    assert (export(ckpt, Path("empty"), overwrite=True) / "config.json").is_file()


def test_cli_exports_and_reports_a_missing_checkpoint_without_traceback(
    tok: Tokenizer, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "hf"
    assert main(["export", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "nope.pt does not exist" in err and "fix:" in err and "Traceback" not in err
    assert not out.exists()
    ckpt = save(tmp_path / "ckpt.pt", random_model(tok, ARCHS["tiny"]), tok)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
