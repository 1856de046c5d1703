"""`jobgpt export`: a checkpoint as a directory other tools load, written atomically.

``--format hf`` writes a HuggingFace ``transformers`` model directory of the architecture the
checkpoint's model already is, so only the parameter names change:

- ``--arch gpt``: GPT-2 (pre-LayerNorm blocks, learned positions, tied head, erf GELU). GPT-2's
  Conv1D layers store their weight transposed relative to nn.Linear. A model trained with
  ``bias=False`` exports zero biases, which computes exactly the same thing.
- ``--arch modern``: Qwen3 (``Qwen3ForCausalLM``; the mapping is in `jobgpt.export_qwen3`), an
  architecture that serving and conversion tools such as vLLM and llama.cpp support too.

``AutoModelForCausalLM.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)`` then load
it offline; transformers itself is not needed to write it.

``--format safetensors`` writes our own parameter names and ModelConfig, for loading back into
this package's model of either arch without a checkpoint's optimizer state
(`load_safetensors_export`).

Either way the files go into a hidden temp directory beside ``--out`` that is renamed into place
at the end, so ``--out`` is always a whole export or absent, never half of one.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from tokenizers import Tokenizer

from jobgpt.architectures import Model, build_model
from jobgpt.checkpoint import load_model
from jobgpt.commands import command
from jobgpt.config import ExportConfig, ModelConfig
from jobgpt.errors import CheckpointError, JobGPTError
from jobgpt.export_qwen3 import qwen3_config, qwen3_state_dict
from jobgpt.files import (
    check_output,
    exclusive,
    refuse_to_replace,
    sweep_temp_files,
    temp_path,
)
from jobgpt.model import GPT
from jobgpt.modern import ModernGPT
from jobgpt.qa import ANSWER_END, EOT, PAD
from jobgpt.tokenizer import special_id

WEIGHTS = "model.safetensors"
# nn.LayerNorm's default eps, which every LayerNorm of our GPT uses.
LAYER_NORM_EPS = 1e-5
# (ours, GPT-2's, kind) for one block: "linear" weights are transposed for GPT-2's Conv1D.
_BLOCK_NAMES = (
    ("ln_1", "ln_1", "norm"),
    ("attn.qkv", "attn.c_attn", "linear"),
    ("attn.proj", "attn.c_proj", "linear"),
    ("ln_2", "ln_2", "norm"),
    ("mlp.fc", "mlp.c_fc", "linear"),
    ("mlp.proj", "mlp.c_proj", "linear"),
)

Files = dict[str, bytes | str]  # file name in the export directory -> its content


def run(cfg: ExportConfig) -> Path:
    """`jobgpt export`: write the export directory, print one summary line, return its path."""
    out = Path(cfg.out)
    check_output(out, "--out", is_dir=True)
    refuse_to_replace(out, cfg.overwrite, "an export")  # before the (slow) checkpoint load
    check_replaceable(out, Path(cfg.checkpoint))
    model, tokenizer, ckpt = load_model(cfg.checkpoint, "cpu")
    files = (
        hf_files(model, tokenizer, ckpt, cfg.checkpoint)
        if cfg.format == "hf"
        else safetensors_files(model, tokenizer, ckpt, cfg.checkpoint)
    )
    target = Path(os.path.abspath(out))  # "." and "a/.." have no name for lock or temp names
    with exclusive(target, "--out directory"):
        write_directory(target, files, cfg.overwrite)
    size = sum(len(c.encode() if isinstance(c, str) else c) for c in files.values())
    print(
        f"exported {cfg.checkpoint} (step {ckpt.get('step', '?')}) as {cfg.format} to {out}/ "
        f"({', '.join(sorted(files))}; {size / 1e6:.1f} MB)"
    )
    return out


def check_replaceable(out: Path, checkpoint: Path) -> None:
    """--overwrite deletes the old --out, so it may only be an earlier export (or empty): never
    the folder holding the checkpoint, never a folder of other files (`--out .` must not cost
    anyone their project)."""
    if not out.is_dir():
        return
    if Path.cwd().is_relative_to(out.resolve()):  # it would be renamed away under the shell
        raise JobGPTError(
            f"--out {out} is the current directory or holds it", "choose another --out"
        )
    if checkpoint.resolve().is_relative_to(out.resolve()):
        raise JobGPTError(
            f"--out {out} holds the checkpoint {checkpoint}: replacing it would delete the model",
            "choose another --out, e.g. export/",
        )
    if any(out.iterdir()) and not all((out / n).is_file() for n in ("config.json", WEIGHTS)):
        raise JobGPTError(
            f"--out {out} is not an earlier export (it has no config.json and {WEIGHTS}), so "
            "--overwrite will not delete it",
            "choose another --out, or empty the directory yourself",
        )


def write_directory(out: Path, files: Files, overwrite: bool) -> None:
    """Write `files` into a temp directory beside `out`, then rename it to `out`. An existing
    `out` (allowed by `overwrite`) is moved aside first and deleted only once the new one is in
    place: a directory cannot be renamed over a non-empty one."""
    if out.parent.is_dir():
        sweep_temp_files(out.parent)  # what killed exports left beside it
    tmp = temp_path(out)
    shutil.rmtree(tmp, ignore_errors=True)  # a leftover of a killed run with our PID
    tmp.mkdir(parents=True)
    old = temp_path(out.with_name(f"{out.name}.old"))
    try:
        for name, content in files.items():
            data = content.encode("utf-8") if isinstance(content, str) else content
            (tmp / name).write_bytes(data)
        refuse_to_replace(out, overwrite, "an export")  # again: another run may have made it
        if out.exists():
            os.replace(out, old)
        try:
            os.replace(tmp, out)
        except OSError:
            if old.exists():
                os.replace(old, out)  # put the previous export back
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)


# --- HuggingFace transformers (GPT-2, or Qwen3 in export_qwen3) -------------------------------


def hf_files(model: Model, tokenizer: Tokenizer, ckpt: dict[str, Any], source: str) -> Files:
    """The files of a transformers model directory: GPT-2 for `--arch gpt`, Qwen3 for modern."""
    c = model.config
    eot, pad = special_id(tokenizer, EOT), special_id(tokenizer, PAD)
    # The QA markers are not listed as additional_special_tokens: tokenizer.json already makes
    # each one token, and transformers 4 would mark listed ones special, so that
    # decode(..., skip_special_tokens=True) dropped them. Unlisted, it drops only <|endoftext|>
    # and <|pad|> (QA_MARKERS are text the model reads and writes), in 4 and 5 alike, as ours.
    special = {"bos_token": EOT, "eos_token": EOT, "pad_token": PAD}
    tokenizer_config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": c.block_size,
        # Our decoder already gives the exact text back; HF's clean-up would delete the
        # space in "a ." and the like.
        "clean_up_tokenization_spaces": False,
        **special,
    }
    # No max_length: transformers warns on every generate(max_new_tokens=...) when it is set.
    generation = {"bos_token_id": eot, "eos_token_id": eot, "pad_token_id": pad}
    if isinstance(model, ModernGPT):
        config, weights = qwen3_config(c, eot, pad), qwen3_state_dict(model)
    else:
        config, weights = gpt2_config(c, eot, pad), gpt2_state_dict(model)
    return {
        "config.json": _json(config),
        WEIGHTS: safetensors_bytes(weights, metadata={"format": "pt"}),
        "tokenizer.json": tokenizer.to_str(),
        "tokenizer_config.json": _json(tokenizer_config),
        "special_tokens_map.json": _json(special),
        "generation_config.json": _json(generation),
        "README.md": model_card(model, ckpt, source, "hf"),
    }


def gpt2_config(c: ModelConfig, eot: int, pad: int) -> dict[str, Any]:
    """transformers' GPT2Config for our architecture, as config.json."""
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c.vocab_size,
        "n_positions": c.block_size,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": 4 * c.n_embd,
        # F.gelu is the exact erf GELU: transformers' "gelu". ("gelu_new", GPT-2's own, is the
        # tanh approximation and would shift every logit a little.)
        "activation_function": "gelu",
        "layer_norm_epsilon": LAYER_NORM_EPS,
        # Dropout only matters in training; an inference export has none, like our eval mode.
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "summary_first_dropout": 0.0,
        "initializer_range": 0.02,
        "scale_attn_weights": True,  # softmax(q k / sqrt(D)), as scaled_dot_product_attention
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": pad,
    }


def gpt2_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our weights under GPT-2's names, float32. The head is tied to wte, so it is not stored
    (transformers ties it again on load)."""
    ours = model.state_dict()
    theirs = {
        "transformer.wte.weight": ours["tok_emb.weight"],
        "transformer.wpe.weight": ours["pos_emb.weight"],
    }
    pairs = [
        (f"blocks.{i}.{a}", f"transformer.h.{i}.{b}", kind)
        for i in range(model.config.n_layer)
        for a, b, kind in _BLOCK_NAMES
    ]
    for a, b, kind in [*pairs, ("ln_f", "transformer.ln_f", "norm")]:
        weight = ours[f"{a}.weight"]
        # bias=False: zeros, which add nothing, so the export computes exactly what we do.
        theirs[f"{b}.bias"] = ours.get(f"{a}.bias", torch.zeros(weight.size(0)))
        theirs[f"{b}.weight"] = weight.t() if kind == "linear" else weight  # Conv1D: (in, out)
    return {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in theirs.items()}


# --- our own names -------------------------------------------------------------------------------


def safetensors_files(
    model: Model, tokenizer: Tokenizer, ckpt: dict[str, Any], source: str
) -> Files:
    """Our parameter names and ModelConfig: `load_safetensors_export` rebuilds the model."""
    # safetensors refuses tensors that share memory: a tied head is rebuilt on load instead.
    state = {
        name: t.detach().to("cpu").contiguous()
        for name, t in model.state_dict().items()
        if not (name == "head.weight" and model.config.tied)
    }
    return {
        "config.json": _json(asdict(model.config)),
        WEIGHTS: safetensors_bytes(state, metadata={"format": "pt"}),
        "tokenizer.json": tokenizer.to_str(),
        "README.md": model_card(model, ckpt, source, "safetensors"),
    }


def load_safetensors_export(directory: str | Path) -> tuple[Model, Tokenizer]:
    """The model (GPT or ModernGPT, as its config's arch; eval mode, CPU) and tokenizer of a
    `jobgpt export --format safetensors` directory."""
    directory = Path(directory)
    fix = f"point it at a directory written by `{command('export', '--format', 'safetensors')}`"
    missing = [
        n for n in ("config.json", WEIGHTS, "tokenizer.json") if not (directory / n).is_file()
    ]
    if missing:
        raise CheckpointError(f"{directory} lacks {', '.join(missing)}", fix)
    try:
        config = ModelConfig(**json.loads((directory / "config.json").read_text("utf-8")))
        state = load_file(directory / WEIGHTS)
        model = build_model(config)
        if config.tied:
            state["head.weight"] = state["tok_emb.weight"]
        model.load_state_dict(state)
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    except Exception as err:  # bad JSON, foreign config keys, wrong shapes, a damaged file
        detail = (str(err).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{directory} is not a loadable jobgpt safetensors export "
            f"({type(err).__name__}: {detail})",
            fix,
        ) from None
    if tokenizer.get_vocab_size() != config.vocab_size:
        raise CheckpointError(
            f"{directory}: tokenizer.json has {tokenizer.get_vocab_size()} tokens but the model "
            f"{config.vocab_size}",
            f"the files come from different exports; {fix}",
        )
    return model.eval(), tokenizer


# --- the model card ------------------------------------------------------------------------------

# arch -> (architecture name, model card tag, how it knows positions and what that means for
# the context length).
_CARD_ARCH = {
    "gpt": ("GPT-2", "gpt2", "learned positions: prompt plus new tokens must fit in it"),
    "modern": (
        "Qwen3",
        "qwen3",
        "rotary positions: transformers runs past it, but the model never trained on longer "
        "text, so keep prompt plus new tokens within it",
    ),
}


def model_card(model: Model, ckpt: dict[str, Any], source: str, fmt: str) -> str:
    """README.md: what the model is, how it was trained (as far as the checkpoint says), and
    how to load it."""
    c = model.config
    name, tag, _ = _CARD_ARCH[c.arch]
    modern = "jobgpt's `--arch modern`; " if c.arch == "modern" else ""
    lines = [
        "---\nlanguage:\n- ko\nlibrary_name: " + ("transformers" if fmt == "hf" else "jobgpt"),
        f"pipeline_tag: text-generation\ntags:\n- jobgpt\n- {tag}\n- korean\n---\n",
        "# jobgpt: a small Korean job-posting GPT\n",
        f"A {name}-architecture language model ({modern}{model.num_params() / 1e6:.1f}M "
        f"parameters: {c.n_layer} layers, {c.n_head} heads, width {c.n_embd}, context "
        f"{c.block_size} tokens, vocabulary {c.vocab_size:,}, {'tied' if c.tied else 'untied'} "
        f"head) trained from scratch with jobgpt on job postings. Exported from `{source}` with "
        f"`jobgpt export --format {fmt}`.\n",
        "## Training\n",
        *_training_lines(ckpt),
        "\n## Use\n",
        *(_hf_usage(c) if fmt == "hf" else _our_usage()),
    ]
    return "\n".join(lines) + "\n"


def _training_lines(ckpt: dict[str, Any]) -> list[str]:
    """Bullet points from the checkpoint's records; what a checkpoint lacks is left out."""
    lines = []
    data = ckpt.get("data") or {}
    if "train_tokens" in data:
        lines.append(
            f"- data: {data['train_tokens']:,} training tokens, {data.get('val_tokens', 0):,} "
            f"validation tokens (`{data.get('dir', '?')}`)"
        )
    if "step" in ckpt:
        seen = f" ({ckpt['tokens_seen']:,} tokens seen)" if "tokens_seen" in ckpt else ""
        lines.append(f"- steps: {ckpt['step']:,}{seen}")
    history = (ckpt.get("monitor") or {}).get("history") or []
    if history:
        last = history[-1]
        best = min(history, key=lambda h: h["val_loss"])
        bpb = f", {last['val_bpb']:.3f} bits/byte" if "val_bpb" in last else ""
        lines.append(
            f"- last eval (step {last['step']:,}): train loss {last['train_loss']:.4f}, val loss "
            f"{last['val_loss']:.4f}{bpb}; best val loss {best['val_loss']:.4f} "
            f"(step {best['step']:,})"
        )
    t = ckpt.get("train_config") or {}
    if t:
        batch = f"{t.get('batch_size')} x {t.get('grad_accum', 1)} windows"
        lines.append(
            f"- recipe: preset `{t.get('preset', '?')}`, AdamW lr {t.get('lr')} (cosine, "
            f"{t.get('warmup_steps')} warmup steps), batch {batch}, weight decay "
            f"{t.get('weight_decay')}, dropout {(t.get('model') or {}).get('dropout', '?')}, "
            f"max {t.get('max_steps')} steps, dtype {t.get('dtype', '?')}"
        )
    return lines or ["- (the checkpoint records no training details)"]


def _hf_usage(c: ModelConfig) -> list[str]:
    name, _, positions = _CARD_ARCH[c.arch]
    # Said, not tested here: those tools are not dependencies of jobgpt.
    tools = (
        " Qwen3ForCausalLM is also an architecture vLLM serves and llama.cpp's "
        "`convert_hf_to_gguf.py` converts."
        if c.arch == "modern"
        else ""
    )
    return [
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/dir")',
        'model = AutoModelForCausalLM.from_pretrained("path/to/this/dir")',
        f'inputs = tokenizer("{EOT}=== [회사] 백엔드 개발자 채용 ===\\n", return_tensors="pt")',
        "out = model.generate(**inputs, max_new_tokens=200, do_sample=True, temperature=0.8,",
        "                     top_k=50, top_p=0.95)",
        "print(tokenizer.decode(out[0], skip_special_tokens=True))",
        "```\n",
        f"Start every prompt with `{EOT}`: each training document followed one. The context is "
        f"{c.block_size} tokens ({positions}). A question-answer prompt is "
        f"`[QUESTION]...[/QUESTION]`, `[DOC]...[/DOC]`, then `[ANSWER]`; the answer ends with "
        f"`{ANSWER_END}`.",
        f"\nThis directory is a transformers {name} model.{tools}",
    ]


def _our_usage() -> list[str]:
    return [
        "```python",
        "from jobgpt.export import load_safetensors_export",
        "",
        'model, tokenizer = load_safetensors_export("path/to/this/dir")  # jobgpt model, eval mode',
        "```",
    ]


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2) + "\n"
