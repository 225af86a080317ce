# %% [markdown]
# # Lesson 9: sampling, from logits to text
#
# A language model does not write text; it gives, at each step, a score (logit) for every
# possible next token. *Decoding* turns those scores into a choice. The knobs that every
# generation API exposes are small transformations of the logits before a random draw:
#
# - **temperature** divides the logits: below 1 sharpens the distribution, above 1
#   flattens it, and 0 means always take the best (greedy);
# - **top-k** keeps only the k most likely tokens;
# - **top-p** (nucleus) keeps the smallest set of most likely tokens whose probability
#   reaches p;
# - **repetition penalty** makes tokens already in the text less likely.
#
# tinygpt's `model.generate` applies them in Hugging Face's order: penalty, temperature,
# top-k, top-p. To see them without waiting for a training run we need a model whose
# predictions we understand, so we *write* one: a character bigram model (the next
# character depends only on the current one), stored in the weights of a real `GPT`.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
from tinygpt.data import load_text
from tinygpt.model import GPT, GPTConfig, apply_repetition_penalty, top_k_filter, top_p_filter
from tinygpt.tokenizer import CharTokenizer
from tinygpt.viz import token_label

lesson = setup(9, "sampling: temperature, top-k, top-p, repetition penalty")

# %% [markdown]
# ## A bigram model inside a GPT
#
# Count, in Shakespeare, how often character b follows character a; the log of the
# normalised counts is a table of next-character log-probabilities. Shifting a row of
# logits by a constant does not change its softmax, so we centre each row on zero, as a
# trained model's logits are. Then build a GPT whose blocks add nothing (their output
# projections are zero), whose token embedding is the identity and whose output head *is*
# that table. Its softmax at every position is exactly the bigram distribution: a real
# model object with every sampling feature, and predictions we can read.

# %%
text = load_text("builtin:shakespeare")
tok = CharTokenizer.train(text)
ids = np.array(tok.encode(text))
V = tok.vocab_size
counts = np.ones((V, V))  # add-one smoothing: every pair stays possible
np.add.at(counts, (ids[:-1], ids[1:]), 1)
log_probs = np.log(counts / counts.sum(1, keepdims=True))
table = (log_probs - log_probs.mean(1, keepdims=True)).astype(np.float32)  # centred logits

config = GPTConfig(vocab_size=V, block_size=1024, n_layer=1, n_head=1, n_embd=V,
                   position_embedding="none", bias=False, tie_word_embeddings=False,
                   final_layer_norm=False)
model = GPT(config)
model.transformer.wte.weight.data[...] = np.eye(V)  # token a -> one-hot vector e_a
for block in model.transformer.h:
    block.attn.c_proj.weight.data[...] = 0  # the block adds nothing to the residual
    block.mlp.c_proj.weight.data[...] = 0
model.lm_head.weight.data[...] = table.T  # logits = e_a @ W.T = row a of the table

probe = np.array([tok.encode("the king")])
with tg.no_grad():
    logits = model(probe).logits
probs = tg.functional.softmax(logits, -1).numpy()[0]
print("softmax of the GPT's logits == bigram probabilities:",
      np.allclose(probs, np.exp(log_probs[probe[0]]), atol=1e-5))


def label(i: int) -> str:
    """A character as a reader can see it (a space shows as ␣, a newline as \\n)."""
    return token_label(tok.decode([i]))


context = "And the"
last = tok.encode(context)[-1]
base = table[last].astype(np.float64)
top = np.argsort(-base)[:5]
print(f"after {context!r} the model expects:",
      ", ".join(f"{label(i)} {math.exp(log_probs[last, i]):.2f}" for i in top))

# %% [markdown]
# ## Temperature
#
# probs = softmax(logits / temperature). The order of the tokens never changes; only how
# much the favourites dominate. The entropy (in nats) measures the spread.

# %%
def softmax(z):
    z = z - z[np.isfinite(z)].max()
    e = np.exp(z)
    return e / e.sum()


def entropy(p):
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


order = np.argsort(-base)[:20]
temperatures = [0.5, 1.0, 2.0]
fig, (bars, curve) = plt.subplots(1, 2, figsize=(13, 4), gridspec_kw=dict(width_ratios=[2, 1]))
width = 0.27
for n, t in enumerate(temperatures):
    p = softmax(base / t)
    bars.bar(np.arange(20) + (n - 1) * width, p[order], width,
             label=f"T={t}: entropy {entropy(p):.2f}")
bars.set_xticks(np.arange(20), [label(i) for i in order])
bars.set_ylabel("probability")
bars.set_title(f"next character after {context!r}, 20 most likely")
bars.legend()
ts = np.linspace(0.1, 3, 30)
curve.plot(ts, [entropy(softmax(base / t)) for t in ts])
curve.axhline(math.log(V), color="gray", ls=":", label=f"uniform over {V}")
curve.set_xlabel("temperature")
curve.set_ylabel("entropy (nats)")
curve.set_title("temperature sets the spread")
curve.legend()
lesson.savefig(fig, "temperature")

# %% [markdown]
# ## Top-k and top-p
#
# Both cut off the unlikely tail, where most of the nonsense lives. Top-k keeps a fixed
# number of tokens; top-p adapts: few tokens when the model is sure, many when it is not.
# The helpers work on a (batch, vocab) array of logits.

# %%
row = base[None, :]
kept_k = np.isfinite(top_k_filter(row, 5))[0]
kept_p = np.isfinite(top_p_filter(row, 0.9))[0]
print(f"top-k=5 keeps {kept_k.sum()} tokens; top-p=0.9 keeps {kept_p.sum()} tokens "
      f"holding {softmax(base)[kept_p].sum():.3f} of the probability")

sure = table[tok.encode("q")[0]].astype(np.float64)[None, :]  # after 'q' comes 'u'
print(f"after 'q', top-p=0.9 keeps {np.isfinite(top_p_filter(sure, 0.9)).sum()} token(s): "
      f"{[label(i) for i in np.nonzero(np.isfinite(top_p_filter(sure, 0.9))[0])[0]]}")

# Sampling is drawing from the filtered distribution: 4000 one-token continuations
# from generate() should land with the frequencies that distribution predicts.
n_draws = lesson.pick(4000, 1000)
prompts = np.repeat(np.array([tok.encode(context)]), n_draws, axis=0)
drawn = model.generate(prompts, 1, top_p=0.9, seed=0)[:, -1]
expected = softmax(top_p_filter(row, 0.9)[0])
observed = np.bincount(drawn, minlength=V) / n_draws
print(f"{n_draws} draws with top-p=0.9: largest gap between observed and expected "
      f"frequency {np.abs(observed - expected).max():.3f}; tokens outside the nucleus drawn: "
      f"{int((observed[~kept_p] > 0).sum())}")

fig, axes = plt.subplots(1, 2, figsize=(13, 4))
for ax, kept, title in ((axes[0], kept_k, "top-k = 5"), (axes[1], kept_p, "top-p = 0.9")):
    p = softmax(base)[order]
    ax.bar(np.arange(20), p, color=np.where(kept[order], "tab:blue", "lightgray"))
    if kept is kept_p:
        ax.plot(np.arange(20), observed[order], "k.", label=f"observed in {n_draws} draws")
        ax.plot(np.arange(20), expected[order], "r_", markersize=12, label="renormalised")
        ax.legend()
    ax.set_xticks(np.arange(20), [label(i) for i in order])
    ax.set_title(f"{title}: blue tokens survive, grey are never drawn")
    ax.set_ylabel("probability")
lesson.savefig(fig, "top_k_top_p")

# %% [markdown]
# ## Repetition penalty, and why greedy decoding loops
#
# Greedy decoding (always the most likely token) is deterministic; for a bigram model it
# falls into a cycle within a few characters. The repetition penalty (Hugging Face's rule)
# divides the positive logits and multiplies the negative logits of every token already in
# the text by `penalty`, so each seen token becomes less likely. With only 65 characters,
# though, every character is soon "seen" and penalised alike, and greedy falls back into
# its loop, later: on small vocabularies sampling is the real cure.

# %%
seen = np.array([tok.encode("the ")])
penalised = apply_repetition_penalty(row, seen, 1.5)[0]
fig, ax = plt.subplots(figsize=(9, 3.5))
ax.bar(np.arange(20) - 0.2, softmax(base)[order], 0.4, label="no penalty")
ax.bar(np.arange(20) + 0.2, softmax(penalised)[order], 0.4,
       label="penalty 1.5 on t, h, e and ␣")
ax.set_xticks(np.arange(20), [label(i) for i in order])
ax.set_ylabel("probability")
ax.set_title(f"after {context!r}, having seen 'the '")
ax.legend()
lesson.savefig(fig, "repetition_penalty")


def distinct_4grams(s: str) -> float:
    """Share of the 4-character windows of s that are different: 1.0 means no repeats."""
    grams = [s[i:i + 4] for i in range(len(s) - 3)]
    return len(set(grams)) / len(grams)


start = np.array([tok.encode(context)])
n_new = lesson.pick(200, 80)
settings = {
    "greedy": dict(do_sample=False),
    "greedy, repetition_penalty=1.5": dict(do_sample=False, repetition_penalty=1.5),
    "greedy, repetition_penalty=3.0": dict(do_sample=False, repetition_penalty=3.0),
    "temperature 0.7": dict(temperature=0.7),
    "temperature 1.0": dict(temperature=1.0),
    "temperature 1.0, top-k 5": dict(top_k=5),
    "temperature 1.0, top-p 0.9": dict(top_p=0.9),
    "temperature 2.0": dict(temperature=2.0),
}
for name, kwargs in settings.items():
    out = tok.decode(model.generate(start, n_new, seed=0, **kwargs)[0].tolist())
    new = out[len(context):]
    print(f"--- {name} (distinct 4-grams {distinct_4grams(new):.2f})")
    print(out[:160].replace("\n", " / "))

notice("temperature only rescales; top-k and top-p remove the tail entirely",
       f"top-p keeps {np.isfinite(top_p_filter(sure, 0.9)).sum()} token(s) after 'q' but "
       f"{kept_p.sum()} after {context!r}: it adapts to the model's certainty, top-k does not",
       "greedy decoding repeats itself; the penalty postpones the loop, sampling avoids it",
       "the draws match the filtered distribution: sampling is nothing more than that")
