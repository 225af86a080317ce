"""The training loop: batches in, a better model and a run folder out.

One optimizer step (``Trainer.train_step``), in the order the code runs:
  learning rate from the warmup + cosine schedule -> ``grad_accum`` micro-batches, each a
  forward and a backward of loss / grad_accum (gradients add up) -> NaN guard -> clip the
  global gradient norm -> AdamW (decay for matrices, none for biases, norms, embeddings).
Every ``eval_interval`` steps: the validation loss on fixed windows, bits per byte, a text
sample, ``loss.png`` and the best checkpoint. Every ``checkpoint_interval`` steps, at the
end and on Ctrl-C: the last checkpoint.

The run folder (``out_dir``)::

    metrics.jsonl        one JSON object per step (val_* at evaluation steps)
    loss.png             train and validation loss curves
    checkpoint/          the last checkpoint: everything needed to resume exactly
    checkpoint-best/     the weights with the lowest validation loss so far

A checkpoint folder holds ``config.json`` + ``model.safetensors`` (a Hugging Face folder:
``GPT.from_pretrained`` and transformers read it), ``optimizer.safetensors`` (AdamW's
moments; not in checkpoint-best), ``trainer_state.json`` (step, configs, schedule, RNG states, data
position) and the tokenizer. It is written into a temporary folder and swapped in by
renames, so a crash while saving leaves the previous checkpoint whole. No pickle anywhere.

Exact resume: the weights, AdamW's moments and step counts, the global RNG (dropout) and
the batch RNG (which windows come next) are all restored, so N steps + N resumed steps
give the same bits as 2N steps in one go.
"""

from __future__ import annotations

import codecs
import dataclasses
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygpt import backend
from tinygpt import random as _random
from tinygpt.data import TokenDataset, encode
from tinygpt.io.safetensors import load_file, save_file
from tinygpt.model import GPT, GPTConfig
from tinygpt.optim import AdamW, clip_grad_norm_, warmup_cosine_lr
from tinygpt.tensor import no_grad
from tinygpt.tokenizer import load as load_tokenizer

CHECKPOINT_DIRS = {"last": "checkpoint", "best": "checkpoint-best"}  # inside the run folder


class TrainingDiverged(RuntimeError):
    """The loss or the gradient became NaN or infinite; training stopped without saving."""


class CheckpointMismatch(ValueError):
    """A run cannot resume from a checkpoint made with a different configuration."""


@dataclass
class TrainConfig:
    """Every knob of the training loop, with the defaults of ``tinygpt train``."""

    batch_size: int = 16  # windows per micro-batch
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 400  # total optimizer steps (a resumed run stops here too)
    lr: float = 2e-3  # peak learning rate
    min_lr: float | None = None  # where the cosine ends; None: lr / 10 (nanoGPT's rule)
    warmup_steps: int = 50  # linear warmup from lr / warmup_steps to lr
    lr_decay_steps: int | None = None  # the cosine reaches min_lr here; None: max_steps
    weight_decay: float = 0.1  # AdamW's decoupled decay, on matrices only
    beta1: float = 0.9
    beta2: float = 0.99  # nanoGPT's choice for small models (0.95 for big ones)
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    eval_interval: int = 100  # steps between validation losses and samples
    eval_batches: int = 20  # validation batches per evaluation
    checkpoint_interval: int = 100  # steps between saves of checkpoint/last
    sample_tokens: int = 200  # tokens sampled at each evaluation (0: none)
    sample_prompt: str = "\n"
    seed: int = 1337  # seeds the batch sampler (and the CLI's model init)

    # keys that may change when a run resumes; every other one must match the checkpoint
    RESUMABLE = ("max_steps", "eval_interval", "eval_batches", "checkpoint_interval",
                 "sample_tokens", "sample_prompt")

    def __post_init__(self):
        if self.min_lr is None and isinstance(self.lr, (int, float)):
            self.min_lr = self.lr / 10
        self.validate()

    def validate(self) -> None:
        def bad(name, why):
            raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {why}")

        positive = ("batch_size", "grad_accum", "max_steps", "eval_interval", "eval_batches",
                    "checkpoint_interval")
        for name in (*positive, "warmup_steps", "sample_tokens", "seed"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
                bad(name, "must be an integer")
            if v < (1 if name in positive else 0):
                bad(name, f"must be {'>= 1' if name in positive else '>= 0'}")
        for name in ("lr", "min_lr", "weight_decay", "grad_clip"):
            v = getattr(self, name)
            if (not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0
                    or not math.isfinite(v)):
                bad(name, "must be a finite number >= 0")
        if self.min_lr > self.lr:
            bad("min_lr", f"must not exceed lr={self.lr}")
        for name in ("beta1", "beta2"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 1.0:
                bad(name, "must be a number in [0, 1)")
        if self.lr_decay_steps is not None and (
                not isinstance(self.lr_decay_steps, int) or isinstance(self.lr_decay_steps, bool)
                or self.lr_decay_steps < 1):
            bad("lr_decay_steps", "must be a positive integer or None")
        if not isinstance(self.sample_prompt, str) or (self.sample_tokens
                                                       and not self.sample_prompt):
            bad("sample_prompt", "must be a non-empty string (or set sample_tokens=0)")

    @property
    def decay_steps(self) -> int:
        return self.lr_decay_steps if self.lr_decay_steps is not None else self.max_steps

    def lr_at(self, step: int) -> float:
        """Learning rate of the 0-based optimizer step ``step``."""
        return warmup_cosine_lr(step, self.lr, self.warmup_steps, self.decay_steps, self.min_lr)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict; an unknown key is an error that names it."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig key(s) {unknown}; known keys: {sorted(known)}")
        return cls(**d)


class Trainer:
    """Trains ``model`` on ``train_data``; the same loop drives the CLI, lessons and notebooks.

    ``out_dir=None`` keeps everything in memory (no files). ``tokenizer`` enables the text
    samples and is saved with checkpoints. ``run_info`` (e.g. the data source and tokenizer
    spec) is saved too, and a resume refuses a run whose ``run_info`` differs.
    ``progress=False`` hides the progress bar and the printed samples. ``callback(trainer,
    row)`` is called after every step with that step's metrics; it may call ``stop()``.
    """

    def __init__(self, model: GPT, train_data: TokenDataset, val_data: TokenDataset | None,
                 config: TrainConfig | None = None, tokenizer=None,
                 out_dir: str | os.PathLike | None = None, progress: bool = True,
                 callback: Callable[[Trainer, dict], None] | None = None,
                 run_info: dict | None = None):
        self.model, self.train_data, self.val_data = model, train_data, val_data
        self.config = config if config is not None else TrainConfig()
        self.tokenizer, self.progress, self.callback = tokenizer, progress, callback
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.run_info = dict(run_info or {})
        self._data_id: dict | None = None  # see _data_identity
        block = model.config.block_size
        for name, data in (("train_data", train_data), ("val_data", val_data)):
            if data is not None and data.block_size > block:
                raise ValueError(f"Trainer: {name} has windows of {data.block_size} tokens, "
                                 f"longer than the model's block_size {block}")
        self._check_sample_prompt()
        self.optimizer = AdamW(model.optimizer_groups(self.config.weight_decay),
                               lr=self.config.lr, betas=(self.config.beta1, self.config.beta2))
        self.data_rng = np.random.default_rng(self.config.seed)  # which windows come next
        self.step = 0  # optimizer steps done
        self.best_val_loss = math.inf
        self.elapsed = 0.0  # seconds of training, summed over resumed sessions
        self.train_curve: list[tuple[int, float]] = []  # (step, train loss), for loss.png
        self.val_curve: list[tuple[int, float]] = []
        self.last_eval: dict = {}
        self._stop_requested = False
        self.interrupted = False

    def _check_sample_prompt(self) -> None:
        """Sampling at each evaluation must not be what stops a run hours in: the prompt is
        encoded now. The default prompt (a newline) falls back to the first token of the
        training data when the tokenizer has no newline (a corpus without line breaks)."""
        c = self.config
        self._sample_prompt = c.sample_prompt
        if self.tokenizer is None or not c.sample_tokens:
            return
        check_tokenizer_fits(self.model, self.tokenizer)  # what generate_text checks later
        try:
            encode(self.tokenizer, c.sample_prompt)
        except ValueError as e:
            if c.sample_prompt != TrainConfig.sample_prompt:
                raise ValueError(f"TrainConfig.sample_prompt={c.sample_prompt!r} cannot be "
                                 f"encoded by the tokenizer ({e}); use text from the corpus, "
                                 f"or sample_tokens=0") from None
            self._sample_prompt = self.tokenizer.decode([int(self.train_data.ids[0])])

    # -- one step ----------------------------------------------------------------------------
    @property
    def tokens_per_step(self) -> int:
        c = self.config
        return c.batch_size * c.grad_accum * self.train_data.block_size

    def train_step(self) -> dict:
        """One optimizer step; returns its metrics (step counts from 1)."""
        c, model = self.config, self.model
        start = time.perf_counter()
        lr = c.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        model.train()
        losses = []
        # a diverging run's inf/NaN is caught below with a clear message: NumPy's overflow
        # warnings from deep inside the kernels would only bury it
        with np.errstate(over="ignore", invalid="ignore"):
            for _ in range(c.grad_accum):
                x, y = self.train_data.get_batch(c.batch_size, self.data_rng)
                loss = model(x, targets=y).loss
                losses.append(loss.item())
                if not math.isfinite(losses[-1]):
                    self._diverged("loss", losses[-1], lr)
                (loss * (1.0 / c.grad_accum)).backward()  # the mean over micro-batches
            params = list(model.parameters())
            grad_norm = clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else math.inf)
        if not math.isfinite(grad_norm):
            self._diverged("gradient norm", grad_norm, lr)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.step += 1
        seconds = time.perf_counter() - start
        return {"step": self.step, "train_loss": float(np.mean(losses)), "lr": lr,
                "grad_norm": grad_norm, "tokens_per_s": self.tokens_per_step / seconds}

    def _diverged(self, what: str, value: float, lr: float):
        self.optimizer.zero_grad()
        where = "no checkpoint is written (out_dir=None)"
        if self.out_dir is not None:
            last = self.out_dir / CHECKPOINT_DIRS["last"]
            where = (f"the last good checkpoint is kept in {last}" if last.exists()
                     else "no checkpoint had been saved yet")
        raise TrainingDiverged(
            f"the {what} became {value} at step {self.step + 1} (lr {lr:.3g}); training stopped "
            f"and {where}. Try a lower --lr, a smaller --grad-clip or more --warmup-steps")

    # -- evaluation and samples -----------------------------------------------------------------
    @no_grad()
    def evaluate(self) -> dict:
        """Mean validation loss (nats per token) over ``eval_batches`` fixed batches, and
        bits per byte (comparable across tokenizers) when the data knows its byte count."""
        if self.val_data is None:
            return {}
        was_training = self.model.training
        self.model.eval()
        try:
            losses = [self.model(x, targets=y).loss.item() for x, y in
                      self.val_data.eval_batches(self.config.eval_batches, self.config.batch_size)]
        finally:
            self.model.train(was_training)
        out = {"val_loss": float(np.mean(losses))}
        if self.val_data.bytes_per_token:
            out["val_bpb"] = out["val_loss"] / math.log(2) / self.val_data.bytes_per_token
        return out

    def sample(self, prompt: str | None = None, max_new_tokens: int | None = None,
               temperature: float = 0.8, top_k: int | None = 200, seed: int | None = None) -> str:
        """Text the model writes after ``prompt`` (default: the config's sample prompt)."""
        if self.tokenizer is None:
            raise ValueError("Trainer.sample needs a tokenizer (pass tokenizer= to Trainer)")
        c = self.config
        pieces = generate_text(self.model, self.tokenizer,
                               self._sample_prompt if prompt is None else prompt,
                               c.sample_tokens if max_new_tokens is None else max_new_tokens,
                               temperature=temperature, top_k=top_k,
                               seed=c.seed if seed is None else seed)
        return "".join(pieces)

    # -- the loop -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Ask ``fit`` to save a checkpoint and return after the current step."""
        self._stop_requested = True

    def fit(self) -> dict:
        """Train until ``max_steps`` (or ``stop()`` / Ctrl-C); returns a summary dict."""
        from tqdm import tqdm

        c = self.config
        self._stop_requested = self.interrupted = False
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        start_step, session_start = self.step, time.perf_counter()
        elapsed_before = self.elapsed
        bar = tqdm(total=c.max_steps, initial=self.step, disable=not self.progress,
                   unit="step", dynamic_ncols=True)
        metrics = None
        if self.out_dir is not None:  # a new run starts a new log; a resumed one appends
            metrics = open(self.out_dir / "metrics.jsonl", "a" if self.step else "w")
        row: dict = {}
        try:
            with _stop_on_sigint(self):
                while self.step < c.max_steps and not self._stop_requested:
                    row = self.train_step()
                    self.elapsed = elapsed_before + time.perf_counter() - session_start
                    row["elapsed"] = self.elapsed
                    self.train_curve.append((self.step, row["train_loss"]))
                    if self.step % c.eval_interval == 0 or self.step == c.max_steps:
                        row.update(self._evaluate_and_report(bar))
                    if metrics is not None:
                        metrics.write(json.dumps(row) + "\n")
                        metrics.flush()
                    bar.set_postfix_str(self._postfix(row), refresh=False)
                    bar.update(1)
                    if self.callback is not None:
                        self.callback(self, row)
                    if self.out_dir is not None and (self.step % c.checkpoint_interval == 0
                                                     or self.step == c.max_steps
                                                     or self._stop_requested):
                        self.save_checkpoint("last")
        finally:
            bar.close()
            if metrics is not None:
                metrics.close()
        self.interrupted = self._stop_requested and self.step < c.max_steps
        tokens = (self.step - start_step) * self.tokens_per_step
        seconds = max(time.perf_counter() - session_start, 1e-9)
        return {"step": self.step, "train_loss": row.get("train_loss"),
                "val_loss": self.last_eval.get("val_loss"),
                "val_bpb": self.last_eval.get("val_bpb"), "best_val_loss": self.best_val_loss,
                "elapsed": self.elapsed, "tokens_per_s": tokens / seconds,
                "interrupted": self.interrupted}

    def _evaluate_and_report(self, bar) -> dict:
        result = self.evaluate()
        if not result:
            return {}
        self.last_eval = dict(result, step=self.step)
        self.val_curve.append((self.step, result["val_loss"]))
        improved = result["val_loss"] < self.best_val_loss
        self.best_val_loss = min(self.best_val_loss, result["val_loss"])
        if self.tokenizer is not None and self.config.sample_tokens:
            result["sample"] = self.sample()
        if self.progress:
            bpb = f", {result['val_bpb']:.3f} bits/byte" if "val_bpb" in result else ""
            bar.write(f"step {self.step}: val loss {result['val_loss']:.4f}{bpb}")
            if "sample" in result:
                bar.write(result["sample"].rstrip("\n") + "\n" + "-" * 40)
        if self.out_dir is not None:
            plot_losses(self.train_curve, self.val_curve, self.out_dir / "loss.png")
            if improved:
                self.save_checkpoint("best")
        return result

    def _postfix(self, row: dict) -> str:
        val = f" val {self.last_eval['val_loss']:.3f}" if self.last_eval else ""
        return f"loss {row['train_loss']:.3f}{val} {row['tokens_per_s']:,.0f} tok/s"

    # -- checkpoints ----------------------------------------------------------------------------
    def _data_identity(self) -> dict:
        """Each split's token count and CRC-32, saved with every checkpoint: a run resumes
        only on the tokens it trained on (a corpus edited between sessions is tokenized
        again into other tokens; their counts alone could match)."""
        if self._data_id is None:
            self._data_id = {}
            for name, data in (("train", self.train_data), ("val", self.val_data)):
                if data is not None:
                    ids = np.ascontiguousarray(data.ids)
                    self._data_id[name] = [len(ids), zlib.crc32(ids.view(np.uint8))]
        return self._data_id

    def state(self) -> dict:
        """Everything but the arrays, as JSON: where the run is and how it was configured."""
        opt = self.optimizer.state_dict()
        return {
            # null until the first evaluation: JSON has no Infinity (strict parsers refuse it)
            "step": self.step, "elapsed": self.elapsed, "last_eval": self.last_eval,
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "train_config": self.config.to_dict(),
            "run_info": self.run_info,
            "data": self._data_identity(),
            "rng_state": _random.get_rng_state(),  # dropout masks
            "data_rng_state": self.data_rng.bit_generator.state,  # the position in the data
            "optimizer": {
                "param_groups": opt["param_groups"],
                "steps": {str(i): s["step"] for i, s in opt["state"].items()},
            },
        }

    def save_checkpoint(self, kind: str = "last") -> Path:
        """Write ``out_dir/checkpoint`` ("last") or ``out_dir/checkpoint-best`` ("best", no
        optimizer state) atomically."""
        if self.out_dir is None:
            raise ValueError("Trainer.save_checkpoint needs an out_dir")
        final = self.out_dir / CHECKPOINT_DIRS[kind]
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)  # left over from a crash
        try:
            tmp.mkdir(parents=True)
            with warnings.catch_warnings():  # "transformers cannot reproduce local attention
                warnings.simplefilter("ignore")  # + RoPE": tinygpt reloads it exactly
                self.model.save_pretrained(tmp)
            if kind == "last":
                arrays = {f"{i}.{name}": backend.to_numpy(v)
                          for i, s in self.optimizer.state_dict()["state"].items()
                          for name, v in s.items() if name != "step"}
                save_file(arrays, tmp / "optimizer.safetensors")
            _write_json(tmp / "trainer_state.json", self.state())
            if self.tokenizer is not None:
                self.tokenizer.save(tmp / _tokenizer_name(self.tokenizer))
        except BaseException:  # e.g. a full disk: the previous checkpoint stays as it was,
            shutil.rmtree(tmp, ignore_errors=True)  # and no half-written folder is left
            raise
        _swap_in(tmp, final)
        return final

    def resume(self, path: str | os.PathLike | None = None) -> dict:
        """Continue from a checkpoint (default ``out_dir/checkpoint``): weights, optimizer,
        step, RNGs and curves. Refuses, naming the keys, if the configuration differs."""
        if path is None and self.out_dir is None:
            raise ValueError("Trainer.resume needs a checkpoint path or an out_dir")
        folder = find_checkpoint(path if path is not None else self.out_dir, "last")
        state = _read_json(folder / "trainer_state.json")
        saved_train = check_resumable(folder, state, self.model.config, self.config,
                                      self.run_info)
        now = self.config.to_dict()
        self._check_same_tokenizer(folder)
        saved_data, data_now = state.get("data"), self._data_identity()
        if saved_data is not None and saved_data != data_now:  # (None: an older checkpoint)
            raise CheckpointMismatch(
                f"cannot resume from {folder}: the training data changed since the "
                f"checkpoint (tokens and CRC-32 of each split: checkpoint {saved_data}, now "
                f"{data_now}); resume with the same corpus, or start a new run")
        if (saved_train["lr_decay_steps"] is None and saved_train["max_steps"] != now["max_steps"]
                and now["lr_decay_steps"] is None):
            warnings.warn(f"max_steps changed from {saved_train['max_steps']} to "
                          f"{now['max_steps']}: the cosine schedule now ends at step "
                          f"{now['max_steps']}", stacklevel=2)

        loaded = GPT.from_pretrained(folder)
        try:  # read everything first: a damaged file must not leave the trainer half-restored
            arrays = load_file(folder / "optimizer.safetensors")
            opt_state: dict = {}
            for i, s in state["optimizer"]["steps"].items():
                opt_state[int(i)] = {"step": int(s), **{name: arrays[f"{i}.{name}"]
                                                        for name in ("exp_avg", "exp_avg_sq")}}
            groups = [dict(g, betas=tuple(g["betas"]))
                      for g in state["optimizer"]["param_groups"]]
            step, elapsed = int(state["step"]), float(state["elapsed"])
            best = state["best_val_loss"]  # None: no evaluation yet
            best, last_eval = math.inf if best is None else float(best), dict(state["last_eval"])
            rng_state, data_rng_state = state["rng_state"], state["data_rng_state"]
            for rng_state_ in (rng_state, data_rng_state):  # on throw-away generators
                np.random.default_rng().bit_generator.state = rng_state_
            self.optimizer.load_state_dict(  # checks everything before it changes anything
                {"state": opt_state, "param_groups": groups})
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as e:
            raise CheckpointMismatch(f"cannot resume from {folder}: trainer_state.json or "
                                     f"optimizer.safetensors is damaged or incomplete "
                                     f"({type(e).__name__}: {e})") from None
        # from here nothing can fail: the shapes were checked against this model's config
        self.model.load_state_dict(loaded.state_dict())
        _random.set_rng_state(rng_state)
        self.data_rng.bit_generator.state = data_rng_state
        self.step, self.elapsed, self.best_val_loss, self.last_eval = step, elapsed, best, last_eval
        self._restore_curves()
        return state

    def _check_same_tokenizer(self, folder: Path) -> None:
        """A run's token ids must keep their meaning: refuse a tokenizer that differs from the
        one saved in the checkpoint (a corpus edited since the run started retrains BPE)."""
        if self.tokenizer is None:
            return
        saved = folder / _tokenizer_name(self.tokenizer)
        if not saved.exists():
            other = [name for name in ("tokenizer.tok", "tokenizer.json")
                     if (folder / name).exists()]
            if other:  # a BPE run resumed with a char tokenizer, or the other way round
                raise CheckpointMismatch(
                    f"cannot resume from {folder}: the run was trained with the tokenizer in "
                    f"{other[0]}, a different kind from the one given now")
            return
        with tempfile.TemporaryDirectory() as tmp:
            now = Path(tmp) / saved.name
            self.tokenizer.save(now)
            same = now.read_bytes() == saved.read_bytes()
        if not same:
            raise CheckpointMismatch(
                f"cannot resume from {folder}: the tokenizer differs from the one the run was "
                f"trained with (saved as {saved.name}); its token ids would change meaning. Was "
                f"the corpus or the tokenizer file changed? Restore it, or start a new run with "
                f"another --out")

    def _restore_curves(self) -> None:
        """Reload the curves from metrics.jsonl, dropping steps after the checkpoint (a run
        can go on a little past its last save before it dies)."""
        self.train_curve, self.val_curve = [], []
        path = self.out_dir / "metrics.jsonl" if self.out_dir is not None else None
        if path is None or not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue  # a line cut short by a crash
            if row.get("step", math.inf) > self.step:
                continue
            kept.append(line)
            self.train_curve.append((row["step"], row["train_loss"]))
            if "val_loss" in row:
                self.val_curve.append((row["step"], row["val_loss"]))
        _write_text(path, "".join(line + "\n" for line in kept))


# ---------------------------------------------------------------------------------- helpers


@contextmanager
def _stop_on_sigint(trainer: Trainer) -> Iterator[None]:
    """While training, Ctrl-C asks the loop to save and return; a second one aborts at once."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):
        if trainer._stop_requested:
            raise KeyboardInterrupt
        trainer.stop()
        print("\nCtrl-C: stopping after this step and saving a checkpoint (press again to abort)",
              file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def check_resumable(folder: Path, state: dict, model_config: GPTConfig,
                    train_config: TrainConfig, run_info: dict) -> dict:
    """CheckpointMismatch, naming each key, if the run saved in ``folder`` (``state``: its
    trainer_state.json) was made with another model, training (beyond
    TrainConfig.RESUMABLE) or run configuration (data, tokenizer); Trainer.resume checks
    this, and ``tinygpt train --resume`` before it reads any data. Returns the saved
    training configuration (as a dict)."""
    # through the dataclasses: a checkpoint written before a config field existed holds
    # no key for it, and compares as that field's default
    try:
        saved_model = GPTConfig.from_dict(_read_json(folder / "config.json")["tinygpt"]).to_dict()
        saved_train = TrainConfig.from_dict(state["train_config"]).to_dict()
        if not isinstance(state.get("run_info", {}), dict):
            raise TypeError("run_info is not an object")
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointMismatch(f"cannot resume from {folder}: its configuration cannot "
                                 f"be read by this version of tinygpt ({e!r})") from None
    diffs = _differences(saved_model, model_config.to_dict())
    now = train_config.to_dict()
    diffs += _differences({k: v for k, v in saved_train.items()
                           if k not in TrainConfig.RESUMABLE},
                          {k: v for k, v in now.items() if k not in TrainConfig.RESUMABLE})
    diffs += _differences(state.get("run_info", {}), run_info)
    if diffs:
        raise CheckpointMismatch(f"cannot resume from {folder}: the run was made with a "
                                 f"different configuration ({'; '.join(diffs)}). Resume "
                                 f"with the same settings, or start a new run with "
                                 f"another --out")
    return saved_train


def _differences(saved: dict, now: dict) -> list[str]:
    """'key: checkpoint X, now Y' for every key whose value differs."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if a != b and not (isinstance(a, (list, tuple)) and isinstance(b, (list, tuple))
                           and list(a) == list(b)):
            out.append(f"{key}: checkpoint {a!r}, now {b!r}")
    return out


def _read_json(path: Path) -> dict:
    """A checkpoint's JSON file, or an error that names it."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise CheckpointMismatch(f"{path}: cannot be read ({e})") from None
    if not isinstance(obj, dict):
        raise CheckpointMismatch(f"{path}: expected a JSON object, found {type(obj).__name__}")
    return obj


def _write_text(path: Path, text: str) -> None:
    """Write a file atomically: a temporary file, flushed to disk, renamed over ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _write_text(path, json.dumps(obj, indent=1) + "\n")


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace the folder ``final`` by the complete folder ``tmp``: final -> final.old,
    tmp -> final, drop final.old. At every instant a whole checkpoint exists under
    ``final`` or ``final.old`` (``find_checkpoint`` falls back to the latter)."""
    old = final.with_name(final.name + ".old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def _tokenizer_name(tokenizer) -> str:
    return "tokenizer.tok" if hasattr(tokenizer, "mergeable_ranks") else "tokenizer.json"


def find_checkpoint(path: str | os.PathLike, which: str = "last") -> Path:
    """The checkpoint folder for ``path``: a checkpoint folder itself, or a run folder (its
    ``checkpoint``, or ``checkpoint-best`` for ``which="best"`` when there is one). A
    folder left as ``.old`` by a crash in the middle of a save counts."""
    if which not in CHECKPOINT_DIRS:
        raise ValueError(f"which={which!r}: expected 'last' or 'best'")
    p = Path(path)
    if (p / "config.json").exists():
        return p
    names = dict.fromkeys([CHECKPOINT_DIRS[which], CHECKPOINT_DIRS["last"]])
    for name in names:
        for candidate in (p / name, p / (name + ".old")):
            if (candidate / "config.json").exists():
                return candidate
    raise FileNotFoundError(f"{p}: no checkpoint here (no config.json in {p} or in "
                            f"{' or '.join(str(p / n) for n in names)})")


def load_checkpoint(path: str | os.PathLike, which: str = "last"):
    """(model, tokenizer, trainer_state) from a run folder or a checkpoint folder.

    ``which="best"`` picks the run's lowest-validation-loss weights. The tokenizer is None
    and trainer_state {} for a plain Hugging Face folder (its tokenizers-library
    ``tokenizer.json`` is not read: give a tokenizer of your own).
    """
    folder = find_checkpoint(path, which)
    model = GPT.from_pretrained(folder)
    tokenizer = None
    for name in ("tokenizer.tok", "tokenizer.json"):
        if (folder / name).exists() and not _hf_tokenizer_file(folder / name):
            tokenizer = load_tokenizer(folder / name)
    state_path = folder / "trainer_state.json"
    state = {}
    if state_path.exists():  # only informative here: the weights and tokenizer are loaded
        try:
            state = _read_json(state_path)
        except CheckpointMismatch as e:
            warnings.warn(f"{e}; the weights were loaded, the training state is ignored",
                          stacklevel=2)
    return model, tokenizer, state


def _hf_tokenizer_file(path: Path) -> bool:
    """True for a Hugging Face ``tokenizers`` JSON (a real HF model folder has one): not a
    format tinygpt reads, so such a folder loads with no tokenizer (pass one)."""
    try:
        with open(path, encoding="utf-8") as f:
            head = f.read(4096)
    except (OSError, UnicodeDecodeError):
        return False
    return head.lstrip().startswith("{") and '"model"' in head and '"version"' in head


def check_tokenizer_fits(model: GPT, tokenizer) -> None:
    """Refuse a tokenizer with more ids than the model has embeddings: it is not the one the
    model was trained with (its ids would index past the table, or mean other tokens)."""
    if tokenizer.vocab_size > model.config.vocab_size:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} tokens but the model's "
                         f"vocab_size is {model.config.vocab_size}: use the tokenizer the model "
                         f"was trained with")


def generate_text(model: GPT, tokenizer, prompt: str, max_new_tokens: int,
                  temperature: float = 0.8, top_k: int | None = 200, top_p: float | None = None,
                  repetition_penalty: float = 1.0, seed: int | None = None) -> Iterator[str]:
    """Yield the text of each new token as it is sampled (``prompt`` not included).

    The model never sees more than ``block_size`` tokens, the context it was trained on:
    when the text outgrows it, generation restarts from the last half block (RoPE would
    run, but past block_size it extrapolates to distances it has never seen). Bytes of a
    character split across tokens are held back until the character is complete.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 0")
    check_tokenizer_fits(model, tokenizer)
    ids = encode(tokenizer, prompt)
    if not ids:
        raise ValueError("the prompt is empty; give at least one character")
    block = model.config.block_size
    # one generator for every chunk; model.stream accepts it as its seed
    rng = np.random.default_rng(seed) if seed is not None else _random.generator()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    context = ids[-block:]
    remaining = max_new_tokens
    while remaining > 0:
        n = min(remaining, max(1, block - len(context)))
        for column in model.stream(backend.xp.asarray([context]), n, temperature=temperature,
                                   top_k=top_k, top_p=top_p,
                                   repetition_penalty=repetition_penalty, seed=rng):
            token = int(column[0])
            context.append(token)
            if text := decoder.decode(_token_bytes(tokenizer, token)):
                yield text
        remaining -= n
        context = context[-max(1, block // 2):]  # (block_size 1: keep the last token)
    if text := decoder.decode(b"", final=True):
        yield text


def _token_bytes(tokenizer, token: int) -> bytes:
    if hasattr(tokenizer, "decode_bytes"):
        return tokenizer.decode_bytes([token])
    return tokenizer.decode([token]).encode("utf-8")


def plot_losses(train_curve, val_curve, path: str | os.PathLike) -> None:
    """Train (raw and smoothed) and validation loss against step, written atomically."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    fig = Figure(figsize=(7, 4), dpi=100)
    ax = fig.add_subplot()
    if train_curve:
        steps, losses = zip(*train_curve)
        ax.plot(steps, losses, color="tab:blue", alpha=0.25, linewidth=0.8)
        ax.plot(steps, _ema(losses), color="tab:blue", label="train (smoothed)")
    if val_curve:
        steps, losses = zip(*val_curve)
        ax.plot(steps, losses, "o-", color="tab:orange", label="validation")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def _ema(values, beta: float = 0.9) -> list[float]:
    """Exponential moving average, bias-corrected so the first points are not pulled to 0."""
    out, avg = [], 0.0
    for i, v in enumerate(values, start=1):
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** i))
    return out
