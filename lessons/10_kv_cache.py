# %% [markdown]
# # Lesson 10: the KV cache
#
# Generation adds one token at a time. The naive loop runs the whole sequence through the
# model for every new token, although the keys and values of the earlier tokens have not
# changed (the causal mask guarantees that a token's k and v never depend on anything
# after it). A **KV cache** keeps them: each step computes q, k, v for the *new* token
# only, appends its k and v to the cache, and attends over everything cached.
#
# We check that cached decoding gives the same logits, measure the speed-up, and watch
# the cache's memory: growing with the sequence in global layers, bounded by the window
# in local ones (GPT-Neo's sliding-window layers).

# %%
import time

import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
from tinygpt.model import GPT, GPTConfig, KVCache

lesson = setup(10, "the KV cache: speed-up measured, local layers bounded by the window")

# %% [markdown]
# ## Same numbers, one token at a time
#
# `model(ids, cache=cache)` appends to the cache; `cache.seen_tokens` gives the next
# token its position. Feeding a prompt and then tokens one by one must reproduce the
# logits of one full forward pass.

# %%
tg.manual_seed(0)
config = GPTConfig(vocab_size=256, block_size=1024, n_layer=4, n_head=4, n_embd=128)
model = GPT(config).eval()
ids = np.random.default_rng(0).integers(0, config.vocab_size, (1, 24))

with tg.no_grad():
    full = model(ids).logits.numpy()
    cache = KVCache(config.n_layer)
    steps = [model(ids[:, :16], cache=cache).logits.numpy()]  # the prompt in one go
    for t in range(16, 24):
        steps.append(model(ids[:, t:t + 1], cache=cache).logits.numpy())
incremental = np.concatenate(steps, axis=1)
print("cache holds", cache.seen_tokens, "tokens; per-layer keys:", cache.keys[0].shape,
      "(B, H, S, D)")
print("incremental logits == full forward:", np.allclose(incremental, full, atol=1e-4),
      f"(max difference {np.abs(incremental - full).max():.1e})")

# %% [markdown]
# ## The speed-up
#
# `model.generate` uses the cache. Without it, every step feeds the whole sequence again
# (we still only compute the last position's logits, `logits_to_keep=1`, to be fair). We
# time every step of both loops, greedy, so both must produce the same tokens.

# %%
n_new = lesson.pick(384, 96)
prompt = ids[:, :8]


def generate_without_cache(ids, n):
    seq, times = ids, []
    for _ in range(n):
        start = time.perf_counter()
        with tg.no_grad():
            logits = model(seq, logits_to_keep=1).logits.numpy()
        seq = np.concatenate([seq, logits[:, -1].argmax(-1)[:, None]], axis=1)
        times.append(time.perf_counter() - start)
    return seq, times


def generate_with_cache(ids, n):
    seq, times = [ids], []
    start = time.perf_counter()
    for token in model.stream(ids, n, do_sample=False):
        seq.append(token[:, None])
        now = time.perf_counter()
        times.append(now - start)
        start = now
    return np.concatenate(seq, axis=1), times


generate_with_cache(prompt, 4)  # warm-up: numba loads its compiled kernels
slow_ids, slow_times = generate_without_cache(prompt, n_new)
fast_ids, fast_times = generate_with_cache(prompt, n_new)
print("same tokens:", np.array_equal(slow_ids, fast_ids))
print(f"without cache: {sum(slow_times):.2f} s, with cache: {sum(fast_times):.2f} s "
      f"-> {sum(slow_times) / sum(fast_times):.1f}x faster for {n_new} tokens")
print(f"last step: {slow_times[-1] * 1e3:.1f} ms without, {fast_times[-1] * 1e3:.1f} ms with")


def smooth(x, k=9):
    return np.convolve(x, np.ones(k) / k, mode="valid")


fig, (per_step, total) = plt.subplots(1, 2, figsize=(12, 4))
positions = np.arange(prompt.shape[1], prompt.shape[1] + n_new)
per_step.plot(positions[4:-4], smooth(np.array(slow_times) * 1e3), label="without cache")
per_step.plot(positions[4:-4], smooth(np.array(fast_times) * 1e3), label="with KV cache")
per_step.set_xlabel("sequence length at this step")
per_step.set_ylabel("ms per new token (9-step average)")
per_step.set_title("cost of one step grows with the sequence without a cache")
per_step.legend()
total.plot(positions, np.cumsum(slow_times), label="without cache")
total.plot(positions, np.cumsum(fast_times), label="with KV cache")
total.set_xlabel("sequence length")
total.set_ylabel("seconds so far")
total.set_title(f"{config.n_layer} layers, width {config.n_embd}: total time")
total.legend()
lesson.savefig(fig, "cache_speedup")

# %% [markdown]
# ## The cache's memory, global and local
#
# Per layer the cache holds keys and values of shape (B, H, S, D): 2 x B x H x S x D
# numbers. A global layer keeps all S tokens seen. A local layer only ever looks
# `window_size` tokens back, so it keeps only the last `window_size` keys and values:
# its memory stops growing.

# %%
window = 32
neo_like = GPTConfig(vocab_size=256, block_size=1024, n_layer=4, n_head=4, n_embd=128,
                     attention_layers=["global", "local"] * 2, window_size=window)
tg.manual_seed(0)
neo = GPT(neo_like).eval()
cache = KVCache(neo_like.n_layer)
n_tokens = lesson.pick(256, 96)
lengths, nbytes = [], []
token = np.array([[1]])
with tg.no_grad():
    for _ in range(n_tokens):
        logits = neo(token, cache=cache).logits.numpy()
        token = logits[:, -1].argmax(-1)[:, None]
        lengths.append([cache.layer_length(i) for i in range(neo_like.n_layer)])
        nbytes.append(cache.nbytes())
lengths = np.array(lengths)

H, D = neo_like.n_head, neo_like.head_dim
n_global = neo_like.layer_types().count("global")
n_local = neo_like.n_layer - n_global
expected = 2 * H * D * 4 * (n_global * n_tokens + n_local * min(n_tokens, window))
print(f"after {n_tokens} tokens: per-layer cache lengths {lengths[-1].tolist()} "
      f"({neo_like.layer_types()})")
print(f"cache.nbytes() = {nbytes[-1]:,} bytes; 2 x H x D x 4 bytes x (sum of lengths) = "
      f"{expected:,}")

fig, (ax_len, ax_mem) = plt.subplots(1, 2, figsize=(12, 4))
for i, kind in enumerate(neo_like.layer_types()):
    ax_len.plot(np.arange(1, n_tokens + 1), lengths[:, i], label=f"layer {i} ({kind})",
                ls="-" if kind == "global" else "--")
ax_len.axhline(window, color="gray", ls=":", label=f"window = {window}")
ax_len.set_xlabel("tokens generated")
ax_len.set_ylabel("keys cached in the layer")
ax_len.set_title("local layers keep only the window")
ax_len.legend()
all_global = 2 * H * D * 4 * neo_like.n_layer * np.arange(1, n_tokens + 1)
ax_mem.plot(np.arange(1, n_tokens + 1), np.array(nbytes) / 1024, label="global + local (Neo)")
ax_mem.plot(np.arange(1, n_tokens + 1), all_global / 1024, ":", label="if all layers were global")
ax_mem.set_xlabel("tokens generated")
ax_mem.set_ylabel("cache size (KiB)")
ax_mem.set_title("cache memory: the local half stops growing")
ax_mem.legend()
lesson.savefig(fig, "cache_memory")

notice("cached decoding reproduces the full forward pass's logits",
       "without a cache each step re-reads the whole sequence, so its cost grows with it; "
       "with the cache a step costs about the same at every length",
       f"local layers stop at {window} keys; only the global layers' cache keeps growing")
