"""Hugging Face checkpoints: config.json and weight names of GPT-2, GPT-Neo, GPT-NeoX, GPT-J, OPT.

Two tables do all the work. ``config_from_hf``/``config_to_hf`` translate each family's
config.json fields to GPTConfig and back. ``FAMILIES`` says, for each of our module names,
what the family calls it; the three layout changes are spelled out where they happen:
GPT-2's Conv1D stores weights transposed, GPT-NeoX interleaves q/k/v per head in one
matrix, and Neo/J/OPT keep q, k, v as three matrices that we fuse into one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np

from tinygpt import backend
from tinygpt.io.safetensors import load_file, load_sharded, save_file
from tinygpt.model import GPT, GPTConfig, expand_attention_types

SUPPORTED = ("gpt2", "gpt_neo", "gpt_neox", "gptj", "opt")
ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "gpt_neo": "GPTNeoForCausalLM",
                 "gpt_neox": "GPTNeoXForCausalLM", "gptj": "GPTJForCausalLM",
                 "opt": "OPTForCausalLM"}


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded: names the file and what is wrong."""


# ------------------------------------------------------------------------------ config


# Hugging Face fields with no meaning for the computation that a checkpoint should keep
# through a load and save (generate() and tokenizers read them)
KEPT_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def config_from_hf(hf: dict) -> GPTConfig:
    """GPTConfig from a Hugging Face config.json dict (HF's defaults fill missing fields)."""
    config = _config_from_hf(hf)
    config.extra = {k: hf[k] for k in KEPT_FIELDS if k in hf}
    return config


def _config_from_hf(hf: dict) -> GPTConfig:
    mt = hf.get("model_type")
    if mt not in SUPPORTED:
        raise CheckpointError(f"unsupported model_type {mt!r}; tinygpt loads {SUPPORTED}")
    g = hf.get
    if mt == "gpt2":
        if g("add_cross_attention"):
            raise CheckpointError("gpt2 config: add_cross_attention=true is not supported")
        # reorder_and_upcast_attn only changes the order of float16 operations: tinygpt
        # computes attention in the weights' dtype (float32) either way, so it is accepted
        return GPTConfig(
            vocab_size=g("vocab_size", 50257), block_size=g("n_positions", 1024),
            n_layer=g("n_layer", 12), n_head=g("n_head", 12), n_embd=g("n_embd", 768),
            n_inner=g("n_inner"), activation=g("activation_function", "gelu_new"),
            layer_norm_eps=g("layer_norm_epsilon", 1e-5),
            scale_attn=g("scale_attn_weights", True),
            scale_attn_by_inverse_layer_idx=g("scale_attn_by_inverse_layer_idx", False),
            tie_word_embeddings=g("tie_word_embeddings", True))
    if mt == "gpt_neo":
        layers = g("attention_layers") or expand_attention_types(
            g("attention_types", [[["global", "local"], 12]]))
        return GPTConfig(
            vocab_size=g("vocab_size", 50257), block_size=g("max_position_embeddings", 2048),
            n_layer=g("num_layers", 24), n_head=g("num_heads", 16),
            n_embd=g("hidden_size", 2048), n_inner=g("intermediate_size"),
            attention_layers=layers, window_size=g("window_size", 256), scale_attn=False,
            qkv_bias=False, activation=g("activation_function", "gelu_new"),
            layer_norm_eps=g("layer_norm_epsilon", 1e-5),
            tie_word_embeddings=g("tie_word_embeddings", True))
    if mt == "gpt_neox":
        rope = g("rope_parameters") or g("rope_scaling") or {}
        if not isinstance(rope, dict):
            raise CheckpointError(f"gpt_neox config: rope_parameters/rope_scaling must be an "
                                  f"object, got {rope!r}")
        kind = rope.get("rope_type", rope.get("type", "default"))  # "type": transformers 4.x
        if kind != "default":
            raise CheckpointError(f"gpt_neox config: rope_type {kind!r} is not supported (only "
                                  f"the default rotary embedding)")
        return GPTConfig(
            vocab_size=g("vocab_size", 50432), block_size=g("max_position_embeddings", 2048),
            n_layer=g("num_hidden_layers", 44), n_head=g("num_attention_heads", 64),
            n_embd=g("hidden_size", 6144), n_inner=g("intermediate_size"),
            position_embedding="rope", rotary_style="neox",
            rotary_pct=rope.get("partial_rotary_factor", g("rotary_pct", 0.25)),
            rope_theta=rope.get("rope_theta", g("rope_theta", g("rotary_emb_base", 10000.0))),
            parallel_residual=g("use_parallel_residual", True),
            activation=g("hidden_act", "gelu"), layer_norm_eps=g("layer_norm_eps", 1e-5),
            qkv_bias=g("attention_bias", True), attn_out_bias=g("attention_bias", True),
            tie_word_embeddings=g("tie_word_embeddings", False))
    if mt == "gptj":
        return GPTConfig(
            vocab_size=g("vocab_size", 50400), block_size=g("n_positions", 2048),
            n_layer=g("n_layer", 28), n_head=g("n_head", 16), n_embd=g("n_embd", 4096),
            n_inner=g("n_inner"), position_embedding="rope", rotary_style="gptj",
            rotary_dim=g("rotary_dim", 64), parallel_residual=True, shared_layer_norm=True,
            qkv_bias=False, attn_out_bias=False, lm_head_bias=True,
            activation=g("activation_function", "gelu_new"),
            layer_norm_eps=g("layer_norm_epsilon", 1e-5),
            tie_word_embeddings=g("tie_word_embeddings", False))
    # opt
    if not g("layer_norm_elementwise_affine", True):
        raise CheckpointError("opt config: layer_norm_elementwise_affine=false is not supported")
    hidden = g("hidden_size", 768)
    proj = g("word_embed_proj_dim") or hidden
    before = g("do_layer_norm_before", True)
    return GPTConfig(
        vocab_size=g("vocab_size", 50272), block_size=g("max_position_embeddings", 2048),
        n_layer=g("num_hidden_layers", 12), n_head=g("num_attention_heads", 12),
        n_embd=hidden, n_inner=g("ffn_dim", 3072), position_offset=2,
        word_embed_proj_dim=proj if proj != hidden else None, pre_layer_norm=before,
        final_layer_norm=before and not g("_remove_final_layer_norm", False),
        activation=g("activation_function", "relu"), bias=g("enable_bias", True),
        tie_word_embeddings=g("tie_word_embeddings", True))


def closest_model_type(c: GPTConfig) -> str:
    """The Hugging Face family that reproduces ``c`` exactly, the nearest one tried first (a
    GPT-2 with relu, or unscaled scores, is still a GPT-2); if none does, the nearest."""
    nearest = _nearest_family(c)
    for model_type in (nearest, *SUPPORTED):
        try:
            if not hf_differences(c, model_type):
                return model_type
        except (ValueError, TypeError):  # this family cannot even express c
            continue
    return nearest


def _nearest_family(c: GPTConfig) -> str:
    """The family whose architecture is nearest to ``c`` (by its distinctive features)."""
    if c.word_embed_proj_dim or c.position_offset == 2 or not c.pre_layer_norm or (
            c.activation == "relu"):
        return "opt"
    if c.position_embedding == "rope":
        return "gptj" if c.rotary_style == "gptj" and c.shared_layer_norm else "gpt_neox"
    if "local" in c.layer_types() or not c.scale_attn:
        return "gpt_neo"
    return "gpt2"


def config_to_hf(c: GPTConfig, model_type: str) -> dict:
    """A config.json dict for ``model_type`` (plus our full config under "tinygpt")."""
    common = {"model_type": model_type, "architectures": [ARCHITECTURES[model_type]],
              "vocab_size": c.vocab_size, "tie_word_embeddings": c.tie_word_embeddings,
              "torch_dtype": "float32"}
    if model_type == "gpt2":
        hf = dict(n_positions=c.block_size, n_layer=c.n_layer, n_head=c.n_head,
                  n_embd=c.n_embd, n_inner=c.n_inner, activation_function=c.activation,
                  layer_norm_epsilon=c.layer_norm_eps, scale_attn_weights=c.scale_attn,
                  scale_attn_by_inverse_layer_idx=c.scale_attn_by_inverse_layer_idx,
                  resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=0.0)
    elif model_type == "gpt_neo":
        hf = dict(max_position_embeddings=c.block_size, num_layers=c.n_layer,
                  num_heads=c.n_head, hidden_size=c.n_embd, intermediate_size=c.n_inner,
                  attention_types=[[[t], 1] for t in c.layer_types()],
                  window_size=c.window_size, activation_function=c.activation,
                  layer_norm_epsilon=c.layer_norm_eps, resid_dropout=c.dropout,
                  embed_dropout=c.dropout, attention_dropout=0.0)
    elif model_type == "gpt_neox":
        # readers take int(head_dim * pct) rotating features: R / head_dim can round to R - 1
        # (44 * (30 / 44) = 29.999...), half a feature more lands on R exactly
        r = c.rotary_dims
        pct = 1.0 if r >= c.head_dim else (r + 0.5) / c.head_dim
        hf = dict(max_position_embeddings=c.block_size, num_hidden_layers=c.n_layer,
                  num_attention_heads=c.n_head, hidden_size=c.n_embd,
                  intermediate_size=c.mlp_dim, hidden_act=c.activation,
                  rotary_pct=pct, rotary_emb_base=c.rope_theta,
                  rope_parameters={"rope_type": "default", "rope_theta": c.rope_theta,
                                   "partial_rotary_factor": pct},
                  use_parallel_residual=c.parallel_residual, layer_norm_eps=c.layer_norm_eps,
                  attention_bias=c.qkv_bias, hidden_dropout=c.dropout, attention_dropout=0.0)
    elif model_type == "gptj":
        hf = dict(n_positions=c.block_size, n_layer=c.n_layer, n_head=c.n_head,
                  n_embd=c.n_embd, n_inner=c.n_inner, rotary_dim=c.rotary_dims,
                  activation_function=c.activation, layer_norm_epsilon=c.layer_norm_eps,
                  resid_pdrop=c.dropout, embd_pdrop=c.dropout, attn_pdrop=0.0)
    else:
        hf = dict(max_position_embeddings=c.block_size, num_hidden_layers=c.n_layer,
                  num_attention_heads=c.n_head, hidden_size=c.n_embd, ffn_dim=c.mlp_dim,
                  word_embed_proj_dim=c.word_embed_proj_dim or c.n_embd,
                  do_layer_norm_before=c.pre_layer_norm,
                  _remove_final_layer_norm=c.pre_layer_norm and not c.final_layer_norm,
                  activation_function=c.activation, enable_bias=c.qkv_bias,
                  dropout=c.dropout, attention_dropout=0.0)
    return {**common, **hf, **c.extra, "tinygpt": c.to_dict()}


def hf_differences(c: GPTConfig, model_type: str) -> list[str]:
    """Why transformers would not reproduce ``c`` as ``model_type`` (empty: it will)."""
    back = config_from_hf({k: v for k, v in config_to_hf(c, model_type).items()
                           if k != "tinygpt"})
    return _meaning_differences(c, back, "ours", f"{model_type} gives")


def _meaning_differences(a: GPTConfig, b: GPTConfig, name_a: str, name_b: str) -> list[str]:
    """The fields whose meaning differs between two configs (not how they are spelled:
    n_inner=None is 4 * n_embd, rotary_pct 0.5 is rotary_dim head_dim / 2)."""
    def resolved(cfg: GPTConfig) -> dict:
        d = cfg.to_dict()
        d["n_inner"], d["rotary_dim"], d["rotary_pct"] = cfg.mlp_dim, cfg.rotary_dims, None
        return d

    ours, theirs = resolved(a), resolved(b)
    skip = {"dropout", "init_std", "extra", "bias"}
    return [f"{k}: {name_a} {ours[k]!r}, {name_b} {theirs[k]!r}"
            for k in ours if k not in skip and ours[k] != theirs.get(k)]


def _reconcile(embedded: GPTConfig, hf: dict, model_type: str, where) -> GPTConfig:
    """The config of a config.json that holds both our "tinygpt" entry and Hugging Face
    fields. They agree as tinygpt wrote them; if the HF fields were changed since (edited by
    hand, or saved again by transformers after a change), the HF fields win when they can
    express the model exactly, and the file is refused when they cannot (a warning or an
    error names the fields, never silently the stale entry)."""
    try:
        theirs = config_from_hf({k: v for k, v in hf.items() if k != "tinygpt"})
        written = config_from_hf({k: v for k, v in config_to_hf(embedded, model_type).items()
                                  if k != "tinygpt"})
    except (TypeError, ValueError):
        return embedded  # HF fields we cannot read: the entry tinygpt wrote is all we have
    changed = _meaning_differences(written, theirs, "tinygpt wrote", "the file now has")
    pct = (hf.get("rope_parameters") or {}).get("partial_rotary_factor", hf.get("rotary_pct"))
    if isinstance(pct, (int, float)) and abs(pct * embedded.head_dim
                                              - embedded.rotary_dims) < 1e-6:
        # tinygpt before 2026-12-03 wrote rotary_pct = R / head_dim, which int() can read
        # back as R - 1: rounding, not an edit
        changed = [d for d in changed if not d.startswith("rotary_dim:")]
    if not changed:
        return embedded
    if not _meaning_differences(embedded, written, "", ""):  # the HF fields express it
        warnings.warn(f"{where}: its Hugging Face fields were changed after tinygpt wrote "
                      f"it ({'; '.join(changed)}); using them, not the stale \"tinygpt\" "
                      f"entry", stacklevel=3)
        return theirs
    raise CheckpointError(f"{where}: its Hugging Face fields were changed after tinygpt wrote "
                          f"it ({'; '.join(changed)}), and its \"tinygpt\" entry describes a "
                          f"model they cannot express; remove one of the two")


# ------------------------------------------------------------------------------ weights

# our module name -> the family's. A tuple means q, k, v stored separately (fused here).
_GPT2_LAYER = {"ln_1": "ln_1", "ln_2": "ln_2", "attn.c_attn": "attn.c_attn",
               "attn.c_proj": "attn.c_proj", "mlp.c_fc": "mlp.c_fc", "mlp.c_proj": "mlp.c_proj"}
FAMILIES = {
    "gpt2": dict(
        top={"transformer.wte": "transformer.wte", "transformer.wpe": "transformer.wpe",
             "transformer.ln_f": "transformer.ln_f", "lm_head": "lm_head"},
        layer="transformer.h.{i}.", inner=_GPT2_LAYER, qkv="fused", conv1d=True),
    "gpt_neo": dict(
        top={"transformer.wte": "transformer.wte", "transformer.wpe": "transformer.wpe",
             "transformer.ln_f": "transformer.ln_f", "lm_head": "lm_head"},
        layer="transformer.h.{i}.",
        inner={**_GPT2_LAYER, "attn.c_attn": ("attn.attention.q_proj", "attn.attention.k_proj",
                                              "attn.attention.v_proj"),
               "attn.c_proj": "attn.attention.out_proj"},
        qkv="split", conv1d=False),
    "gpt_neox": dict(
        top={"transformer.wte": "gpt_neox.embed_in", "transformer.ln_f":
             "gpt_neox.final_layer_norm", "lm_head": "embed_out"},
        layer="gpt_neox.layers.{i}.",
        inner={"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm",
               "attn.c_attn": "attention.query_key_value", "attn.c_proj": "attention.dense",
               "mlp.c_fc": "mlp.dense_h_to_4h", "mlp.c_proj": "mlp.dense_4h_to_h"},
        qkv="neox", conv1d=False),
    "gptj": dict(
        top={"transformer.wte": "transformer.wte", "transformer.ln_f": "transformer.ln_f",
             "lm_head": "lm_head"},
        layer="transformer.h.{i}.",
        inner={"ln_1": "ln_1", "attn.c_attn": ("attn.q_proj", "attn.k_proj", "attn.v_proj"),
               "attn.c_proj": "attn.out_proj", "mlp.c_fc": "mlp.fc_in",
               "mlp.c_proj": "mlp.fc_out"},
        qkv="split", conv1d=False),
    "opt": dict(
        top={"transformer.wte": "model.decoder.embed_tokens",
             "transformer.wpe": "model.decoder.embed_positions",
             "transformer.project_in": "model.decoder.project_in",
             "transformer.project_out": "model.decoder.project_out",
             "transformer.ln_f": "model.decoder.final_layer_norm", "lm_head": "lm_head"},
        layer="model.decoder.layers.{i}.",
        inner={"ln_1": "self_attn_layer_norm", "ln_2": "final_layer_norm",
               "attn.c_attn": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
               "attn.c_proj": "self_attn.out_proj", "mlp.c_fc": "fc1", "mlp.c_proj": "fc2"},
        qkv="split", conv1d=False),
}
# Buffers some checkpoints carry (causal masks, rotary tables): recomputed here, so skipped.
_BUFFERS = re.compile(r"(\.attn\.(masked_)?bias|\.attention\.(masked_)?bias|"
                      r"\.attn\.attention\.(masked_)?bias|rotary_emb\.inv_freq)$")
_PREFIX = {"gpt2": "transformer.", "gpt_neo": "transformer.", "gptj": "transformer.",
           "gpt_neox": "gpt_neox.", "opt": "model."}


def _hf_name(ours: str, model_type: str):
    """The family's name (or tuple of q, k, v names) for one of our parameter names."""
    fam = FAMILIES[model_type]
    module, leaf = ours.rsplit(".", 1)
    m = re.fullmatch(r"transformer\.h\.(\d+)\.(.+)", module)
    if m:
        hf = fam["inner"][m.group(2)]
        prefix = fam["layer"].format(i=m.group(1))
        if isinstance(hf, tuple):
            return tuple(f"{prefix}{h}.{leaf}" for h in hf)
        return f"{prefix}{hf}.{leaf}"
    return f"{fam['top'][module]}.{leaf}"


def _is_conv1d(ours: str, model_type: str) -> bool:
    """GPT-2's Conv1D layers store (in, out) weights, the transpose of nn.Linear."""
    return FAMILIES[model_type]["conv1d"] and ours.endswith(".weight") and re.search(
        r"\.(c_attn|c_proj|c_fc)\.weight$", ours) is not None


def _normalize_keys(weights: dict, model_type: str) -> dict:
    """Accept base-model checkpoints saved without the causal-LM prefix (e.g. GPT2Model)."""
    prefix = _PREFIX[model_type]
    if any(k.startswith(prefix) for k in weights):
        return weights
    return {(k if k.startswith("lm_head") or k == "embed_out.weight" else prefix + k): v
            for k, v in weights.items()}


def _tie_as_stored(c: GPTConfig, weights: dict, model_type: str, source) -> GPTConfig:
    """The config, untied if it says tied but the file stores a head that differs from the
    token embeddings: transformers then keeps the stored head (with a warning), and tying
    would silently drop it. A config that omits tie_word_embeddings gets the family's
    default, tied for GPT-2, GPT-Neo and OPT, so an untied model saved without the key
    comes this way."""
    if not c.tie_word_embeddings:
        return c
    weights = _normalize_keys(weights, model_type)
    head_name = _hf_name("lm_head.weight", model_type)
    head, emb = weights.get(head_name), weights.get(_hf_name("transformer.wte.weight", model_type))
    if head is None or emb is None or (np.shape(head) == np.shape(emb)
                                       and np.array_equal(head, emb)):
        return c
    warnings.warn(f"{source}: config.json ties the output head to the token embeddings, but "
                  f"the file stores a different {head_name}; loading it untied, as "
                  f"transformers does", stacklevel=4)
    return dataclasses.replace(c, tie_word_embeddings=False)


def hf_to_state_dict(weights: dict, model: GPT, model_type: str, source: str = "") -> dict:
    """Our state dict (arrays) from the family's tensors; names every missing or extra key."""
    c = model.config
    weights = _normalize_keys(weights, model_type)
    used, state, missing = set(), {}, []
    for ours, p in model.state_dict().items():
        if ours == "lm_head.weight" and c.tie_word_embeddings:
            continue
        hf = _hf_name(ours, model_type)
        names = hf if isinstance(hf, tuple) else (hf,)
        absent = [n for n in names if n not in weights]
        if absent:
            missing.extend(absent)
            continue
        raw = [np.asarray(weights[n]) for n in names]
        for n, a in zip(names, raw):  # an integer or bool "weight" is not a float to cast
            if a.dtype.kind != "f":
                raise CheckpointError(f"{source}: tensor {n} has dtype {a.dtype}, not a float")
        arrays = [a.astype(np.float32, copy=False) for a in raw]
        used.update(names)
        try:
            if len(arrays) == 3:  # q, k, v -> one fused (3C, C) matrix
                a = np.concatenate(arrays, axis=0)
            elif model_type == "gpt_neox" and ".attn.c_attn." in ours:
                a = _neox_qkv_to_fused(arrays[0], c.n_head)
            else:
                a = arrays[0].T if _is_conv1d(ours, model_type) else arrays[0]
        except ValueError:  # shapes that do not even concatenate or reshape
            a = None
        if a is None or a.shape != tuple(p.shape):
            got = " + ".join(str(x.shape) for x in arrays) if a is None else str(a.shape)
            raise CheckpointError(f"{source}: tensor {' + '.join(names)} has shape {got}, "
                                  f"expected {tuple(p.shape)} for {ours}")
        state[ours] = a
    if c.tie_word_embeddings:
        used.add(_hf_name("lm_head.weight", model_type))
    unexpected = sorted(k for k in weights if k not in used and not _BUFFERS.search(k))
    if missing or unexpected:
        parts = ([f"missing tensors {missing}"] if missing else []) + (
            [f"unexpected tensors {unexpected}"] if unexpected else [])
        raise CheckpointError(f"{source}: {'; '.join(parts)} for model_type {model_type!r}")
    return state


def state_dict_to_hf(state: dict, c: GPTConfig, model_type: str) -> dict[str, np.ndarray]:
    """The family's tensors from our state dict (the inverse of :func:`hf_to_state_dict`).

    Works for any arrays named like our parameters, e.g. their gradients.
    """
    out = {}
    for ours, a in state.items():
        if ours == "lm_head.weight" and c.tie_word_embeddings:
            continue
        a = backend.to_numpy(a)
        hf = _hf_name(ours, model_type)
        if isinstance(hf, tuple):
            for name, part in zip(hf, np.split(a, 3, axis=0)):
                out[name] = np.ascontiguousarray(part)
        elif model_type == "gpt_neox" and ".attn.c_attn." in ours:
            out[hf] = _fused_to_neox_qkv(a, c.n_head)
        else:
            out[hf] = np.ascontiguousarray(a.T if _is_conv1d(ours, model_type) else a)
    return out


def _neox_qkv_to_fused(a: np.ndarray, n_head: int) -> np.ndarray:
    """NeoX rows are [head0: q k v, head1: q k v, ...]; ours are [all q, all k, all v]."""
    rest = a.shape[1:]
    return a.reshape((n_head, 3, -1) + rest).swapaxes(0, 1).reshape(a.shape)


def _fused_to_neox_qkv(a: np.ndarray, n_head: int) -> np.ndarray:
    rest = a.shape[1:]
    return np.ascontiguousarray(a.reshape((3, n_head, -1) + rest).swapaxes(0, 1).reshape(a.shape))


# ------------------------------------------------------------------------------ files


def load_pretrained(path) -> GPT:
    """Load a local Hugging Face directory: config.json + model.safetensors (or shards)."""
    d = Path(path)
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a directory (from_pretrained takes a local folder "
                              f"with config.json and model.safetensors; nothing is downloaded)")
    cfg_path = d / "config.json"
    if not cfg_path.is_file():
        raise CheckpointError(f"{d}: no config.json file")
    try:
        hf = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: not valid JSON ({e})") from e
    if not isinstance(hf, dict):
        raise CheckpointError(f"{cfg_path}: expected a JSON object")
    try:
        config = GPTConfig.from_dict(hf["tinygpt"]) if "tinygpt" in hf else config_from_hf(hf)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: {e}") from e
    if "tinygpt" in hf and hf.get("model_type") in SUPPORTED:
        config = _reconcile(config, hf, hf["model_type"], cfg_path)
    model_type = hf.get("model_type") or closest_model_type(config)
    if model_type not in SUPPORTED:
        raise CheckpointError(f"{cfg_path}: unsupported model_type {model_type!r}; "
                              f"tinygpt loads {SUPPORTED}")
    if (d / "model.safetensors").exists():
        weights_path = d / "model.safetensors"
        weights = load_file(weights_path)
    elif (d / "model.safetensors.index.json").exists():
        weights_path = d / "model.safetensors.index.json"
        weights = load_sharded(weights_path)
    else:
        found = sorted(p.name for p in d.iterdir())
        raise CheckpointError(f"{d}: no model.safetensors (or model.safetensors.index.json); "
                              f"found {found}. PyTorch .bin files are pickles and are not loaded")
    config = _tie_as_stored(config, weights, model_type, weights_path)
    from tinygpt import nn

    with nn.meta():  # shapes only: the checkpoint supplies every value
        model = GPT(config)
    state = hf_to_state_dict(weights, model, model_type, str(weights_path))
    model = GPT(config)
    model.load_state_dict(state, strict=False)
    return model


def save_pretrained(model: GPT, path, model_type: str | None = None) -> None:
    """Write config.json and model.safetensors (atomically) for ``model_type``.

    Without ``model_type`` the closest family is used; if transformers could not
    reproduce this config exactly (say, local attention with RoPE), a warning says why —
    tinygpt itself always reloads it exactly from the "tinygpt" entry of config.json.
    """
    model_type = model_type or closest_model_type(model.config)
    if model_type not in SUPPORTED:
        raise ValueError(f"save_pretrained: unsupported model_type {model_type!r}; "
                         f"choose from {SUPPORTED}")
    diffs = hf_differences(model.config, model_type)
    if diffs:
        warnings.warn(f"save_pretrained: transformers' {model_type} will not match this model "
                      f"exactly ({'; '.join(diffs)}); tinygpt reloads it exactly", stacklevel=3)
    d = Path(path)
    d.mkdir(parents=True, exist_ok=True)
    save_file(state_dict_to_hf(model.state_dict(), model.config, model_type),
              d / "model.safetensors",
              metadata={"format": "pt"})
    tmp = d / "config.json.tmp"
    tmp.write_text(json.dumps(config_to_hf(model.config, model_type), indent=2) + "\n")
    os.replace(tmp, d / "config.json")
