"""The GPT family in one readable model: GPT-2, GPT-Neo, GPT-NeoX, GPT-J and OPT.

Read top to bottom: the config, then attention, the MLP, the block and the model, as in
nanoGPT. Each difference between the families is one visible ``if`` where it acts:

- GPT-2: learned positions, pre-LayerNorm, tanh-GELU, fused qkv with biases.
- GPT-Neo: like GPT-2, but layers alternate global and *local* (sliding-window) attention,
  q/k/v have no bias and scores are not scaled by 1/sqrt(head_dim).
- GPT-NeoX (Pythia): rotary positions on part of each head (``rotary_pct``, rotate-half
  layout), a parallel residual with two layer norms, exact GELU, an untied LM head.
- GPT-J: rotary positions on ``rotary_dim`` features (interleaved layout), a parallel
  residual sharing one layer norm, no q/k/v/out biases, an LM head with a bias.
- OPT: learned positions offset by 2, ReLU, optionally post-LayerNorm and a projection
  between a narrower embedding and the hidden size (``word_embed_proj_dim``).

Parameters use nanoGPT's names (``transformer.h.0.attn.c_attn.weight``); ``tinygpt.io.hf``
maps them to and from each Hugging Face layout.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from tinygpt import backend, nn
from tinygpt import functional as F
from tinygpt import random as _random
from tinygpt.kernels.reference import rope_cos_sin
from tinygpt.tensor import Tensor, cat, no_grad

# Hugging Face's activation names -> F.gelu's approximate (None: relu). gelu_new, gelu_fast,
# gelu_accurate and gelu_pytorch_tanh are spellings of the same tanh formula.
ACTIVATIONS = {"gelu_new": "tanh", "gelu_fast": "tanh", "gelu_pytorch_tanh": "tanh",
               "gelu_accurate": "tanh", "gelu_python_tanh": "tanh", "gelu": "none",
               "gelu_python": "none", "relu": None}


def expand_attention_types(attention_types) -> list[str]:
    """GPT-Neo's compact ``[[["global", "local"], 12]]`` -> 24 per-layer entries."""
    layers: list[str] = []
    for item in attention_types:
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], int)):
            raise ValueError(f"attention_types entries must be [[types...], repeat], got {item!r}")
        pattern, repeat = item
        layers.extend(list(pattern) * repeat)
    return layers


_BOOL_FIELDS = ("scale_attn", "scale_attn_by_inverse_layer_idx", "parallel_residual",
                "shared_layer_norm", "pre_layer_norm", "final_layer_norm", "bias", "qkv_bias",
                "attn_out_bias", "mlp_bias", "lm_head_bias", "tie_word_embeddings")


@dataclass
class GPTConfig:
    """Every switch the five families need. Defaults are GPT-2 small's."""

    vocab_size: int = 50257
    block_size: int = 1024  # longest sequence (size of the learned position table)
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    n_inner: int | None = None  # MLP width; None means 4 * n_embd
    # attention: per-layer "global" / "local" (GPT-Neo); None means all global
    attention_layers: list[str] | None = None
    window_size: int = 256  # keys a local layer sees: i - window < j <= i
    scale_attn: bool = True  # False for GPT-Neo: scores are not divided by sqrt(head_dim)
    # GPT-2's scale_attn_by_inverse_layer_idx (Stanford CRFM's Mistral GPT-2 runs): the
    # scores of layer i (from 0) are further divided by i + 1, which tames deep layers
    scale_attn_by_inverse_layer_idx: bool = False
    # positions
    position_embedding: str = "learned"  # "learned" | "rope" | "none"
    position_offset: int = 0  # OPT stores its table 2 rows further
    rotary_dim: int | None = None  # features per head that rotate (GPT-J)
    rotary_pct: float | None = None  # or a fraction of the head (GPT-NeoX)
    rotary_style: str = "neox"  # "neox" (rotate half) | "gptj" (interleaved pairs)
    rope_theta: float = 10000.0
    # block layout
    parallel_residual: bool = False  # x + attn(ln(x)) + mlp(ln(x)) (NeoX, GPT-J)
    shared_layer_norm: bool = False  # GPT-J: attn and mlp read the same ln_1 output
    pre_layer_norm: bool = True  # False: OPT-350m's post-LN, x = ln(x + f(x))
    final_layer_norm: bool = True  # ln_f before the head (OPT-350m has none)
    activation: str = "gelu_new"  # "gelu_new" (tanh) | "gelu" (exact erf) | "relu"
    layer_norm_eps: float = 1e-5
    # biases
    bias: bool = True  # default for all the switches below that are None
    qkv_bias: bool | None = None
    attn_out_bias: bool | None = None
    mlp_bias: bool | None = None
    lm_head_bias: bool = False  # GPT-J has one
    # embeddings and head
    tie_word_embeddings: bool = True
    word_embed_proj_dim: int | None = None  # OPT-350m: embeddings of 512 projected to 1024
    dropout: float = 0.0  # on embeddings and residual branches (attention dropout: none)
    init_std: float = 0.02
    extra: dict = field(default_factory=dict, repr=False)  # Hugging Face fields kept for saving

    def __post_init__(self):
        for f in dataclasses.fields(self):  # NumPy scalars -> Python's (config.json is JSON)
            v = getattr(self, f.name)
            if isinstance(v, np.generic) and v.dtype.kind in "biuf":
                setattr(self, f.name, v.item())
        for name in ("qkv_bias", "attn_out_bias", "mlp_bias"):
            if getattr(self, name) is None:
                setattr(self, name, self.bias)
        if self.attention_layers is not None:
            self.attention_layers = list(self.attention_layers)
        self.validate()

    # -- validation --------------------------------------------------------------------
    def validate(self) -> None:
        def bad(name, why):
            raise ValueError(f"GPTConfig.{name}={getattr(self, name)!r}: {why}")

        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "window_size"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                bad(name, "must be a positive integer")
        for name in _BOOL_FIELDS:
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                bad(name, "must be true or false")
        for name in ("n_inner", "rotary_dim", "word_embed_proj_dim", "position_offset"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, (int, np.integer)) or isinstance(v, bool)
                                  or v < (0 if name == "position_offset" else 1)):
                bad(name, "must be an integer >= 0" if name == "position_offset"
                    else "must be a positive integer or None")
        for name, low in (("rope_theta", "> 0"), ("layer_norm_eps", ">= 0"),
                          ("init_std", ">= 0"), ("dropout", ">= 0")):
            v = getattr(self, name)
            if (not isinstance(v, (int, float, np.floating)) or isinstance(v, bool)
                    or not math.isfinite(v) or not (v > 0 if low == "> 0" else v >= 0)):
                bad(name, f"must be a finite number {low}")
        if self.n_embd % self.n_head:
            bad("n_embd", f"must be divisible by n_head={self.n_head}")
        if self.attention_layers is not None:
            if len(self.attention_layers) != self.n_layer:
                bad("attention_layers", f"needs one entry per layer (n_layer={self.n_layer})")
            unknown = [t for t in self.attention_layers if t not in ("global", "local")]
            if unknown:
                bad("attention_layers", f"unknown attention type(s) {unknown}; "
                                        f"use 'global' or 'local'")
        if self.position_embedding not in ("learned", "rope", "none"):
            bad("position_embedding", "must be 'learned', 'rope' or 'none'")
        if self.rotary_style not in ("neox", "gptj"):
            bad("rotary_style", "must be 'neox' or 'gptj'")
        if self.rotary_dim is not None and self.rotary_pct is not None:
            bad("rotary_dim", "give rotary_dim or rotary_pct, not both")
        if self.rotary_pct is not None and (not isinstance(self.rotary_pct, (int, float))
                                            or isinstance(self.rotary_pct, bool)
                                            or not 0 < self.rotary_pct <= 1):
            bad("rotary_pct", "must be in (0, 1]")
        if self.position_embedding == "rope":
            r = self.rotary_dims
            if r < 2 or r % 2 or r > self.head_dim:
                name = "rotary_pct" if self.rotary_pct is not None else "rotary_dim"
                bad(name, f"gives {r} rotating features per head (head_dim {self.head_dim}): "
                          f"they must be even, >= 2 and <= head_dim")
        if self.activation not in ACTIVATIONS:
            bad("activation", f"must be one of {sorted(ACTIVATIONS)}")
        if self.shared_layer_norm and not self.parallel_residual:
            bad("shared_layer_norm", "only makes sense with parallel_residual=True")
        if not self.pre_layer_norm and self.parallel_residual:
            bad("pre_layer_norm", "post-LayerNorm is not defined for a parallel residual")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", "must be in [0, 1)")
        if self.word_embed_proj_dim is not None and self.word_embed_proj_dim < 1:
            bad("word_embed_proj_dim", "must be a positive integer or None")

    # -- derived -----------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def mlp_dim(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def rotary_dims(self) -> int:
        """Number of features per head that rotate (0 without RoPE)."""
        if self.position_embedding != "rope":
            return 0
        if self.rotary_dim is not None:
            return self.rotary_dim
        if self.rotary_pct is not None:
            return int(self.head_dim * self.rotary_pct)
        return self.head_dim

    def layer_types(self) -> list[str]:
        return self.attention_layers or ["global"] * self.n_layer

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """Build from a dict; an unknown key is an error that names it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown GPTConfig key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPTConfig:
        """The published shape of a named model (random weights when built)."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; available: {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


_NEO = dict(vocab_size=50257, block_size=2048, window_size=256, scale_attn=False, qkv_bias=False)
_OPT = dict(vocab_size=50272, block_size=2048, activation="relu", position_offset=2)
PRESETS: dict[str, dict] = {
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768),
    "gpt2-medium": dict(n_layer=24, n_head=16, n_embd=1024),
    "gpt2-large": dict(n_layer=36, n_head=20, n_embd=1280),
    "gpt2-xl": dict(n_layer=48, n_head=25, n_embd=1600),
    "gpt-neo-125M": dict(_NEO, n_layer=12, n_head=12, n_embd=768,
                         attention_layers=["global", "local"] * 6),
    "gpt-neo-1.3B": dict(_NEO, n_layer=24, n_head=16, n_embd=2048,
                         attention_layers=["global", "local"] * 12),
    "gpt-neo-2.7B": dict(_NEO, n_layer=32, n_head=20, n_embd=2560,
                         attention_layers=["global", "local"] * 16),
    "pythia-160m": dict(vocab_size=50304, block_size=2048, n_layer=12, n_head=12, n_embd=768,
                        position_embedding="rope", rotary_pct=0.25, parallel_residual=True,
                        activation="gelu", tie_word_embeddings=False),
    "gpt-j-6B": dict(vocab_size=50400, block_size=2048, n_layer=28, n_head=16, n_embd=4096,
                     position_embedding="rope", rotary_dim=64, rotary_style="gptj",
                     parallel_residual=True, shared_layer_norm=True, qkv_bias=False,
                     attn_out_bias=False, lm_head_bias=True, tie_word_embeddings=False),
    "opt-125m": dict(_OPT, n_layer=12, n_head=12, n_embd=768),
    "opt-350m": dict(_OPT, n_layer=24, n_head=16, n_embd=1024, word_embed_proj_dim=512,
                     pre_layer_norm=False, final_layer_norm=False),
}


# ------------------------------------------------------------------------------ KV cache


class KVCache:
    """Keys and values of the tokens seen so far, per layer, for incremental decoding.

    Global layers keep every key; local layers keep only the last ``window_size`` keys, so
    their memory is bounded by the window, not by the sequence. ``seen_tokens`` counts
    positions (it sets the next token's position); ``attention_mask`` remembers the
    padding mask of everything seen.
    """

    def __init__(self, n_layer: int):
        self.keys: list = [None] * n_layer  # each (B, H, S_layer, D) array or None
        self.values: list = [None] * n_layer
        self.seen_tokens = 0
        self.attention_mask = None  # (B, seen_tokens) or None

    def update(self, layer: int, k, v, keep: int | None):
        """Append this step's k, v (B, H, T, D); return the full keys/values to attend to."""
        xp = backend.array_module(k)
        if self.keys[layer] is not None:
            k = xp.concatenate([self.keys[layer], k], axis=2)
            v = xp.concatenate([self.values[layer], v], axis=2)
        if keep is not None:
            self.keys[layer], self.values[layer] = k[:, :, -keep:], v[:, :, -keep:]
        else:
            self.keys[layer], self.values[layer] = k, v
        return k, v

    def layer_length(self, layer: int) -> int:
        return 0 if self.keys[layer] is None else self.keys[layer].shape[2]

    def nbytes(self) -> int:
        return sum(int(a.nbytes) for a in self.keys + self.values if a is not None)


# ------------------------------------------------------------------------------ modules


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention, global or local (sliding window), with optional RoPE."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        C = config.n_embd
        self.config, self.layer_idx = config, layer_idx
        self.n_head, self.head_dim = config.n_head, config.head_dim
        self.local = config.layer_types()[layer_idx] == "local"
        self.c_attn = nn.Linear(C, 3 * C, bias=config.qkv_bias)  # q, k, v in one matmul
        self.c_proj = nn.Linear(C, C, bias=config.attn_out_bias)

    def forward(self, x: Tensor, rope_tables, key_mask, cache: KVCache | None,
                output_attentions: bool):
        B, T, C = x.shape
        H, D = self.n_head, self.head_dim
        qkv = self.c_attn(x)  # [B, T, C] -> [B, T, 3C]
        q, k, v = qkv.split(C, dim=2)
        # [B, T, C] -> [B, T, H, D] -> [B, H, T, D]
        q = q.reshape(B, T, H, D).transpose(1, 2)
        k = k.reshape(B, T, H, D).transpose(1, 2)
        v = v.reshape(B, T, H, D).transpose(1, 2)
        if rope_tables is not None:  # rotate q and k by their positions (NeoX / GPT-J)
            q, k = _apply_rope(q, rope_tables, self.config), _apply_rope(k, rope_tables,
                                                                          self.config)
        window = self.config.window_size if self.local else None
        if cache is not None:  # attend to the cached keys too; local layers keep a window
            kd, vd = cache.update(self.layer_idx, k.data, v.data, window)
            if kd.shape[2] > T:
                k, v = Tensor(kd), Tensor(vd)  # inference only: the past needs no gradient
        mask = None if key_mask is None else key_mask[:, :, :, -k.shape[2]:]
        scale = 1 / math.sqrt(D) if self.config.scale_attn else 1.0
        if self.config.scale_attn_by_inverse_layer_idx:
            scale /= self.layer_idx + 1
        y = F.scaled_dot_product_attention(q, k, v, causal=True, window=window, scale=scale,
                                           mask=mask, return_weights=output_attentions)
        weights = None
        if output_attentions:
            y, weights = y
            seen = T if cache is None else cache.seen_tokens + T
            if weights.shape[-1] < seen:  # a local layer's cache keeps only its window: its
                # maps still span every position so far, zero outside the window, like the
                # global layers' and transformers'
                xp = backend.array_module(weights.data)
                pad = xp.zeros(weights.shape[:-1] + (seen - weights.shape[-1],), weights.dtype)
                weights = Tensor(xp.concatenate([pad, weights.data], axis=-1))
        y = y.transpose(1, 2).reshape(B, T, C)  # [B, H, T, D] -> [B, T, C]
        return self.c_proj(y), weights


def _apply_rope(x: Tensor, tables, config: GPTConfig) -> Tensor:
    """RoPE on (B, H, T, D); tables are (T, R/2) shared by all rows, or one per row."""
    cos, sin = tables
    if cos.ndim == 2:
        return F.rope(x, cos, sin, config.rotary_style)
    # padded batches: each row has its own positions
    return cat([F.rope(x[b:b + 1], cos[b], sin[b], config.rotary_style)
                for b in range(x.shape[0])], dim=0)


class MLP(nn.Module):
    """Position-wise feed-forward: expand, activate, project back."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, config.mlp_dim, bias=config.mlp_bias)
        self.c_proj = nn.Linear(config.mlp_dim, config.n_embd, bias=config.mlp_bias)
        self.approximate = ACTIVATIONS[config.activation]

    def forward(self, x: Tensor) -> Tensor:
        h = self.c_fc(x)  # [B, T, C] -> [B, T, 4C]
        h = h.relu() if self.approximate is None else F.gelu(h, self.approximate)
        return self.c_proj(h)  # [B, T, 4C] -> [B, T, C]


class Block(nn.Module):
    """One transformer layer: attention and MLP, each on a residual branch."""

    def __init__(self, config: GPTConfig, layer_idx: int):
        super().__init__()
        self.config = config
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.attn = CausalSelfAttention(config, layer_idx)
        if not config.shared_layer_norm:
            self.ln_2 = nn.LayerNorm(config.n_embd, eps=config.layer_norm_eps)
        self.mlp = MLP(config)
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x, rope_tables, key_mask, cache, output_attentions):
        c = self.config
        if c.parallel_residual:  # NeoX / GPT-J: both branches read the same input
            h = self.ln_1(x)
            a, w = self.attn(h, rope_tables, key_mask, cache, output_attentions)
            m = self.mlp(h if c.shared_layer_norm else self.ln_2(x))
            return x + self.drop(a) + self.drop(m), w
        if c.pre_layer_norm:  # GPT-2, Neo, OPT-125m
            a, w = self.attn(self.ln_1(x), rope_tables, key_mask, cache, output_attentions)
            x = x + self.drop(a)
            return x + self.drop(self.mlp(self.ln_2(x))), w
        # post-LN (OPT-350m): normalise after each residual add
        a, w = self.attn(x, rope_tables, key_mask, cache, output_attentions)
        x = self.ln_1(x + self.drop(a))
        return self.ln_2(x + self.drop(self.mlp(x))), w


@dataclass
class ModelOutput:
    logits: Tensor
    loss: Tensor | None = None
    attentions: list[Tensor] | None = None
    cache: KVCache | None = None


class GPT(nn.Module):
    """A decoder-only transformer language model."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = c = config
        E = c.word_embed_proj_dim or c.n_embd  # width of the token embeddings
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(c.vocab_size, E)
        if c.position_embedding == "learned":
            self.transformer.wpe = nn.Embedding(c.block_size + c.position_offset, c.n_embd)
        if E != c.n_embd:  # OPT-350m
            self.transformer.project_in = nn.Linear(E, c.n_embd, bias=False)
            self.transformer.project_out = nn.Linear(c.n_embd, E, bias=False)
        self.transformer.drop = nn.Dropout(c.dropout)
        self.transformer.h = nn.ModuleList(Block(c, i) for i in range(c.n_layer))
        if c.final_layer_norm:
            self.transformer.ln_f = nn.LayerNorm(c.n_embd, eps=c.layer_norm_eps)
        if not c.tie_word_embeddings:
            self.lm_head = nn.Linear(E, c.vocab_size, bias=c.lm_head_bias)
        elif c.lm_head_bias:  # tied weights, own bias (a GPT-J saved with tied embeddings)
            self.lm_head = nn.Module()
            self.lm_head.bias = nn.Parameter(nn.empty((c.vocab_size,)))
        self._init_weights()

    def _init_weights(self) -> None:
        """GPT-2's init: N(0, 0.02) weights, zero biases, and residual projections scaled
        by 1/sqrt(2 * n_layer) so the residual stream's variance does not grow with depth."""
        if nn.is_meta():
            return
        std = self.config.init_std
        for name, p in self.named_parameters():
            if name.endswith("bias"):
                p.data[...] = 0
            elif ".ln_" in name or name.endswith("ln_f.weight"):
                p.data[...] = 1
            elif name.endswith("c_proj.weight"):
                nn.init_normal_(p, std=std / math.sqrt(2 * self.config.n_layer))
            else:
                nn.init_normal_(p, std=std)

    # -- inspection ------------------------------------------------------------------------
    def num_parameters(self, exclude_embeddings: bool = False) -> int:
        n = super().num_parameters()
        if exclude_embeddings and hasattr(self.transformer, "wpe"):
            n -= self.transformer.wpe.weight.numel()
        return n

    @staticmethod
    def count_parameters(config: GPTConfig) -> int:
        """Parameter count of a config without allocating its weights."""
        with nn.meta():
            return GPT(config).num_parameters()

    @classmethod
    def from_preset(cls, name: str, **overrides) -> GPT:
        return cls(GPTConfig.from_preset(name, **overrides))

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW groups: decay matrices, not biases, norms or embeddings (nanoGPT's rule)."""
        decay, no_decay = [], []
        embeddings = {id(self.transformer.wte.weight)}
        if hasattr(self.transformer, "wpe"):
            embeddings.add(id(self.transformer.wpe.weight))
        for _, p in self.named_parameters():
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self, weight_decay: float = 0.1, lr: float = 6e-4,
                             betas: tuple[float, float] = (0.9, 0.95)):
        from tinygpt.optim import AdamW

        return AdamW(self.optimizer_groups(weight_decay), lr=lr, betas=betas)

    # -- forward -----------------------------------------------------------------------------
    def forward(self, idx, targets=None, labels=None, attention_mask=None, cache=None,
                output_attentions: bool = False, logits_to_keep: int = 0) -> ModelOutput:
        """Logits for every position of ``idx`` (B, T); optionally the loss.

        targets: nanoGPT's next-token ids aligned with idx (-100 ignored). labels: Hugging
        Face's convention, usually idx itself; shifted by one here. attention_mask (B, S):
        1 for real tokens, 0 for padding, covering cached tokens too. cache: a KVCache (or
        True for a new one) to decode incrementally. logits_to_keep: only the last N logits
        (0 = all), which saves the head's matmul when generating.
        """
        c = self.config
        idx = idx.data if isinstance(idx, Tensor) else backend.xp.asarray(idx)
        if idx.ndim == 1:
            idx = idx[None, :]
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"GPT: idx must be integer token ids of shape (B, T), got "
                             f"{idx.dtype} array of shape {tuple(idx.shape)}")
        B, T = idx.shape
        if B == 0 or T == 0:
            raise ValueError(f"GPT: idx of shape {(B, T)} holds no tokens; give at least one "
                             f"sequence of at least one token")
        if cache is True:
            cache = KVCache(c.n_layer)
        if cache is not None:
            if not isinstance(cache, KVCache):
                raise TypeError(f"GPT: cache must be a KVCache, True or None, got "
                                f"{type(cache).__name__}")
            cached = next((k for k in cache.keys if k is not None), None)
            if len(cache.keys) != c.n_layer or (cached is not None and cached.shape[0] != B):
                raise ValueError(f"GPT: this KVCache holds {len(cache.keys)} layers of batch "
                                 f"{None if cached is None else cached.shape[0]}; the model "
                                 f"has {c.n_layer} layers and idx a batch of {B}")
        past = cache.seen_tokens if cache is not None else 0
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= c.vocab_size):
            bad = int(idx.max()) if int(idx.max()) >= c.vocab_size else int(idx.min())
            raise IndexError(f"GPT: token id {bad} is out of range for vocab_size "
                             f"{c.vocab_size}")

        positions, key_mask = self._positions_and_mask(B, T, past, attention_mask, cache)
        if c.position_embedding == "learned" and int(positions.max()) >= c.block_size:
            raise ValueError(f"GPT: position {int(positions.max())} is beyond block_size "
                             f"{c.block_size} (learned positions cannot extend); crop the input")

        x = self.transformer.wte(idx)  # [B, T] -> [B, T, E]
        if hasattr(self.transformer, "project_in"):
            x = self.transformer.project_in(x)  # [B, T, E] -> [B, T, C]
        if c.position_embedding == "learned":
            x = x + self.transformer.wpe(positions + c.position_offset)
        x = self.transformer.drop(x)

        rope_tables = None
        if c.position_embedding == "rope":
            rope_tables = self._rope_tables(positions, x.dtype)

        attentions = [] if output_attentions else None
        for block in self.transformer.h:
            x, w = block(x, rope_tables, key_mask, cache, output_attentions)
            if output_attentions:
                attentions.append(w)
        if cache is not None:
            cache.seen_tokens += T
        if c.final_layer_norm:
            x = self.transformer.ln_f(x)
        if hasattr(self.transformer, "project_out"):
            x = self.transformer.project_out(x)  # [B, T, C] -> [B, T, E]
        if logits_to_keep:
            x = x[:, -logits_to_keep:]
        if c.tie_word_embeddings:  # [B, T, E] -> [B, T, V]
            logits = F.linear(x, self.transformer.wte.weight,
                              self.lm_head.bias if c.lm_head_bias else None)
        else:
            logits = self.lm_head(x)

        loss = None
        if targets is not None and labels is not None:
            raise ValueError("GPT: pass targets (nanoGPT) or labels (Hugging Face), not both")
        if targets is not None:
            loss = F.cross_entropy(logits, _ids(targets, (B, logits.shape[1]), "targets"))
        elif labels is not None:
            lab = _ids(labels, (B, T), "labels")
            loss = F.cross_entropy(logits[:, :-1], lab[:, 1:])  # predict token t+1 from t
        return ModelOutput(logits=logits, loss=loss, attentions=attentions, cache=cache)

    def _positions_and_mask(self, B, T, past, attention_mask, cache):
        """Absolute positions (B, T) of the new tokens and the key mask (B, 1, 1, S)."""
        xp = backend.xp
        if attention_mask is None and cache is not None and cache.attention_mask is not None:
            attention_mask = xp.concatenate(
                [cache.attention_mask, xp.ones((B, T), dtype=cache.attention_mask.dtype)], 1)
        if attention_mask is None:
            return xp.broadcast_to(xp.arange(past, past + T), (B, T)), None
        m = attention_mask.data if isinstance(attention_mask, Tensor) else attention_mask
        m = xp.asarray(m)
        if m.shape != (B, past + T):
            raise ValueError(f"GPT: attention_mask must have shape (B, past + T) = "
                             f"{(B, past + T)}, got {tuple(m.shape)}")
        if cache is not None:
            cache.attention_mask = m
        # Positions count real tokens only, so a left-padded row matches its unpadded run.
        positions = xp.maximum(xp.cumsum(m.astype(np.int64), axis=1) - 1, 0)[:, -T:]
        return positions, m.astype(bool)[:, None, None, :]

    def _rope_tables(self, positions, dtype):
        c = self.config
        if bool((positions == positions[:1]).all()):  # same positions in every row
            return rope_cos_sin(positions[0], c.rotary_dims, c.rope_theta, dtype)
        tables = [rope_cos_sin(p, c.rotary_dims, c.rope_theta, dtype) for p in positions]
        return (backend.xp.stack([t[0] for t in tables]),
                backend.xp.stack([t[1] for t in tables]))

    # -- generation ----------------------------------------------------------------------------
    @no_grad()
    def generate(self, idx, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 repetition_penalty: float = 1.0, do_sample: bool = True,
                 eos_token_id: int | list[int] | None = None, seed: int | None = None,
                 attention_mask=None, pad_token_id: int | None = None):
        """Continue ``idx`` (B, T) by up to ``max_new_tokens`` tokens; returns (B, T + n) ids.

        Hugging Face semantics: repetition_penalty divides positive and multiplies negative
        logits of tokens already present (a row's left padding excluded, as transformers 5);
        then temperature, top-k, top-p (smallest set whose probability reaches p). Greedy when
        ``do_sample=False`` or ``temperature == 0``. A row stops at ``eos_token_id`` (one id
        or a list; a checkpoint's own is in ``config.extra``: transformers' generate uses it
        by default, tinygpt only when given) and is then filled with ``pad_token_id`` (the
        first eos id if None); generation ends when every row has stopped.
        """
        ids = idx.data if isinstance(idx, Tensor) else backend.xp.asarray(idx)
        if ids.ndim == 1:
            ids = ids[None, :]
        out = [ids]
        for token in self.stream(ids, max_new_tokens, temperature=temperature, top_k=top_k,
                                 top_p=top_p, repetition_penalty=repetition_penalty,
                                 do_sample=do_sample, eos_token_id=eos_token_id, seed=seed,
                                 attention_mask=attention_mask, pad_token_id=pad_token_id):
            out.append(token[:, None])
        return backend.xp.concatenate(out, axis=1)

    @no_grad()
    def stream(self, idx, max_new_tokens: int, temperature: float = 1.0,
               top_k: int | None = None, top_p: float | None = None,
               repetition_penalty: float = 1.0, do_sample: bool = True,
               eos_token_id: int | list[int] | None = None, seed: int | None = None,
               attention_mask=None, pad_token_id: int | None = None) -> Iterator:
        """Like :meth:`generate` but yields each new token column (B,) as it is chosen."""
        _check_sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty)
        c = self.config
        eos = [] if eos_token_id is None else (
            list(eos_token_id) if isinstance(eos_token_id, (list, tuple)) else [eos_token_id])
        for name, value in [*(("eos_token_id", e) for e in eos), ("pad_token_id", pad_token_id)]:
            if value is not None and (
                    not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                    or not 0 <= value < c.vocab_size):  # it could never be produced
                raise ValueError(f"generate: {name} must be a token id in 0..{c.vocab_size - 1}"
                                 f", got {value!r}")
        if eos_token_id is not None and not eos:
            raise ValueError("generate: eos_token_id is an empty list; give None for no eos")
        fill = eos[0] if eos and pad_token_id is None else pad_token_id
        xp = backend.xp
        ids = idx.data if isinstance(idx, Tensor) else xp.asarray(idx)
        if ids.ndim == 1:
            ids = ids[None, :]
        if ids.shape[1] == 0:
            raise ValueError("generate: the prompt is empty; give at least one token")
        learned = c.position_embedding == "learned"
        if learned and ids.shape[1] > c.block_size:
            warnings.warn(f"generate: prompt of {ids.shape[1]} tokens is longer than block_size "
                          f"{c.block_size}; keeping the last {c.block_size}", stacklevel=3)
            ids = ids[:, -c.block_size:]
            if attention_mask is not None:
                attention_mask = xp.asarray(attention_mask)[:, -c.block_size:]
        rng = np.random.default_rng(seed) if seed is not None else _random.generator()
        was_training = self.training
        self.eval()
        try:
            mask = None if attention_mask is None else xp.asarray(attention_mask)
            cache = KVCache(c.n_layer)
            logits = self(ids, attention_mask=mask, cache=cache, logits_to_keep=1).logits
            seen = penalised = ids
            if mask is not None and repetition_penalty != 1.0:
                # transformers leaves each row's left padding out of the penalty: those
                # positions repeat the row's first real token, which is penalised anyway
                first = (mask != 0).argmax(axis=1)
                rows = xp.arange(ids.shape[0])
                padding = xp.arange(ids.shape[1])[None, :] < first[:, None]
                penalised = xp.where(padding, ids[rows, first][:, None], ids)
            done = xp.zeros(ids.shape[0], dtype=bool)
            eos_ids = xp.asarray(eos, dtype=np.int64)
            for _ in range(max_new_tokens):
                last = logits.data[:, -1, :].astype(np.float64)  # [B, V]
                nxt = sample_next(last, penalised, temperature, top_k, top_p,
                                  repetition_penalty, do_sample, rng)
                if eos:
                    nxt = xp.where(done, fill, nxt)
                    done |= xp.isin(nxt, eos_ids)
                yield nxt
                if eos and bool(done.all()):
                    return
                seen = xp.concatenate([seen, nxt[:, None]], axis=1)
                penalised = xp.concatenate([penalised, nxt[:, None]], axis=1)
                if learned and cache.seen_tokens >= c.block_size:
                    # out of learned positions: recompute on the last block_size tokens
                    cache = KVCache(c.n_layer)
                    window = seen[:, -c.block_size:]
                    wmask = None if mask is None else cache_mask(mask, seen)[:, -c.block_size:]
                    logits = self(window, attention_mask=wmask, cache=cache,
                                  logits_to_keep=1).logits
                    continue
                logits = self(nxt[:, None], cache=cache, logits_to_keep=1).logits
        finally:
            self.train(was_training)

    # -- Hugging Face checkpoints -------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path) -> GPT:
        """Load a local Hugging Face directory (config.json + model.safetensors)."""
        from tinygpt.io.hf import load_pretrained

        return load_pretrained(path)

    def save_pretrained(self, path, model_type: str | None = None) -> None:
        """Write config.json + model.safetensors that transformers can load."""
        from tinygpt.io.hf import save_pretrained

        save_pretrained(self, path, model_type)


def cache_mask(mask, seen):
    """Extend a padding mask with ones for tokens generated after it."""
    xp = backend.array_module(mask)
    extra = seen.shape[1] - mask.shape[1]
    return xp.concatenate([mask, xp.ones((mask.shape[0], extra), dtype=mask.dtype)], axis=1)


def _ids(x, shape, name):
    a = x.data if isinstance(x, Tensor) else backend.xp.asarray(x)
    if tuple(a.shape) != tuple(shape):
        raise ValueError(f"GPT: {name} must have shape {tuple(shape)}, got {tuple(a.shape)}")
    return a


# ------------------------------------------------------------------------------ sampling


def _check_sampling(max_new_tokens, temperature, top_k, top_p, repetition_penalty) -> None:
    def number(v):  # NaN compares False with everything: it must not slip through as "ok"
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
            v, bool) and math.isfinite(v)

    if (not isinstance(max_new_tokens, (int, np.integer)) or isinstance(max_new_tokens, bool)
            or max_new_tokens < 0):
        raise ValueError(f"generate: max_new_tokens must be an integer >= 0, "
                         f"got {max_new_tokens!r}")
    if not number(temperature) or temperature < 0:
        raise ValueError(f"generate: temperature must be a finite number >= 0, "
                         f"got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool)
                              or top_k < 1):
        raise ValueError(f"generate: top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (not number(top_p) or not 0 < top_p <= 1):
        raise ValueError(f"generate: top_p must be in (0, 1], got {top_p!r}")
    if not number(repetition_penalty) or repetition_penalty <= 0:
        raise ValueError(f"generate: repetition_penalty must be a finite number > 0, got "
                         f"{repetition_penalty!r}")


def apply_repetition_penalty(logits, seen, penalty: float):
    """HF's rule: for every token id already in ``seen``, divide its logit by ``penalty``
    if positive, multiply if negative (so it always becomes less likely for penalty > 1)."""
    if penalty == 1.0:
        return logits
    xp = backend.array_module(logits)
    logits = logits.copy()
    rows = xp.arange(logits.shape[0])[:, None]
    picked = logits[rows, seen]
    logits[rows, seen] = xp.where(picked > 0, picked / penalty, picked * penalty)
    return logits


def top_k_filter(logits, k: int):
    """Keep the k largest logits per row (ties with the k-th kept, like HF); -inf elsewhere."""
    xp = backend.array_module(logits)
    k = min(k, logits.shape[-1])
    kth = xp.sort(logits, axis=-1)[:, -k][:, None]
    return xp.where(logits < kth, -xp.inf, logits)


def top_p_filter(logits, p: float):
    """Keep the smallest set of most likely tokens whose probability reaches ``p``.

    Among equal logits at the cut, the later token (higher id) is kept, as Hugging Face's
    TopPLogitsWarper does (it sorts ascending and drops from the front)."""
    xp = backend.array_module(logits)
    order = xp.argsort(logits, axis=-1, kind="stable")[..., ::-1]  # most likely first
    sorted_logits = xp.take_along_axis(logits, order, axis=-1)
    probs = _softmax(sorted_logits)
    before = xp.cumsum(probs, axis=-1) - probs  # mass strictly before each token
    drop_sorted = before >= p  # once p is reached, the rest go (the top token always stays)
    drop = xp.zeros_like(drop_sorted)
    xp.put_along_axis(drop, order, drop_sorted, axis=-1)
    return xp.where(drop, -xp.inf, logits)


def _softmax(z):
    xp = backend.array_module(z)
    e = xp.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sample_next(logits, seen, temperature, top_k, top_p, repetition_penalty, do_sample, rng):
    """Choose the next token of each row from (B, V) logits."""
    xp = backend.array_module(logits)
    logits = apply_repetition_penalty(logits, seen, repetition_penalty)
    if not do_sample or temperature == 0:
        return xp.argmax(logits, axis=-1)
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None and top_p < 1.0:
        logits = top_p_filter(logits, top_p)
    probs = backend.to_numpy(_softmax(logits))
    # inverse-CDF sampling from the seeded host generator: reproducible on any device
    u = rng.random((probs.shape[0], 1))
    choice = (np.cumsum(probs, axis=-1) < u).sum(axis=-1)
    return xp.asarray(np.minimum(choice, probs.shape[-1] - 1))
