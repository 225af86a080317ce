# %% [markdown]
# # Lesson 11: looking inside a trained model
#
# Attention weights are a window into a model: for every layer, head and position they
# say where the model looked. Some heads turn out to do one simple, nameable job. Two
# classics:
#
# - a **previous-token head** attends from each position to the one just before it;
# - an **induction head** completes patterns: if "A B" appeared earlier and the current
#   token is "A" again, it attends to the "B" that followed last time, so the model can
#   predict "B". It needs a previous-token head in an earlier layer to know "what came
#   before each token", which is why induction appears in two-layer models and not in
#   one-layer ones.
#
# We find both with a *score* per head, measured on sequences of random tokens repeated
# twice (random, so the only way to predict the second half is to copy from the first).
# First on a two-layer model trained right here on exactly that task, where we can watch
# the induction head appear and then switch it off; then, if lesson 8 has been run, on the
# Shakespeare model it trained.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
from tinygpt.model import GPT, GPTConfig
from tinygpt.train import load_checkpoint
from tinygpt.viz import plot_attention, token_labels

lesson = setup(11, "inside a trained model: attention maps, previous-token and induction heads")

# %% [markdown]
# ## The scores
#
# For a sequence `a a` made of a random half `a` repeated, with attention weights
# A[layer, head, query, key]:
#
# - previous-token score: the mean of A[i, i - 1] over all positions;
# - induction score: the mean, over queries i in the second half, of A[i, i - half + 1],
#   the position just after the earlier copy of token i.
#
# A head that does the job perfectly scores 1; a head spreading its attention evenly
# scores about 1/position.

# %%
def repeated_batch(rng, batch, half, vocab):
    """Random halves, each repeated: (batch, 2 * half) token ids."""
    a = rng.integers(0, vocab, (batch, half))
    return np.concatenate([a, a], axis=1)


def attention_maps(model, ids):
    """Weights (layers, batch, heads, T, T) for a batch of sequences."""
    with tg.no_grad():
        out = model(ids, output_attentions=True)
    return np.stack([a.numpy() for a in out.attentions])


def head_scores(maps, half):
    """(previous-token, induction) score of every head: two (layers, heads) arrays."""
    T = maps.shape[-1]
    q = np.arange(1, T)
    previous = maps[..., q, q - 1].mean(axis=(1, 3))
    q = np.arange(half, T)
    induction = maps[..., q, q - half + 1].mean(axis=(1, 3))
    return previous, induction


def split_losses(model, ids, half):
    """Mean next-token loss on the first half and on the (copyable) second half."""
    with tg.no_grad():
        logits = model(ids).logits.numpy().astype(np.float64)
    logp = logits - logits.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp[:, :-1], ids[:, 1:, None], -1)[..., 0]
    return nll[:, :half - 1].mean(), nll[:, half:].mean()


# %% [markdown]
# ## A two-layer model learns to copy
#
# Training data: random halves repeated. The first half cannot be predicted (loss stays at
# ln(vocab)); the second half can, perfectly, by copying. We record the loss on each half
# and the best induction score while training.

# %%
vocab, half = lesson.pick((48, 16), (32, 12))
n_head, n_embd = lesson.pick((4, 64), (2, 32))
steps = lesson.pick(300, 120)
tg.manual_seed(0)
model = GPT(GPTConfig(vocab_size=vocab, block_size=2 * half, n_layer=2, n_head=n_head,
                      n_embd=n_embd))
optimizer = model.configure_optimizers(lr=1e-2, weight_decay=0.0)
rng = np.random.default_rng(0)
probe = repeated_batch(np.random.default_rng(1), 64, half, vocab)  # fixed, for measuring
history = []
for step in range(steps + 1):
    if step % 10 == 0:
        first, second = split_losses(model, probe, half)
        _, induction = head_scores(attention_maps(model, probe), half)
        history.append((step, first, second, induction.max()))
    if step == steps:
        break
    ids = repeated_batch(rng, 32, half, vocab)
    loss = model(ids[:, :-1], targets=ids[:, 1:]).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

steps_seen, first_loss, second_loss, best_induction = map(np.array, zip(*history))
print(f"after {steps} steps: first-half loss {first_loss[-1]:.2f} (ln {vocab} = "
      f"{np.log(vocab):.2f}), second-half loss {second_loss[-1]:.3f}")

fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(steps_seen, first_loss, label="loss, first half (random)")
ax.plot(steps_seen, second_loss, label="loss, second half (a copy)")
ax.set_xlabel("training step")
ax.set_ylabel("next-token loss (nats)")
score_ax = ax.twinx()
score_ax.plot(steps_seen, best_induction, "k--", label="best induction score")
score_ax.set_ylabel("induction score")
score_ax.set_ylim(0, 1.05)
lines = ax.get_lines() + score_ax.get_lines()
ax.legend(lines, [line.get_label() for line in lines], loc="center right")
ax.set_title("the copy loss falls as an induction head forms")
lesson.savefig(fig, "induction_forms")

# %% [markdown]
# ## Every head, every layer
#
# The attention maps of all heads on one repeated sequence (`plot_attention` draws the
# layers as rows, the heads as columns), and the two scores per head.

# %%
example = probe[:1]
maps = attention_maps(model, probe)
previous, induction = head_scores(maps, half)
labels = [str(t) for t in example[0]]
with tg.no_grad():
    attentions = model(example, output_attentions=True).attentions
lesson.savefig(plot_attention(attentions, labels), "attention_grid")

fig, axes = plt.subplots(1, 2, figsize=(9, 3))
for ax, (name, score) in zip(axes, (("previous-token score", previous),
                                    ("induction score", induction))):
    image = ax.imshow(score, cmap="Purples", vmin=0, vmax=1)
    for (layer, head), value in np.ndenumerate(score):
        ax.text(head, layer, f"{value:.2f}", ha="center", va="center",
                color="white" if value > 0.5 else "black")
    ax.set_xticks(range(score.shape[1]))
    ax.set_yticks(range(score.shape[0]))
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    ax.set_title(name)
fig.colorbar(image, ax=axes, shrink=0.8)
lesson.savefig(fig, "head_scores")

prev_head = np.unravel_index(previous.argmax(), previous.shape)
ind_head = np.unravel_index(induction.argmax(), induction.shape)
print(f"best previous-token head: layer {prev_head[0]}, head {prev_head[1]} "
      f"(score {previous[prev_head]:.2f})")
print(f"best induction head:      layer {ind_head[0]}, head {ind_head[1]} "
      f"(score {induction[ind_head]:.2f})")

fig, axes = plt.subplots(1, 2, figsize=(12, 5.5))
for ax, (layer, head) in zip(axes, (prev_head, ind_head)):
    plot_attention(attentions, labels, layer=int(layer), head=int(head), ax=ax)
axes[0].set_title(f"previous-token head (layer {prev_head[0]}, head {prev_head[1]})")
axes[1].set_title(f"induction head (layer {ind_head[0]}, head {ind_head[1]}): "
                  f"a diagonal {half - 1} keys back")
lesson.savefig(fig, "two_heads")

# %% [markdown]
# ## Switching a head off
#
# A score shows what a head attends to, not that the model *needs* it. To test that, we
# ablate a head: zero the columns of the output projection `c_proj` that read its output,
# so its contribution to the residual stream is gone, and measure the loss again.

# %%
def ablated(model, layer, head):
    """A copy of ``model`` with one attention head's output removed."""
    copy = GPT(model.config)
    copy.load_state_dict(model.state_dict())
    D = model.config.head_dim
    copy.transformer.h[layer].attn.c_proj.weight.data[:, head * D:(head + 1) * D] = 0
    return copy


base_second = split_losses(model, probe, half)[1]
print(f"second-half loss, intact model: {base_second:.3f}")
for name, (layer, head) in (("previous-token", prev_head), ("induction", ind_head)):
    second = split_losses(ablated(model, int(layer), int(head)), probe, half)[1]
    print(f"without the {name} head (layer {layer}, head {head}): {second:.3f}")
others = [(l, h) for l in range(2) for h in range(n_head) if (l, h) not in (prev_head, ind_head)]
other_losses = [split_losses(ablated(model, l, h), probe, half)[1] for l, h in others]
print(f"without any one of the other heads: at most {max(other_losses):.3f}")

# %% [markdown]
# ## The Shakespeare model of lesson 8
#
# The same scores, on the character model lesson 8 trained, if its run folder is there
# (run lesson 8 first; its full mode trains long enough for clear heads). Its maps on a
# line of the play show the heads at work on real text.

# %%
run = lesson.out.parent / "08" / "run"
if not run.exists():
    print(f"no lesson 8 run at {run}: run `tinygpt lessons run 8` to see a Shakespeare model")
else:
    shakespeare, tok, state = load_checkpoint(run, "best")
    print(f"loaded {run} (step {state.get('step')}, {shakespeare.num_parameters():,} "
          f"parameters, {shakespeare.config.n_layer} layers x {shakespeare.config.n_head} heads)")
    line = "ROMEO:\nBut soft, what light through yonder window breaks?"
    line = line[:shakespeare.config.block_size]
    ids = np.array([tok.encode(line)])
    with tg.no_grad():
        atts = shakespeare(ids, output_attentions=True).attentions
    lesson.savefig(plot_attention(atts, token_labels(tok, ids[0])), "shakespeare_attention")

    s_half = shakespeare.config.block_size // 2
    s_probe = repeated_batch(np.random.default_rng(2), 32, s_half, tok.vocab_size)
    s_prev, s_ind = head_scores(attention_maps(shakespeare, s_probe), s_half)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, (name, score) in zip(axes, (("previous-token score", s_prev),
                                        ("induction score", s_ind))):
        image = ax.imshow(score, cmap="Purples", vmin=0, vmax=1)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(f"Shakespeare model: {name}")
    fig.colorbar(image, ax=axes, shrink=0.8)
    lesson.savefig(fig, "shakespeare_head_scores")
    for name, score in (("previous-token", s_prev), ("induction", s_ind)):
        layer, head = np.unravel_index(score.argmax(), score.shape)
        print(f"Shakespeare model, best {name} head: layer {layer}, head {head} "
              f"(score {score[layer, head]:.2f})")

notice(f"the previous-token head sits in layer {prev_head[0]}, the induction head in layer "
       f"{ind_head[0]}: the second builds on the first",
       "the copy loss falls together with the rise of the induction score",
       "switching off either head of the circuit breaks copying; other heads matter less")
