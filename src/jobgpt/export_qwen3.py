"""The Qwen3 half of `jobgpt export --format hf`: a `--arch modern` model as the config.json and
weights of a transformers ``Qwen3ForCausalLM`` directory (`jobgpt.export` writes the rest).

`jobgpt.modern.ModernGPT` was written block for block as Qwen3's layout (pre-norm RMSNorm
blocks, per-head QK-norm before a "rotate half" rotary embedding, SwiGLU MLP, no biases), so only
the parameter names change. Both use nn.Linear, so weights keep their (out, in) layout, unlike
GPT-2's transposed Conv1D. Every key/value head serves one query head (no grouped-query
attention), and the rotary tables are a function of the config, so no buffer is exported.
"""

from __future__ import annotations

from typing import Any

import torch

from jobgpt.config import ModelConfig
from jobgpt.modern import NORM_EPS, ModernGPT, mlp_hidden

# (ours, Qwen3's) for one block's parameters; each is a ".weight".
_BLOCK_NAMES = (
    ("attn_norm", "input_layernorm"),
    ("attn.q", "self_attn.q_proj"),
    ("attn.k", "self_attn.k_proj"),
    ("attn.v", "self_attn.v_proj"),
    ("attn.q_norm", "self_attn.q_norm"),
    ("attn.k_norm", "self_attn.k_norm"),
    ("attn.o", "self_attn.o_proj"),
    ("mlp_norm", "post_attention_layernorm"),
    ("mlp.gate", "mlp.gate_proj"),
    ("mlp.up", "mlp.up_proj"),
    ("mlp.down", "mlp.down_proj"),
)


def qwen3_config(c: ModelConfig, eot: int, pad: int) -> dict[str, Any]:
    """transformers' Qwen3Config for a `--arch modern` model, as config.json."""
    return {
        "architectures": ["Qwen3ForCausalLM"],
        "model_type": "qwen3",
        "vocab_size": c.vocab_size,
        "hidden_size": c.n_embd,
        "intermediate_size": mlp_hidden(c.n_embd),
        "num_hidden_layers": c.n_layer,
        "num_attention_heads": c.n_head,
        "num_key_value_heads": c.n_head,  # one key/value head per query head
        "head_dim": c.n_embd // c.n_head,
        "hidden_act": "silu",
        "rms_norm_eps": NORM_EPS,
        # The context the model was trained on: rotary positions run past it, the model never did.
        "max_position_embeddings": c.block_size,
        # transformers 5 reads rope_parameters; transformers 4 and older converters and servers
        # read the top-level rope_theta. Writing both gives every reader the same base.
        "rope_theta": c.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},
        "attention_bias": False,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": c.n_layer,
        # Dropout only matters in training; an inference export has none, like our eval mode.
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": c.tied,
        "use_cache": True,
        "bos_token_id": eot,
        "eos_token_id": eot,
        "pad_token_id": pad,
    }


def qwen3_state_dict(model: ModernGPT) -> dict[str, torch.Tensor]:
    """Our weights under Qwen3's names, float32. A tied head is not stored (transformers ties
    it again on load, as `tie_word_embeddings` says); an untied one is lm_head."""
    ours = model.state_dict()
    pairs = [
        (f"blocks.{i}.{a}", f"model.layers.{i}.{b}")
        for i in range(model.config.n_layer)
        for a, b in _BLOCK_NAMES
    ]
    pairs += [("tok_emb", "model.embed_tokens"), ("norm", "model.norm")]
    if not model.config.tied:
        pairs.append(("head", "lm_head"))
    theirs = {f"{b}.weight": ours[f"{a}.weight"] for a, b in pairs}
    # Every parameter must have a Qwen3 name: one left behind would load as a random init.
    unmapped = set(ours) - {f"{a}.weight" for a, _ in pairs} - {"head.weight"}
    if unmapped:
        raise ValueError(f"no Qwen3 name for {sorted(unmapped)}")
    return {name: t.detach().to("cpu", torch.float32).contiguous() for name, t in theirs.items()}
