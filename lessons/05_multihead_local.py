# %% [markdown]
# # Lesson 5: many heads, and global versus local attention
#
# One head computes one pattern of "who looks at whom". A transformer layer runs several
# heads side by side, each on its own slice of the features, so one head can follow the
# previous token while another looks for matching words. Then we meet the second axis of
# design: does every position look at *all* earlier positions (**global** attention), or
# only at the last `window` of them (**local**, sliding-window attention, as in GPT-Neo's
# odd layers)? Local attention costs O(T * window) instead of O(T^2), and we measure it.

# %%
import functools
import tracemalloc

import matplotlib.pyplot as plt
import numpy as np
from _common import best_time, notice, setup

import tinygpt as tg
import tinygpt.functional as F
from tinygpt.kernels import reference
from tinygpt.model import CausalSelfAttention, GPTConfig

lesson = setup(5, "multi-head, global vs local (sliding-window) attention")

# %% [markdown]
# ## Multi-head attention is a reshape
#
# With width C and H heads, each head gets D = C / H features. One matrix `c_attn` makes
# q, k and v for all heads at once; a reshape and a transpose put the heads next to the
# batch dimension, so one batched matrix product serves every head. Here are the shapes,
# step by step, through the attention module of tinygpt's model.

# %%
tg.manual_seed(0)
config = GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=4, n_embd=32)
attn = CausalSelfAttention(config, layer_idx=0)
B, T, C, H = 2, 10, config.n_embd, config.n_head
D = C // H
x = tg.randn(B, T, C)

qkv = attn.c_attn(x)
print(f"x               {x.shape}   (B, T, C)")
print(f"c_attn(x)       {qkv.shape}   (B, T, 3C)")
q, k, v = qkv.split(C, dim=2)
print(f"q, k, v         {q.shape}   each (B, T, C)")
q = q.reshape(B, T, H, D).transpose(1, 2)
k = k.reshape(B, T, H, D).transpose(1, 2)
v = v.reshape(B, T, H, D).transpose(1, 2)
print(f"split in heads  {q.shape}  (B, H, T, D)")
y, w = F.scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)
print(f"attention       {y.shape}  (B, H, T, D), weights {w.shape}")
y = y.transpose(1, 2).reshape(B, T, C)
print(f"heads merged    {y.shape}   (B, T, C)")
out = attn.c_proj(y)
print(f"c_proj          {out.shape}   (B, T, C)")

same, _ = attn(x, None, None, None, False)  # the module does exactly these steps
print("module output matches:", np.allclose(same.numpy(), out.numpy(), atol=1e-6))
for heads in (1, 4, 8):
    cfg = GPTConfig(vocab_size=16, block_size=32, n_layer=1, n_head=heads, n_embd=32)
    print(f"{heads} head(s) of size {32 // heads:2d}: "
          f"{CausalSelfAttention(cfg, 0).num_parameters()} parameters")

# %% [markdown]
# The parameter count does not depend on the number of heads: more heads means smaller
# heads, not more weights.
#
# ## Global and local masks
#
# `allowed_keys(T, S, causal, window)` in `kernels/reference.py` is the whole definition:
# query i may see key j when j <= i (causal) and, with a window, when j > i - window.

# %%
T_draw, window = 16, 4
masks = {
    "global (causal)": reference.allowed_keys(T_draw, T_draw, True, None, np),
    f"local, window {window}": reference.allowed_keys(T_draw, T_draw, True, window, np),
}
fig, axes = plt.subplots(1, 2, figsize=(8, 4))
for ax, (title, m) in zip(axes, masks.items()):
    ax.imshow(m, cmap="Greens", vmin=0, vmax=1.3)
    ax.set_title(f"{title}: {int(m.sum())} pairs", fontsize=10)
    ax.set_xlabel("key j")
    ax.set_ylabel("query i")
lesson.savefig(fig, "masks")

# %% [markdown]
# ## A local layer still reaches far, through depth
#
# One local layer sees `window` tokens back. But the next layer's query reads positions
# that already mixed in *their* windows, so after n local layers information can travel
# n * (window - 1) positions. Reachability is a boolean matrix product: j reaches i in two
# layers if some position m sees j and is seen by i. GPT-Neo alternates global and local
# layers, so it mixes both.

# %%
local = masks[f"local, window {window}"].astype(int)
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
reach = np.eye(T_draw, dtype=int)
for n, ax in enumerate(axes, start=1):
    reach = np.minimum(local @ reach, 1)  # one more local layer
    ax.imshow(reach, cmap="Oranges", vmin=0, vmax=1.3)
    ax.set_title(f"after {n} local layer(s): reach {n * (window - 1)} back", fontsize=10)
    ax.set_xlabel("source position j")
    ax.set_ylabel("position i")
    assert (reach.sum(1) == np.minimum(np.arange(T_draw), n * (window - 1)) + 1).all()
lesson.savefig(fig, "receptive_field")

# %% [markdown]
# ## Cost and memory as T grows
#
# The readable reference (`reference.attention_forward`) builds the whole (T, T) score
# matrix and masks it, so a window saves nothing there. tinygpt's numba kernel (what
# `F.scaled_dot_product_attention` runs on the CPU) works on tiles of 128 queries and only
# computes the keys a tile can see: for a local layer that is at most 128 + window keys,
# whatever T is. (It also takes a tile's keys in chunks, with FlashAttention's online
# softmax: a running max and sum per query, and the output so far rescaled when they
# change; so even for a global layer a tile stops growing at 4096 keys.) We time the
# forward pass and record its peak memory with `tracemalloc` (NumPy reports its
# allocations to it).

# %%
H_cost, D_cost, window_cost = 4, 32, 64
lengths = lesson.pick([256, 512, 1024, 2048], [128, 256, 512])


def forward(impl, q, k, v, window):
    """One attention forward pass: the readable reference, or the kernel behind F."""
    if impl == "reference":
        return reference.attention_forward(q.data, k.data, v.data, True, window)
    with tg.no_grad():
        return F.scaled_dot_product_attention(q, k, v, window=window)


def measure(impl, q, k, v, window):
    """(best time in seconds, peak bytes allocated) of one forward pass."""
    run = functools.partial(forward, impl, q, k, v, window)
    run()  # warm up (numba loads its compiled code on the first call)
    seconds = best_time(run, repeat=lesson.pick(3, 2))
    tracemalloc.start()
    run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak


rows = []
for T_cost in lengths:
    qa, ka, va = (tg.randn(1, H_cost, T_cost, D_cost) for _ in range(3))
    for kind, w in (("global", None), ("local", window_cost)):
        for impl in ("reference", "kernel"):
            rows.append((T_cost, kind, impl, *measure(impl, qa, ka, va, w)))

print(f"{'T':>5} {'attention':>9} {'implementation':>15} {'time (ms)':>10} {'peak MiB':>9}")
for T_cost, kind, impl, seconds, peak in rows:
    print(f"{T_cost:5d} {kind:>9} {impl:>15} {seconds * 1e3:10.2f} {peak / 2**20:9.2f}")

fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(12, 4))
for kind, impl, style in (("global", "reference", "o--"), ("local", "reference", "s--"),
                          ("global", "kernel", "o-"), ("local", "kernel", "s-")):
    pts = [(r[0], r[3], r[4]) for r in rows if r[1] == kind and r[2] == impl]
    Ts, secs, peaks = zip(*pts)
    label = f"{kind}, {impl}" + (f" (window {window_cost})" if kind == "local" else "")
    ax_t.plot(Ts, np.array(secs) * 1e3, style, label=label)
    ax_m.plot(Ts, np.array(peaks) / 2**20, style, label=label)
ax_t.set_ylabel("forward time (ms)")
ax_m.set_ylabel("peak memory (MiB)")
for ax in (ax_t, ax_m):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(lengths, [str(n) for n in lengths])
    ax.set_xlabel("sequence length T")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
ax_t.set_title(f"time, {H_cost} heads of size {D_cost}")
ax_m.set_title("peak memory of one forward pass")
lesson.savefig(fig, "cost_vs_T")


def growth(kind, impl, column):
    """How much the cost grew from the shortest to the longest T."""
    pts = [r[column] for r in rows if r[1] == kind and r[2] == impl]
    return pts[-1] / pts[0]


ratio = lengths[-1] // lengths[0]
print(f"\nT grew {ratio}x. Linear growth would be {ratio}x, quadratic {ratio ** 2}x.")
for kind, impl in (("global", "reference"), ("local", "reference"), ("global", "kernel"),
                   ("local", "kernel")):
    print(f"  {kind:6s} {impl:9s}: time grew {growth(kind, impl, 3):6.1f}x, "
          f"peak memory {growth(kind, impl, 4):6.1f}x")
notice("the reference pays for the full T x T matrix, window or not: quadratic memory",
       "the kernel's local attention grows roughly linearly: its tiles never get wider than "
       "128 + window keys, only the outputs grow with T",
       "global attention in the kernel still does quadratic work; tiling saves memory, "
       "not arithmetic, which is why long-context models use local layers")
