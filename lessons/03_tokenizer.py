# %% [markdown]
# # Lesson 3: byte-pair encoding (BPE), the tokenizer of the GPT family
#
# A model reads integers, not text. A **tokenizer** cuts text into pieces from a fixed
# vocabulary and gives each piece an id. Characters make long sequences; whole words make
# an endless vocabulary with holes. **Byte-level BPE**, GPT-2's choice, sits in between:
#
# 1. start from the 256 possible bytes, so every text can be written, in any language;
# 2. cut the text into chunks with a regular expression (words with their leading space,
#    numbers, punctuation) so tokens never glue a word to the next one;
# 3. repeatedly find the most frequent adjacent pair of tokens in the training text and
#    *merge* it into a new token. Merge number i becomes token 256 + i.
#
# Encoding new text replays the merges, lowest rank first. We train one on Shakespeare,
# watch the merges happen, colour text by token, and compare our ranks with GPT-2's.

# %%
import matplotlib.pyplot as plt
import numpy as np
import regex
from _common import notice, setup, shared_data

from tinygpt.data import load_text
from tinygpt.tokenizer import BPETokenizer, bpe
from tinygpt.tokenizer.patterns import GPT2_PATTERN
from tinygpt.viz import plot_tokens, token_label

lesson = setup(3, "BPE: training a tokenizer, merges step by step, GPT-2's ranks vs ours")

# %% [markdown]
# ## Text is bytes
#
# UTF-8 writes ASCII characters as one byte and others as two to four. Byte-level BPE
# starts from these bytes, so nothing is ever "unknown".

# %%
text = load_text("builtin:shakespeare")
print(f"Tiny Shakespeare: {len(text):,} characters, {len(text.encode('utf-8')):,} bytes")
held_out = text[-lesson.pick(60_000, 20_000):]  # kept aside to measure compression
train_text = text[:-len(held_out)]
for word in ("thou", "naïve", "→"):
    print(f"{word!r:8} -> bytes {list(word.encode('utf-8'))}")

# %% [markdown]
# ## Step 1: the pre-split
#
# GPT-2's pattern (`tokenizer/patterns.py`) cuts text into chunks; merges never cross a
# chunk boundary. Note how the space stays *in front of* the word it precedes.

# %%
line = "ROMEO: O, she doth teach the torches to burn bright!"
print(regex.findall(GPT2_PATTERN, line))

# %% [markdown]
# ## Step 2: merges, step by step
#
# The readable trainer (`tokenizer/bpe.py`) counts every distinct chunk once, with its
# frequency, so "the" seen thousands of times is one word with a large weight. Then it
# repeats: count adjacent pairs, merge the most frequent. We run its functions by hand
# for the first merges and follow one sentence as its tokens grow.

# %%
chunk_counts = bpe.count_chunks(train_text, GPT2_PATTERN)
words = [list(chunk) for chunk in chunk_counts]
weights = list(chunk_counts.values())
print(f"{len(words):,} distinct chunks")

vocab = {i: bytes([i]) for i in range(256)}  # token id -> its bytes
sentence = "And then the thing that they thought"
follow = [list(chunk.encode()) for chunk in regex.findall(GPT2_PATTERN, sentence)]
stages = [(0, [vocab[t] for chunk in follow for t in chunk])]
n_steps = lesson.pick(12, 8)
for i in range(n_steps):
    counts = bpe.count_pairs(words, weights)
    pair = max(counts, key=lambda p: (counts[p], -p[0], -p[1]))  # the trainer's tie-break
    new_id = 256 + i
    vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
    words = [bpe.merge(w, pair, new_id) for w in words]
    follow = [bpe.merge(w, pair, new_id) for w in follow]
    stages.append((i + 1, [vocab[t] for chunk in follow for t in chunk]))
    print(f"merge {i + 1:2d}: {token_label(vocab[pair[0]]):>4} + {token_label(vocab[pair[1]]):<4}"
          f" -> {token_label(vocab[new_id]):<6} (id {new_id}, seen {counts[pair]:,} times)")


def draw_stages(stages, title):
    """One row of token boxes per stage; the token the stage's merge created is gold."""
    fig, ax = plt.subplots(figsize=(13, 0.42 * len(stages) + 0.8))
    right = 0.0
    for row, (merges_done, pieces) in enumerate(stages):
        newest = vocab[255 + merges_done] if merges_done else None
        x = 0.0
        for n, piece in enumerate(pieces):
            label = token_label(piece)
            width = max(len(label), 1) * 0.55 + 0.25
            color = "gold" if piece == newest else ("#dde8f5" if n % 2 else "#f3f3f3")
            ax.add_patch(plt.Rectangle((x, -row - 0.4), width, 0.8, fc=color, ec="#555",
                                       lw=0.5))
            ax.text(x + width / 2, -row, label, ha="center", va="center",
                    family="monospace", fontsize=8)
            x += width + 0.1
        right = max(right, x)
        ax.text(-0.3, -row, f"{merges_done:>2} merges: {len(pieces):2d} tokens", ha="right",
                va="center", fontsize=8)
    ax.set_xlim(-6.5, right)
    ax.set_ylim(-len(stages) + 0.4, 0.6)
    ax.axis("off")
    ax.set_title(title)
    return fig


fig = draw_stages(stages, "one sentence after each of the first merges (gold: the newest token)")
lesson.savefig(fig, "merges_step_by_step")

# %% [markdown]
# ## Step 3: train a real vocabulary
#
# `BPETokenizer.train` runs the same algorithm with a numba fast path (`tokenizer/fast.py`).
# The fast and the readable trainers must learn the very same merges; we check that on a
# slice before training on all of Shakespeare.

# %%
sample = text[:lesson.pick(100_000, 30_000)]
readable = BPETokenizer.train(sample, 256 + 40, fast=False)
fast = BPETokenizer.train(sample, 256 + 40, fast=True)
print("readable and fast trainers learn the same 40 merges:",
      readable.mergeable_ranks == fast.mergeable_ranks)
vocab_size = lesson.pick(2048, 1024)
tok = BPETokenizer.train(train_text, vocab_size)
print(f"its first {n_steps} merges are the ones we ran by hand:",
      all(tok.id_to_token(256 + i) == vocab[256 + i] for i in range(n_steps)))
print(tok)
longest = sorted(tok.mergeable_ranks, key=len)[-8:]
print("the longest tokens learned:", [token_label(t) for t in longest])

# %% [markdown]
# ## Compression
#
# Because a token's id is its rank, the first n merges of a trained vocabulary are exactly
# the vocabulary that training with n merges would give. So one training run shows how
# the sequence gets shorter as the vocabulary grows.

# %%
sizes = [256, 300, 400, 600, 800, 1024, 1536, 2048]
sizes = [s for s in sizes if s <= vocab_size]
ratios = []
for size in sizes:
    ranks = {b: r for b, r in tok.mergeable_ranks.items() if r < size}
    ratios.append(len(held_out) / len(BPETokenizer(ranks).encode(held_out)))
for size, ratio in zip(sizes, ratios):
    print(f"vocabulary {size:5d}: {ratio:.2f} characters per token")

fig, ax = plt.subplots(figsize=(6.5, 4))
ax.plot(sizes, ratios, marker="o")
ax.set_xlabel("vocabulary size (256 bytes + merges)")
ax.set_ylabel("characters per token (held-out text)")
ax.set_title("more merges, shorter sequences, with diminishing returns")
ax.grid(alpha=0.3)
lesson.savefig(fig, "compression")

# %% [markdown]
# ## Text coloured by token
#
# `tinygpt.viz.plot_tokens` draws each token as a box with its id. Frequent words are one
# token; rare names break into pieces.

# %%
passage = "KING RICHARD II:\nNow is the winter of our discontent,\nthough Bolingbroke be king."
lesson.savefig(plot_tokens(tok, passage), "tokens_ours")
print("round trip:", tok.decode(tok.encode(passage)) == passage)

# %% [markdown]
# ## GPT-2's ranks against ours
#
# GPT-2 learned 50,000 merges from web text. If `gpt2.tiktoken` (GPT-2's ranks in
# tiktoken's format) is at hand, we load it with `BPETokenizer.from_tiktoken` and compare.
# Users without the file just skip this part.

# %%
gpt2_path = shared_data("gpt2.tiktoken")
if gpt2_path is None:
    print("gpt2.tiktoken not found (looked in ../shared/data or $TINYGPT_SHARED_DATA): "
          "skipping the comparison with GPT-2")
else:
    gpt2 = BPETokenizer.from_tiktoken(gpt2_path)
    print(gpt2)
    lesson.savefig(plot_tokens(gpt2, passage), "tokens_gpt2")
    chars_per_token = {}
    for name, t in (("ours", tok), ("GPT-2", gpt2)):
        chars_per_token[name] = len(held_out) / len(t.encode(held_out))
        print(f"{name:6s} ({t.vocab_size:6,d} tokens): {chars_per_token[name]:.2f} characters "
              f"per token on held-out Shakespeare")

    shared = [(r, gpt2.mergeable_ranks[b]) for b, r in tok.mergeable_ranks.items()
              if r >= 256 and b in gpt2.mergeable_ranks]
    ours_r, gpt2_r = np.array(shared).T
    rank_of = lambda a: np.argsort(np.argsort(a))  # noqa: E731  (ranks for Spearman)
    spearman = np.corrcoef(rank_of(ours_r), rank_of(gpt2_r))[0, 1]
    print(f"{len(shared)} of our {vocab_size - 256} merged tokens are also GPT-2 tokens; "
          f"rank correlation {spearman:.2f}")
    print("ours but not GPT-2's:", [token_label(b) for b, r in tok.mergeable_ranks.items()
                                    if r >= 256 and b not in gpt2.mergeable_ranks][:10])

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.scatter(ours_r - 255, gpt2_r - 255, s=4, alpha=0.5)  # merge numbers, from 1
    for k in (0, 3, 10, 40, 150, 600, len(shared) - 1):  # label a few, early to late
        r, g = shared[k]
        ax.annotate(token_label(tok.id_to_token(r)), (r - 255, g - 255), fontsize=8,
                    color="darkred")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("merge number in our Shakespeare vocabulary")
    ax.set_ylabel("merge number in GPT-2's vocabulary")
    ax.set_title(f"shared tokens: early merges are early in both (Spearman {spearman:.2f})")
    lesson.savefig(fig, "ranks_gpt2_vs_ours")

notice("the first merges are the most frequent pairs: spaces before letters, 'th', 'he'",
       "every merge shortens the text; the gains shrink as merges get rarer",
       f"a vocabulary fits the text it was trained on: its longest token is "
       f"{token_label(longest[-1])!r}")
if gpt2_path is not None:
    notice(f"GPT-2's {gpt2.vocab_size:,} tokens reach {chars_per_token['GPT-2']:.2f} characters "
           f"per token here, ours {chars_per_token['ours']:.2f} with {tok.vocab_size:,}: "
           "GPT-2 spends its vocabulary on the whole web, not on Shakespeare")
