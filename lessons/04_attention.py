# %% [markdown]
# # Lesson 4: attention from scratch
#
# A language model reads a sequence of token vectors and, at every position, has to
# gather information from the positions before it. **Attention** is the mechanism:
#
# - each position emits a **query** q ("what am I looking for?"), a **key** k ("what do
#   I contain?") and a **value** v ("what do I pass on if chosen?"), all linear maps of
#   its vector;
# - the **score** of query i for key j is the dot product q_i . k_j, scaled by 1/sqrt(d);
# - a **causal mask** forbids looking ahead: scores of keys j > i become -inf;
# - a softmax over each row turns scores into weights that sum to 1, and the output at
#   position i is the weighted average of the values.
#
# In one line: `softmax(q k^T / sqrt(d) + mask) v`. We write it with tinygpt Tensors,
# check it against the fused `F.scaled_dot_product_attention`, see why the scale is
# there, and draw an attention map.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
import tinygpt.functional as F
from tinygpt.viz import plot_attention

lesson = setup(4, "attention from scratch: one head, the causal mask, an attention map")

# %% [markdown]
# ## One head, step by step
#
# Five positions with vectors of size 4; random projections stand in for trained ones.

# %%
tg.manual_seed(0)
T, C, D = 5, 4, 4  # positions, model width, head width
x = tg.randn(T, C)
W_q, W_k, W_v = tg.randn(C, D), tg.randn(C, D), tg.randn(C, D)

q, k, v = x @ W_q, x @ W_k, x @ W_v  # [T, C] @ [C, D] -> [T, D]
scores = (q @ k.T) * (1 / math.sqrt(D))  # [T, D] @ [D, T] -> [T, T]
future = tg.triu(tg.ones(T, T), 1).numpy().astype(bool)  # True above the diagonal: j > i
masked = scores.masked_fill(future, -math.inf)
weights = F.softmax(masked, -1)
out = weights @ v  # [T, T] @ [T, D] -> [T, D]

np.set_printoptions(precision=2, suppress=True)
print("scores:\n", scores.numpy())
print("after the causal mask:\n", masked.numpy())
print("weights (each row sums to 1):\n", weights.numpy())
print("row sums:", weights.numpy().sum(1))

fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
panels = [(scores.numpy(), "scores q.k / sqrt(d)", "RdBu_r"),
          (np.where(future, np.nan, masked.numpy()), "causal mask: j > i removed", "RdBu_r"),
          (weights.numpy(), "softmax: attention weights", "Blues")]
limit = np.abs(scores.numpy()).max()  # one symmetric scale for both score panels
for ax, (m, title, cmap) in zip(axes, panels):
    vmin, vmax = (-limit, limit) if cmap == "RdBu_r" else (0, 1)
    image = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("key j")
    ax.set_ylabel("query i")
    fig.colorbar(image, ax=ax, shrink=0.8)
lesson.savefig(fig, "one_head_step_by_step")

notice("the first row has a single allowed key (itself), so its weight is exactly 1",
       "masked entries are -inf before the softmax and exactly 0 after it",
       "each output row is a convex mix of the value rows it may see")

# %% [markdown]
# ## The same thing, fused
#
# `F.scaled_dot_product_attention(q, k, v, causal=True)` does all of the above in one
# autograd node, on (batch, heads, T, D) tensors. Its kernel never stores the full
# weight matrix for the backward pass (it recomputes it tile by tile), but the numbers are
# the ones we just computed, and so are the gradients.

# %%
q4, k4, v4 = (t.detach().reshape(1, 1, T, D) for t in (q, k, v))
for t in (q4, k4, v4):
    t.requires_grad_()
fused, fused_weights = F.scaled_dot_product_attention(q4, k4, v4, causal=True,
                                                      return_weights=True)
print("outputs agree:", np.allclose(fused.numpy()[0, 0], out.numpy(), atol=1e-5))
print("weights agree:", np.allclose(fused_weights.numpy()[0, 0], weights.numpy(), atol=1e-6))

upstream = tg.randn(1, 1, T, D)  # any gradient arriving from above
(fused * upstream).sum().backward()
fused_grads = [t.grad.copy() for t in (q4, k4, v4)]
for t in (q4, k4, v4):
    t.grad = None
by_hand = F.softmax((q4 @ k4.transpose(-2, -1) * (1 / math.sqrt(D))).masked_fill(future,
                                                                                -math.inf), -1)
((by_hand @ v4) * upstream).sum().backward()
for name, t, g in zip("qkv", (q4, k4, v4), fused_grads):
    print(f"d/d{name} agree:", np.allclose(g, t.grad, atol=1e-5))

# %% [markdown]
# ## Why divide by sqrt(d)?
#
# If q and k have unit-variance entries, q . k is a sum of d products and its standard
# deviation grows like sqrt(d). Large scores make the softmax nearly one-hot: one key gets
# all the weight and the gradients through the others vanish. Dividing by sqrt(d) keeps
# the scores at unit scale whatever the head size. We measure the entropy of the weight
# rows (log of the number of keys a query effectively spreads over) for random q, k.

# %%
T_scale = 64
dims = [4, 16, 64, 256, 1024] if not lesson.quick else [4, 64, 1024]
entropy = {"scaled by 1/sqrt(d)": [], "unscaled": []}
for d in dims:
    qd, kd, vd = (tg.randn(16, 1, T_scale, d) for _ in range(3))  # 16 random draws
    for label, scale in (("scaled by 1/sqrt(d)", None), ("unscaled", 1.0)):
        _, w = F.scaled_dot_product_attention(qd, kd, vd, causal=True, scale=scale,
                                              return_weights=True)
        p = w.numpy()[:, 0, -1]  # the last query of each draw sees all 64 keys
        row_entropy = -(p * np.log(np.where(p > 0, p, 1))).sum(-1)
        entropy[label].append(float(row_entropy.mean()))

fig, ax = plt.subplots(figsize=(6.5, 4))
for label, values in entropy.items():
    ax.semilogx(dims, values, marker="o", label=label, base=2)
ax.axhline(math.log(T_scale), color="gray", ls=":", label=f"uniform over {T_scale} keys")
ax.set_xlabel("head size d")
ax.set_ylabel("entropy of the attention row (nats)")
ax.set_title("without the scale, attention collapses onto one key as d grows")
ax.legend()
lesson.savefig(fig, "why_scale")
for d, s, u in zip(dims, entropy["scaled by 1/sqrt(d)"], entropy["unscaled"]):
    print(f"d={d:5d}: entropy scaled {s:.2f}, unscaled {u:.2f}  (uniform: {math.log(T_scale):.2f})")

# %% [markdown]
# ## An attention map you can read
#
# Random weights give blurry maps. Let us *build* a head whose job we know: with each
# token's vector a one-hot of its character and W_q = W_k = 3 I, the score is high exactly
# when two characters are equal. So each position attends to the earlier occurrences of
# its own character (and to itself). Trained models do learn heads like this one, as
# lesson 11 shows.

# %%
text = "the cat sat on the mat"
chars = sorted(set(text))
one_hot = np.eye(len(chars), dtype=np.float32)[[chars.index(ch) for ch in text]]
x = tg.tensor(one_hot).reshape(1, 1, len(text), len(chars))
q = k = x * 3.0
_, match_weights = F.scaled_dot_product_attention(q, k, x, causal=True, scale=1.0,
                                                  return_weights=True)
fig = plot_attention(match_weights, list(text), layer=0, head=0)
fig.suptitle("a hand-built 'same character' head", fontsize=10)
lesson.savefig(fig, "attention_map")

w = match_weights.numpy()[0, 0]
second_t = text.index("t", 1)
print(f"query {second_t} ({text[second_t]!r}) spreads its weight over keys",
      {int(j): round(float(w[second_t, j]), 2) for j in np.nonzero(w[second_t] > 0.05)[0]})
notice("every 't' attends to the earlier 't's, every space to the earlier spaces",
       "the upper triangle is empty: the causal mask at work",
       "a row's weight is shared by all matches, so one match gets 1/(number of matches)")
