# %% [markdown]
# # Lesson 8: training a small GPT on Shakespeare
#
# Everything so far was parts. Now we train: take random windows of text, predict every
# next character, measure the cross-entropy, backpropagate, and let AdamW move the
# weights. Repeat a few hundred times and the model goes from uniform noise to something
# that spells words, names speakers and breaks lines like a play.
#
# The pieces:
# - `tinygpt.data`: the corpus (Tiny Shakespeare ships inside the package), a tokenizer,
#   and `TokenDataset.get_batch`, which cuts random windows where `y` is `x` shifted by one;
# - `tinygpt.train.Trainer`: the loop (learning-rate schedule, gradient clipping, AdamW,
#   evaluation, checkpoints, `metrics.jsonl`);
# - `tinygpt.viz`: the loss curve and the learning-rate schedule.
#
# The full lesson trains for a few minutes on two CPU cores; `--quick` runs a few dozen
# steps, enough to see the loss fall.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
from tinygpt.data import prepare_data
from tinygpt.model import GPT, GPTConfig
from tinygpt.train import TrainConfig, Trainer
from tinygpt.viz import plot_loss, plot_lr_schedule, read_metrics

lesson = setup(8, "training: a small model on the embedded corpus, loss curve, LR schedule")

# %% [markdown]
# ## Data: characters, windows, shifted targets
#
# A character-level tokenizer keeps the vocabulary tiny (65 symbols), so a small model
# can learn it in minutes. `prepare_data` tokenizes the corpus once into `train.bin` and
# `val.bin` (the last 10% of the text is held out for validation) and maps them back from
# disk.

# %%
block_size = lesson.pick(64, 32)
train_data, val_data, tok = prepare_data("builtin:shakespeare", "char", lesson.out / "data",
                                         block_size=block_size)
print(f"vocabulary {tok.vocab_size}; train {len(train_data):,} tokens, "
      f"validation {len(val_data):,} tokens")

rng = np.random.default_rng(0)
x, y = train_data.get_batch(2, rng)
print("x[0]:", repr(tok.decode(x[0].tolist())))
print("y[0]:", repr(tok.decode(y[0].tolist())), " <- the same window, one character later")

# %% [markdown]
# ## Baselines: what "good" means
#
# A loss is only meaningful next to simple predictors. Uniform guessing costs
# ln(65) nats per character; predicting from character frequencies (unigram) or from the
# previous character (bigram, lesson 9's model) does better. A transformer has to beat the
# bigram model to show it uses more than one character of context.

# %%
train_ids = np.asarray(train_data.ids, dtype=np.int64)
val_ids = np.asarray(val_data.ids, dtype=np.int64)
V = tok.vocab_size
unigram = np.bincount(train_ids, minlength=V) + 1.0
unigram_loss = -np.log(unigram / unigram.sum())[val_ids].mean()
pairs = np.ones((V, V))
np.add.at(pairs, (train_ids[:-1], train_ids[1:]), 1)
bigram = pairs / pairs.sum(1, keepdims=True)
bigram_loss = -np.log(bigram[val_ids[:-1], val_ids[1:]]).mean()
baselines = {"uniform": math.log(V), "unigram": unigram_loss, "bigram": bigram_loss}
for name, value in baselines.items():
    print(f"{name:8s} validation loss {value:.3f} nats/char")

# %% [markdown]
# ## A sanity check first: overfit one batch
#
# Before a long run, train on a *single* batch for a few steps. A correct model, loss and
# optimizer drive its loss down quickly; if it does not fall, something is broken and the
# long run would be wasted.

# %%
tg.manual_seed(0)
probe_model = GPT(GPTConfig(vocab_size=V, block_size=block_size, n_layer=2, n_head=4,
                            n_embd=64))
optimizer = probe_model.configure_optimizers(lr=3e-3, weight_decay=0.0)
xb, yb = train_data.get_batch(8, rng)
losses = []
for _ in range(lesson.pick(40, 15)):
    loss = probe_model(xb, targets=yb).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
print(f"one batch: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {len(losses)} steps")

# %% [markdown]
# ## The model and the training configuration
#
# The learning rate follows a **warmup + cosine** schedule: it rises linearly for the
# first steps (early gradients are large and noisy, and AdamW's moment estimates are not
# yet reliable), then decays along a half cosine to `min_lr`, so the last steps make
# small, careful updates.

# %%
tg.manual_seed(1337)
config = GPTConfig(vocab_size=V, block_size=block_size, n_layer=lesson.pick(4, 2), n_head=4,
                   n_embd=lesson.pick(128, 64))
model = GPT(config)
train_config = TrainConfig(
    batch_size=lesson.pick(32, 16),
    max_steps=lesson.pick(500, 40),
    lr=2e-3, min_lr=2e-4,
    warmup_steps=lesson.pick(40, 5),
    eval_interval=lesson.pick(50, 20),
    eval_batches=lesson.pick(20, 4),
    checkpoint_interval=lesson.pick(250, 40),
    sample_tokens=0,  # we sample once, at the end
)
print(f"model: {model.num_parameters():,} parameters, {config.n_layer} layers of width "
      f"{config.n_embd}")
print(f"training: {train_config.max_steps} steps of {train_config.batch_size} x {block_size} "
      f"tokens")

fig, ax = plt.subplots(figsize=(7, 3.5))
plot_lr_schedule(train_config.lr, train_config.warmup_steps, train_config.max_steps,
                 train_config.min_lr, ax=ax)
lesson.savefig(fig, "lr_schedule")

# %% [markdown]
# ## Train
#
# `Trainer.fit()` runs the loop and writes the run folder: `metrics.jsonl` (one line per
# step), `loss.png`, and two checkpoints: the last one, to resume from, and the best one by
# validation loss, which lesson 11 loads with `load_checkpoint(run, "best")` to look
# inside.

# %%
run = lesson.out / "run"
trainer = Trainer(model, train_data, val_data, train_config, tokenizer=tok, out_dir=run,
                  progress=not lesson.quick)
summary = trainer.fit()
print(f"{summary['step']} steps in {summary['elapsed']:.0f} s "
      f"({summary['tokens_per_s']:,.0f} tokens/s)")
print(f"validation loss {summary['val_loss']:.3f} nats/char = {summary['val_bpb']:.3f} "
      f"bits/byte (best {summary['best_val_loss']:.3f})")

# %% [markdown]
# ## The curves
#
# `plot_loss` reads `metrics.jsonl`; we add the baselines. The recorded learning rates lie
# on the schedule drawn before training.

# %%
fig = plot_loss(run / "metrics.jsonl")
ax = fig.axes[0]
for (name, value), style in zip(baselines.items(), (":", "--", "-.")):
    ax.axhline(value, color="gray", ls=style, lw=1, label=f"{name} baseline")
ax.legend()
ax.set_title("cross-entropy while training")
lesson.savefig(fig, "loss")

records = read_metrics(run / "metrics.jsonl")
fig, ax = plt.subplots(figsize=(7, 3.5))
plot_lr_schedule(train_config.lr, train_config.warmup_steps, train_config.max_steps,
                 train_config.min_lr, ax=ax)
ax.plot([r["step"] - 1 for r in records], [r["lr"] for r in records], ".", ms=3,
        label="lr the Trainer used")
ax.legend()
lesson.savefig(fig, "lr_used")
schedule_ok = all(math.isclose(r["lr"], train_config.lr_at(r["step"] - 1)) for r in records)
print("every step used the scheduled learning rate:", schedule_ok)

# %% [markdown]
# ## What it writes

# %%
prompt = "ROMEO:"
print(prompt + trainer.sample(prompt, max_new_tokens=lesson.pick(300, 100), seed=0))

final = summary["val_loss"]
beaten = [name for name, value in baselines.items() if final < value]
notice("the single-batch check fell fast: model, loss and optimizer work together",
       f"validation loss {final:.2f}: better than the {', '.join(beaten) or 'no'} baseline(s)",
       "the loss drops fastest right after warmup, then flattens as the learning rate decays",
       "the text has the form of a play (names, line breaks) before it has the sense")
