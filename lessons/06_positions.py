# %% [markdown]
# # Lesson 6: positions, learned and rotary (RoPE)
#
# Attention compares every query with every key by a dot product, and nothing in that
# comparison says *where* the tokens are. Without help, "dog bites man" and "man bites
# dog" look the same. Two remedies appear in the GPT family:
#
# - **learned absolute positions** (GPT-2, GPT-Neo, OPT): a table `wpe` with one learned
#   vector per position, added to the token embedding;
# - **rotary position embedding, RoPE** (GPT-NeoX, GPT-J, Llama): no table; instead q and
#   k are *rotated* by an angle proportional to their position, pair of features by pair
#   of features, so the score between them depends on how far apart they are.
#
# We first watch attention ignore order, then look at RoPE's rotations and check its
# central property numerically: the score depends only on the *relative* position.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
import tinygpt.functional as F
from tinygpt.kernels.reference import rope_cos_sin
from tinygpt.model import GPT, GPTConfig
from tinygpt.viz import plot_rope

lesson = setup(6, "positions: learned vs RoPE")

# %% [markdown]
# ## Without positions, order is invisible
#
# A one-layer model with `position_embedding="none"`: we shuffle the earlier tokens of a
# sequence and look at the prediction at the last position. It does not change (beyond
# float rounding), because the last query sees the same *set* of keys, only in another
# order. With learned or rotary positions, it does. (With more layers the earlier
# positions' own outputs would depend on which prefix each one saw, so the causal mask
# alone leaks a little order information; one layer shows the pure effect.)

# %%
tg.manual_seed(0)
tokens = np.array([[5, 3, 9, 1, 7, 2, 8, 4]])
shuffled = np.concatenate([np.random.default_rng(1).permutation(tokens[0, :-1]),
                           tokens[0, -1:]])[None]
print("tokens  ", tokens[0], "\nshuffled", shuffled[0], "(same last token)")
for kind in ("none", "learned", "rope"):
    tg.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, n_embd=32,
                          position_embedding=kind))
    with tg.no_grad():
        a = model(tokens).logits.numpy()[0, -1]
        b = model(shuffled).logits.numpy()[0, -1]
    print(f"position_embedding={kind!r:10}: last logits change by {np.abs(a - b).max():.2e}")

# %% [markdown]
# ## Learned positions are a table
#
# GPT-2 adds `wpe[position]` to each token's embedding. The table has `block_size` rows,
# which is also the model's hard limit: there is no vector for position 16 of a model
# trained with 16.

# %%
model = GPT(GPTConfig(vocab_size=16, block_size=16, n_layer=1, n_head=2, n_embd=32))
print("wpe:", model.transformer.wpe.weight.shape, "(block_size, n_embd)")
try:
    model(np.zeros((1, 17), dtype=np.int64))
except ValueError as err:
    print("17 tokens:", err)

# %% [markdown]
# ## RoPE rotates pairs of features
#
# RoPE splits a head's features into pairs. Pair i turns by the angle
# `position * theta^(-2i/R)` (theta = 10000, R the number of rotating features), so the
# first pairs spin fast and the last ones barely move. GPT-NeoX pairs feature i with
# i + R/2 ("rotate half"); GPT-J pairs neighbours 2i and 2i+1. We rotate the same vector
# at positions 0..11 with `F.rope` and draw three of its pairs.

# %%
R, T_rot = 16, 12
cos, sin = rope_cos_sin(np.arange(T_rot), R)  # (T, R/2) each
x = tg.ones(T_rot, R)  # the same vector at every position
rotated = F.rope(x, cos, sin, style="neox").numpy()

fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, pair in zip(axes, (0, 2, 4)):
    xs, ys = rotated[:, pair], rotated[:, pair + R // 2]  # neox: feature i with i + R/2
    colors = plt.cm.viridis(np.linspace(0, 1, T_rot))
    for pos in range(T_rot):
        ax.annotate("", xy=(xs[pos], ys[pos]), xytext=(0, 0),
                    arrowprops=dict(arrowstyle="->", color=colors[pos]))
        ax.text(xs[pos] * 1.12, ys[pos] * 1.12, str(pos), fontsize=7, ha="center")
    freq = 10000 ** (-2 * pair / R)
    ax.set_title(f"pair {pair}: {np.degrees(freq):.2g} degrees per position", fontsize=10)
    ax.set_xlim(-1.8, 1.8)
    ax.set_ylim(-1.8, 1.8)
    ax.set_aspect("equal")
    ax.axhline(0, color="#ddd", lw=0.5)
    ax.axvline(0, color="#ddd", lw=0.5)
fig.suptitle("the vector (1, 1) of one feature pair, rotated at positions 0..11")
lesson.savefig(fig, "rope_rotations")
print("lengths are kept:", np.allclose(np.hypot(rotated[:, :R // 2], rotated[:, R // 2:]),
                                       np.sqrt(2)))

# %% [markdown]
# `tinygpt.viz.plot_rope` shows all pairs at once: the cosine of each pair's angle per
# position (left), and how the score between two equal vectors changes with their
# distance (right).

# %%
lesson.savefig(plot_rope(rotary_dim=64, max_position=lesson.pick(256, 128)), "rope_tables")

# %% [markdown]
# ## The relative-position property
#
# Rotating q by angle a and k by angle b changes their dot product into one that depends
# on a - b only: rotations preserve lengths, and the relative angle is what is left. So
# with RoPE, score(query at m, key at n) depends on m - n, not on m and n. We check it:
# rotate one q to every position m and one k to every position n, and compare scores along
# each diagonal m - n = constant. We also start the positions at 1000 instead of 0.

# %%
rng = np.random.default_rng(0)
D, T_rel = 16, lesson.pick(64, 32)
q_vec = rng.standard_normal(D).astype(np.float32)
k_vec = rng.standard_normal(D).astype(np.float32)


def score_matrix(start, style):
    """S[m, n] = rope(q, start + m) . rope(k, start + n)."""
    cos, sin = rope_cos_sin(np.arange(start, start + T_rel), D)
    qs = F.rope(tg.tensor(np.tile(q_vec, (T_rel, 1))), cos, sin, style)
    ks = F.rope(tg.tensor(np.tile(k_vec, (T_rel, 1))), cos, sin, style)
    return (qs @ ks.T).numpy()


for style in ("neox", "gptj"):
    S = score_matrix(0, style)
    spread = max(np.ptp(np.diagonal(S, offset=-d)) for d in range(T_rel))
    far = score_matrix(1000, style)
    print(f"{style}: largest spread along a diagonal {spread:.1e}; "
          f"positions 0.. vs 1000..: max difference {np.abs(S - far).max():.1e}")
print(f"scores range over {S.min():.2f} .. {S.max():.2f}, so both numbers are rounding")

S = score_matrix(0, "neox")
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
image = left.imshow(S, cmap="RdBu_r")
left.set_xlabel("key position n")
left.set_ylabel("query position m")
left.set_title("q.k after RoPE: constant along every diagonal")
fig.colorbar(image, ax=left)
distance = np.arange(T_rel)
for start, style in ((0, "-"), (1000, "--")):
    Sx = score_matrix(start, "neox")
    right.plot(distance, [Sx[T_rel - 1, T_rel - 1 - d] for d in distance], style,
               label=f"query at position {start + T_rel - 1}")
right.set_xlabel("distance m - n")
right.set_ylabel("score")
right.set_title("score against distance, from two absolute positions")
right.legend()
lesson.savefig(fig, "relative_scores")

# %% [markdown]
# ## Partial rotation
#
# GPT-NeoX (Pythia) rotates only the first quarter of each head (`rotary_pct=0.25`) and
# GPT-J the first 64 features (`rotary_dim=64`); the rest carry content untouched. `F.rope`
# rotates as many features as the tables have pairs.

# %%
cos, sin = rope_cos_sin(np.arange(4), 4)  # rotate 4 of 16 features
y = F.rope(tg.ones(4, 16), cos, sin).numpy()
print("features 0..3 at position 3:", y[3, :4].round(3))
print("features 4..15 unchanged:   ", bool((y[:, 4:] == 1).all()))

notice("without positions, a model cannot tell the order of what came before",
       "each RoPE pair keeps its length and turns at its own speed",
       "the score matrix is constant along diagonals: RoPE scores see only m - n, "
       "so they are the same at position 1000 as at position 0")
