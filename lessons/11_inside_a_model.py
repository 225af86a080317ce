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
#   predict "B". To find "the token after the earlier A" it needs to know, at every
#   position, which token came *before* it: a previous-token head in an earlier layer
#   writes exactly that. Induction is a two-layer circuit.
#
# We find both kinds with a *score* per head, measured on random tokens where a stretch is
# repeated (random, so the only way to predict the repeat is to copy). We train a small
# model in which the circuit forms, watch it appear, switch its heads off one at a time,
# and check with a control that it follows content, not position. Then, if lesson 8 has
# been run, we score the heads of the Shakespeare model it trained.

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
# ## Sequences, scores and the copy loss
#
# A sequence of random tokens in which the stretch [start, start + period) is repeated
# right after itself. With attention weights A[layer, head, query, key]:
#
# - previous-token score: the mean of A[i, i - 1] over all positions i;
# - induction score: the mean, over queries i in the repeat, of A[i, i - period + 1], the
#   position just after the earlier copy of token i.
#
# A head that does the job perfectly scores 1; a head spreading its attention evenly over
# i positions scores about 1/i. The *copy loss* is the next-token loss where the next
# token is part of the repeat (everywhere else the tokens are unpredictable).

# %%
def repeated_batch(rng, batch, length, vocab, period=None, start=None, max_period=None):
    """Random tokens (batch, length) with one stretch repeated, and the copy targets.

    With ``period``/``start`` every row repeats [start, start + period); without them each
    row draws its own period (4..max_period) and start. Targets are -100 (ignored) except
    where the next token is a copy.
    """
    ids = rng.integers(0, vocab, (batch, length))
    targets = np.full((batch, length), -100)
    for row in range(batch):
        p = period if period is not None else int(rng.integers(4, max_period + 1))
        s = start if start is not None else int(rng.integers(0, length - 2 * p + 1))
        ids[row, s + p:s + 2 * p] = ids[row, s:s + p]
        targets[row, s + p:s + 2 * p - 1] = ids[row, s + p + 1:s + 2 * p]
    return ids, targets


def attention_maps(model, ids):
    """Weights (layers, batch, heads, T, T) for a batch of sequences."""
    with tg.no_grad():
        out = model(ids, output_attentions=True)
    return np.stack([a.numpy() for a in out.attentions])


def head_scores(maps, period, start):
    """(previous-token, induction) score of every head: two (layers, heads) arrays."""
    q = np.arange(1, maps.shape[-1])
    previous = maps[..., q, q - 1].mean(axis=(1, 3))
    q = np.arange(start + period, start + 2 * period)
    induction = maps[..., q, q - period + 1].mean(axis=(1, 3))
    return previous, induction


def copy_loss(model, ids, targets):
    """Mean next-token loss over the positions whose next token is a copy."""
    with tg.no_grad():
        return model(ids, targets=targets).loss.item()


# %% [markdown]
# ## A model in which the circuit can form
#
# Two layers. Layer 0 is a *local* layer with a window of 2 (lesson 5): each position sees
# only itself and the previous token. That matters. With the copy always at the same
# distance, a model learns the easy shortcut "attend `period - 1` positions back" by
# position alone, and no induction head ever forms. So we vary the period and the place of
# the repeat from row to row (position cannot predict the copy), and we keep layer 0 from
# looking far back (it cannot take a positional shortcut either). Layer 0 can still move
# the previous token into each position, which is exactly what layer 1 needs.
#
# The loss counts only the copy positions. We record the copy loss and both scores every
# few steps on fixed probe sequences (period 12, starting at position 3).
#
# How long the plateau lasts is a matter of luck: with these settings the circuit formed
# after 200 to 1500 steps, depending on the seed (and on float32 rounding: a kernel change
# that moved the last bits of the gradients moved it by hundreds of steps). So we train
# until the induction score passes 0.5, then 300 steps more to see the copy loss fall, with
# a cap of 3000 steps. Four heads a layer give the circuit more places to start.

# %%
vocab, max_period = 32, 12
length = 2 * max_period + 8
max_steps = lesson.pick(3000, 100)
config = GPTConfig(vocab_size=vocab, block_size=length, n_layer=2, n_head=4, n_embd=32,
                   attention_layers=["local", "global"], window_size=2)
tg.manual_seed(0)
model = GPT(config)
optimizer = model.configure_optimizers(lr=1e-2, weight_decay=0.0)
rng = np.random.default_rng(0)
period, start = max_period, 3
probe, probe_targets = repeated_batch(np.random.default_rng(1), 64, length, vocab,
                                      period=period, start=start)
history = []
formed_at = None  # the step at which the best induction score first passed 0.5
steps = max_steps
for step in range(max_steps + 1):
    if step % 20 == 0:
        prev_score, ind_score = head_scores(attention_maps(model, probe), period, start)
        history.append((step, copy_loss(model, probe, probe_targets), prev_score[0].max(),
                        ind_score[1].max()))
        if formed_at is None and ind_score[1].max() > 0.5:
            formed_at = step
            steps = min(max_steps, step + 300)
    if step == steps:
        break
    ids, targets = repeated_batch(rng, 64, length, vocab, max_period=max_period)
    loss = model(ids, targets=targets).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()

steps_seen, copy_losses, prev_curve, ind_curve = map(np.array, zip(*history))
print(f"after {steps} steps: copy loss {copy_losses[-1]:.2f} (ln {vocab} = {np.log(vocab):.2f}"
      f" is a blind guess); " + (f"the induction score passed 0.5 at step {formed_at}"
                                 if formed_at is not None else "no induction head yet"))

fig, ax = plt.subplots(figsize=(8, 4))
ax.plot(steps_seen, copy_losses, color="tab:blue", label="copy loss")
ax.set_xlabel("training step")
ax.set_ylabel("copy loss (nats)")
score_ax = ax.twinx()
score_ax.plot(steps_seen, prev_curve, "k:", label="layer 0: best previous-token score")
score_ax.plot(steps_seen, ind_curve, "k--", label="layer 1: best induction score")
score_ax.set_ylabel("score")
score_ax.set_ylim(0, 1.05)
lines = ax.get_lines() + score_ax.get_lines()
ax.legend(lines, [line.get_label() for line in lines], loc="upper center",
          bbox_to_anchor=(0.5, -0.15), ncol=3, fontsize=8)
ax.set_title("a plateau, then the induction head forms and the copy loss falls")
lesson.savefig(fig, "induction_forms")

# %% [markdown]
# ## Every head, every layer
#
# The maps of all heads on one probe sequence (`plot_attention`: layers as rows, heads as
# columns; the red outline is layer 0's window of 2) and both scores for every head.

# %%
previous, induction = head_scores(attention_maps(model, probe), period, start)
example = probe[:1]
labels = [str(t) for t in example[0]]
with tg.no_grad():
    attentions = model(example, output_attentions=True).attentions
fig = plot_attention(attentions, labels, window=[2, None])
lesson.savefig(fig, "attention_grid")


def draw_scores(scores, title):
    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, (name, score) in zip(axes, scores.items()):
        image = ax.imshow(score, cmap="Purples", vmin=0, vmax=1)
        for (layer, head), value in np.ndenumerate(score):
            ax.text(head, layer, f"{value:.2f}", ha="center", va="center",
                    color="white" if value > 0.5 else "black")
        ax.set_xticks(range(score.shape[1]))
        ax.set_yticks(range(score.shape[0]))
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(name, fontsize=10)
    fig.colorbar(image, ax=axes, shrink=0.8)
    fig.suptitle(title)
    return fig


lesson.savefig(draw_scores({"previous-token score": previous, "induction score": induction},
                           "every head of the copy model"), "head_scores")
prev_head = tuple(int(i) for i in np.unravel_index(previous.argmax(), previous.shape))
ind_head = tuple(int(i) for i in np.unravel_index(induction.argmax(), induction.shape))
print(f"best previous-token head: layer {prev_head[0]}, head {prev_head[1]} "
      f"(score {previous[prev_head]:.2f})")
print(f"best induction head:      layer {ind_head[0]}, head {ind_head[1]} "
      f"(score {induction[ind_head]:.2f}; attending evenly would give about "
      f"{np.mean(1 / (np.arange(start + period, start + 2 * period) + 1)):.2f})")

fig, axes = plt.subplots(1, 2, figsize=(13, 6))
for ax, (layer, head) in zip(axes, (prev_head, ind_head)):
    plot_attention(attentions, labels, layer=layer, head=head, ax=ax)
queries = np.arange(start + period, start + 2 * period)
axes[1].plot(queries - period + 1, queries, "o", mfc="none", mec="red", ms=8,
             label="the token after the earlier copy")
axes[1].legend(loc="lower left", fontsize=8)
axes[0].set_title(f"previous-token head (layer {prev_head[0]}, head {prev_head[1]})")
axes[1].set_title(f"induction head (layer {ind_head[0]}, head {ind_head[1]})")
lesson.savefig(fig, "two_heads")

# %% [markdown]
# ## Switching a head off
#
# A score shows what a head attends to, not that the model *needs* it. To test that, we
# ablate a head: zero the columns of the output projection `c_proj` that read its output,
# so its contribution to the residual stream is gone, and measure the copy loss again.
# If induction is a two-layer circuit, removing either of its heads must break copying.

# %%
def ablated(model, layer, head):
    """A copy of ``model`` with one attention head's output removed."""
    copy = GPT(model.config)
    copy.load_state_dict(model.state_dict())
    D = model.config.head_dim
    copy.transformer.h[layer].attn.c_proj.weight.data[:, head * D:(head + 1) * D] = 0
    return copy


intact = copy_loss(model, probe, probe_targets)
without = {(layer, head): copy_loss(ablated(model, layer, head), probe, probe_targets)
           for layer in range(config.n_layer) for head in range(config.n_head)}
print(f"copy loss, intact model: {intact:.3f}")
for (layer, head), value in without.items():
    role = {prev_head: "  (best previous-token head)", ind_head: "  (best induction head)"}
    print(f"  without layer {layer}, head {head}: {value:.3f}{role.get((layer, head), '')}")

# %% [markdown]
# ## A control: content or position?
#
# The probes all used period 12 starting at position 3. An induction head finds the
# earlier copy by *content*, so it must work just as well for another period at another
# place; a head that had learned a fixed distance would fail here.

# %%
other_period, other_start = 7, 10
control, control_targets = repeated_batch(np.random.default_rng(2), 64, length, vocab,
                                          period=other_period, start=other_start)
_, control_induction = head_scores(attention_maps(model, control), other_period, other_start)
print(f"period {period} at {start}: copy loss {intact:.3f}, induction score "
      f"{induction[ind_head]:.2f}")
print(f"period {other_period} at {other_start}: copy loss "
      f"{copy_loss(model, control, control_targets):.3f}, induction score "
      f"{control_induction[ind_head]:.2f}")

with tg.no_grad():
    control_attentions = model(control[:1], output_attentions=True).attentions
fig, ax = plt.subplots(figsize=(7, 6))
plot_attention(control_attentions, [str(t) for t in control[0]], layer=ind_head[0],
               head=ind_head[1], ax=ax)
queries = np.arange(other_start + other_period, other_start + 2 * other_period)
ax.plot(queries - other_period + 1, queries, "o", mfc="none", mec="red", ms=9,
        label="the token after the earlier copy")
ax.legend(loc="lower left", fontsize=8)
ax.set_title(f"the induction head on period {other_period} at position {other_start}")
lesson.savefig(fig, "control")
found = induction[ind_head] > 0.3 and control_induction[ind_head] > 0.3
if not found:
    print("no induction head has formed yet: the circuit appears after a plateau of a few "
          "hundred steps" + ("; run the lesson without --quick" if lesson.quick else
                             f" (here not within {max_steps}: try another tg.manual_seed)"))

# %% [markdown]
# ## The Shakespeare model of lesson 8
#
# The same scores on the character model lesson 8 trained, if its run folder is there
# (run lesson 8 first). After a few hundred steps a small model has learned to look at the
# previous characters (that alone predicts a lot of text); induction heads in language
# models form later, after much more training.

# %%
# lesson 8 writes its run into <its --out>/run: with the default folders (lesson_output/08,
# lesson_output/11) or with both lessons given the same --out
candidates = [lesson.out.parent / "08" / "run", lesson.out / "run"]
run = next((c for c in candidates if (c / "checkpoint").exists()), candidates[0])
if not run.exists():
    print(f"no lesson 8 run at {run}: run `tinygpt lessons run 8` to see a Shakespeare model")
else:
    shakespeare, tok, state = load_checkpoint(run, "best")
    c = shakespeare.config
    print(f"loaded {run} (step {state.get('step')}, {shakespeare.num_parameters():,} "
          f"parameters, {c.n_layer} layers x {c.n_head} heads)")
    line = "ROMEO:\nBut soft, what light through yonder window breaks?"
    ids = np.array([tok.encode(line[:c.block_size])])
    with tg.no_grad():
        atts = shakespeare(ids, output_attentions=True).attentions
    lesson.savefig(plot_attention(atts, token_labels(tok, ids[0])), "shakespeare_attention")

    s_period, s_start = c.block_size // 3, c.block_size // 6
    s_probe, _ = repeated_batch(np.random.default_rng(3), 32, c.block_size, tok.vocab_size,
                                period=s_period, start=s_start)
    s_prev, s_ind = head_scores(attention_maps(shakespeare, s_probe), s_period, s_start)
    fig = draw_scores({"previous-token score": s_prev, "induction score": s_ind},
                      "the Shakespeare model's heads")
    lesson.savefig(fig, "shakespeare_head_scores")
    for name, score in (("previous-token", s_prev), ("induction", s_ind)):
        layer, head = (int(i) for i in np.unravel_index(score.argmax(), score.shape))
        print(f"Shakespeare model, best {name} head: layer {layer}, head {head} "
              f"(score {score[layer, head]:.2f})")

def change(before: float, after: float) -> str:
    """The copy loss going from ``before`` to ``after``, in words that match the printed
    numbers (2 decimals): raised, lowered or left as it was."""
    a, b = round(before, 2), round(after, 2)
    if a == b:
        return f"leaves the copy loss at {a:.2f}"
    return f"{'raises' if b > a else 'lowers'} the copy loss from {a:.2f} to {b:.2f}"


notice(f"layer 0's best previous-token head scores {previous[prev_head]:.2f}; layer 1's best "
       f"induction head {induction[ind_head]:.2f}",
       "the copy loss stays on a plateau until the induction score rises: a phase change",
       f"removing the induction head {change(intact, without[ind_head])}; removing the "
       f"previous-token head gives "
       f"{without[prev_head]:.2f}" + (": the two heads form one circuit" if found else
                                      " (no circuit yet, so no head matters much)"),
       f"on another period at another place the induction head scores "
       f"{control_induction[ind_head]:.2f}: it follows content, not a fixed distance"
       if found else "(quick mode: too few steps for the circuit to form)" if lesson.quick
       else "(the circuit did not form within the cap: try another seed)")
