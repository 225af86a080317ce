# %% [markdown]
# # Lesson 7: the GPT block and the whole model
#
# We have every part: embeddings, attention (lessons 4 and 5), positions (lesson 6) and
# the MLP of lesson 2. A GPT stacks them:
#
# ```
# x = wte[tokens] + wpe[positions]           # (B, T, C)
# for each block:                            # the residual stream x flows through
#     x = x + attn(ln_1(x))                  # tokens exchange information
#     x = x + mlp(ln_2(x))                   # each token thinks on its own
# logits = ln_f(x) @ wte.T                   # (B, T, vocab): scores of the next token
# ```
#
# This lesson runs exactly that loop by hand against `tinygpt.model.GPT`, counts the
# parameters, and shows that GPT-2, GPT-Neo, GPT-NeoX (Pythia), GPT-J and OPT differ only
# by a few config switches.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
import tinygpt.functional as F
from tinygpt import nn
from tinygpt.model import GPT, PRESETS, GPTConfig

lesson = setup(7, "the GPT block and model: shapes, parameters, the family as switches")

# %% [markdown]
# ## A small GPT, printed

# %%
tg.manual_seed(0)
config = GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64)
model = GPT(config)
print(model)

# %% [markdown]
# ## The forward pass by hand
#
# We call the model's own modules one by one and print the shape at each step. The
# result must equal `model(idx).logits` to the last bit of float32 rounding.

# %%
B, T = 2, 8
idx = np.random.default_rng(0).integers(0, config.vocab_size, (B, T))
tr = model.transformer
x = tr.wte(idx)
print(f"wte(idx)             {x.shape}  token vectors (B, T, C)")
x = x + tr.wpe(np.arange(T))
print(f"+ wpe(positions)     {x.shape}  positions broadcast over the batch")
for i, block in enumerate(tr.h):
    a, _ = block.attn(block.ln_1(x), None, None, None, False)
    x = x + a
    print(f"block {i}: + attn      {x.shape}")
    x = x + block.mlp(block.ln_2(x))
    print(f"block {i}: + mlp       {x.shape}  (inside: {config.mlp_dim} wide)")
x = tr.ln_f(x)
logits = F.linear(x, tr.wte.weight)  # the head reuses the embedding matrix (tied)
print(f"logits               {logits.shape}  one score per vocabulary entry")

with tg.no_grad():
    reference = model(idx).logits
print("same as model(idx):", np.allclose(logits.numpy(), reference.numpy(), atol=1e-5))

# %% [markdown]
# ## A sanity check every training run should start with
#
# A fresh model spreads its bets almost evenly, so its loss should be close to
# ln(vocab_size): the cross-entropy of a uniform guess.

# %%
loss = model(idx[:, :-1], targets=idx[:, 1:]).loss.item()
print(f"initial loss {loss:.3f}   ln({config.vocab_size}) = {math.log(config.vocab_size):.3f}")

# %% [markdown]
# ## Where the parameters are
#
# Per block: `c_attn` (C x 3C) and `c_proj` (C x C) in attention, `c_fc` (C x 4C) and
# `c_proj` (4C x C) in the MLP: 12 C^2 weights, plus biases and layer norms (13 C).

# %%
C = config.n_embd
per_block = sum(p.numel() for p in tr.h[0].parameters())
print(f"one block: {per_block} parameters; 12 C^2 + 13 C = {12 * C * C + 13 * C}")
for name, p in model.named_parameters():
    if ".h.1." not in name:  # block 1 is a copy of block 0's shapes
        print(f"  {name:36s} {str(p.shape):10s} {p.numel():6d}")
print("total:", model.num_parameters())


def breakdown(cfg: GPTConfig) -> dict[str, int]:
    """Parameters by role, counted on a weightless ("meta") model."""
    parts = {"embeddings and LM head": 0, "attention": 0, "MLP": 0, "layer norms": 0}
    with nn.meta():  # shapes only: a 6-billion-parameter model costs no memory
        m = GPT(cfg)
    for name, p in m.named_parameters():
        if ".attn." in name:
            parts["attention"] += p.numel()
        elif ".mlp." in name:
            parts["MLP"] += p.numel()
        elif ".ln_" in name:
            parts["layer norms"] += p.numel()
        else:  # wte, wpe, OPT-350m's projections, an untied lm_head
            parts["embeddings and LM head"] += p.numel()
    return parts


names = ["gpt2", "gpt-neo-125M", "pythia-160m", "opt-125m", "gpt2-medium", "opt-350m",
         "gpt2-xl", "gpt-j-6B"]
counts = {name: breakdown(GPTConfig.from_preset(name)) for name in names}
for name in names:
    total = sum(counts[name].values())
    assert total == GPT.count_parameters(GPTConfig.from_preset(name))
    print(f"{name:14s} {total / 1e6:9.1f} M parameters")

fig, ax = plt.subplots(figsize=(9, 4))
left = np.zeros(len(names))
for part in counts["gpt2"]:
    share = np.array([counts[n][part] / sum(counts[n].values()) for n in names])
    ax.barh(names, share, left=left, label=part)
    left += share
ax.invert_yaxis()
ax.set_xlabel("share of the parameters")
ax.set_title("where the parameters live: the blocks take over as models grow")
ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=4, fontsize=8)
lesson.savefig(fig, "parameter_breakdown")

# %% [markdown]
# ## The family as config switches
#
# Each preset is a `GPTConfig`. Beyond the sizes, here is everything in which each one
# differs from GPT-2. In `model.py`, each switch is one visible `if` at the place it
# acts.

# %%
SIZES = {"vocab_size", "block_size", "n_layer", "n_head", "n_embd", "window_size"}
base = GPTConfig.from_preset("gpt2").to_dict()
families = ["gpt-neo-125M", "pythia-160m", "gpt-j-6B", "opt-125m", "opt-350m"]
for name in families:
    d = GPTConfig.from_preset(name).to_dict()
    diff = {k: v for k, v in d.items() if k not in SIZES and v != base[k]}
    layers = d.get("attention_layers")
    if layers:
        diff["attention_layers"] = f"{layers[:2]} repeated {len(layers) // 2} times"
    print(f"{name}:")
    for k, v in diff.items():
        print(f"    {k} = {v}")

# %% [markdown]
# Every family runs through the same forward pass. Shrunk to toy size (same switches,
# small widths), each one gives logits of the same shape:

# %%
tiny = dict(vocab_size=65, block_size=32, n_layer=2, n_head=4, n_embd=64, window_size=4)
for name in ["gpt2"] + families:
    overrides = dict(tiny)
    if "rotary_dim" in PRESETS[name]:
        overrides["rotary_dim"] = 8
    if "word_embed_proj_dim" in PRESETS[name]:
        overrides["word_embed_proj_dim"] = 32
    if "attention_layers" in PRESETS[name]:
        overrides["attention_layers"] = ["global", "local"]
    tg.manual_seed(0)
    m = GPT(GPTConfig.from_preset(name, **overrides))
    with tg.no_grad():
        out = m(idx)
    layout = "parallel" if m.config.parallel_residual else (
        "pre-LN" if m.config.pre_layer_norm else "post-LN")
    print(f"{name:13s} logits {out.logits.shape}  {m.num_parameters():7d} params, "
          f"{layout} residual, positions: {m.config.position_embedding}")

# %% [markdown]
# ## Three ways to wire a block
#
# The residual layout is the most visible of the switches.

# %%
layouts = {
    "pre-LN (GPT-2, Neo, OPT-125m)": ["x", "x + attn(ln_1(x))", "x + mlp(ln_2(x))"],
    "parallel (NeoX, GPT-J)": ["x", "x + attn(ln_1(x))\n   + mlp(ln_2(x))"],
    "post-LN (OPT-350m)": ["x", "ln_1(x + attn(x))", "ln_2(x + mlp(x))"],
}
fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
for ax, (title, steps) in zip(axes, layouts.items()):
    for i, text in enumerate(steps):
        y = 1 - i * 0.4
        ax.text(0.5, y, text, ha="center", va="center", family="monospace", fontsize=9,
                bbox=dict(boxstyle="round", fc="#eef" if i else "#efe", ec="#555"))
        if i:
            ax.annotate("", xy=(0.5, y + 0.1), xytext=(0.5, y + 0.3),
                        arrowprops=dict(arrowstyle="->"))
    ax.set_title(title, fontsize=10)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.2)
    ax.axis("off")
lesson.savefig(fig, "block_layouts")

notice("the hand-written loop and model(idx) agree: the model is nothing more",
       f"the initial loss sits near ln(V) = {math.log(config.vocab_size):.2f}",
       "one block holds 12 C^2 weights; the MLP is two thirds of them",
       "the five families differ in a handful of switches, not in code structure")
