"""``tinygpt train`` and ``tinygpt sample``: the main job from the command line.

    tinygpt train                                  # Tiny Shakespeare, no download, ~1 minute
    tinygpt train --data my_texts/ --tokenizer bpe:1024 --max-steps 2000 --out runs/mine
    tinygpt train --config examples/baby_gpt.json  # nanoGPT's CPU "baby GPT"
    tinygpt train --out runs/mine --resume         # continue exactly where it stopped
    tinygpt sample --ckpt runs/mine --prompt "ROMEO:"

Settings come from four places, each overriding the one before: the defaults below, the
checkpoint's own settings (with ``--resume``), a ``--config`` file (JSON or TOML, the same
keys as the flags with underscores, plus any other GPTConfig / TrainConfig field), and the
flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import shutil
import sys
import time
import warnings
from pathlib import Path

from tinygpt.data import DataError
from tinygpt.train import CheckpointMismatch, TrainConfig, TrainingDiverged

_TRAIN = TrainConfig()

# (name, type, default, help): one table drives the flags, --config files and --help.
# The flag of a name is --name-with-dashes; None as default means "computed" (see help).
OPTIONS = [
    ("data", str, "builtin:shakespeare", "UTF-8 text file, folder of .txt files, or "
                                         "builtin:shakespeare (embedded, no download)"),
    ("out", str, None, "run folder (default: runs/<date>_<time>)"),
    ("tokenizer", str, "bpe:1024", "char, bpe:N (BPE with vocabulary N, trained on the "
                                   "training split) or a tokenizer file (.tok, .json, .tiktoken)"),
    ("n_layer", int, 4, "transformer blocks"),
    ("n_head", int, 4, "attention heads per block"),
    ("n_embd", int, 128, "width of the residual stream"),
    ("block_size", int, 128, "context length in tokens"),
    ("window_size", int, 64, "tokens a local-attention layer sees"),
    ("attention", str, "global,local", "attention type per layer, repeated over the layers "
                                       "(global, local or a comma list)"),
    ("positions", str, "rope", "position encoding: rope, learned or none"),
    ("dropout", float, 0.0, "dropout on embeddings and residual branches"),
    ("batch_size", int, _TRAIN.batch_size, "windows per micro-batch"),
    ("grad_accum", int, _TRAIN.grad_accum, "micro-batches per optimizer step"),
    ("max_steps", int, _TRAIN.max_steps, "total optimizer steps (a resumed run stops here too)"),
    ("lr", float, _TRAIN.lr, "peak learning rate"),
    ("min_lr", float, None, "learning rate at the end of the cosine (default: lr / 10)"),
    ("warmup_steps", int, _TRAIN.warmup_steps, "steps of linear warmup"),
    ("weight_decay", float, _TRAIN.weight_decay, "AdamW weight decay (matrices only)"),
    ("grad_clip", float, _TRAIN.grad_clip, "clip the global gradient norm to this (0: off)"),
    ("eval_interval", int, _TRAIN.eval_interval, "steps between validation losses and samples"),
    ("eval_batches", int, _TRAIN.eval_batches, "validation batches per evaluation"),
    ("checkpoint_interval", int, _TRAIN.checkpoint_interval, "steps between checkpoints"),
    ("seed", int, _TRAIN.seed, "seed of the initial weights, batches and samples"),
    ("device", str, "cpu", "cpu or cuda (CuPy)"),
]
KIND_NAMES = {str: "a string", int: "an integer", float: "a number"}
DEFAULTS = {name: default for name, _, default, _ in OPTIONS}
DEFAULTS.update(bias=False, val_fraction=0.1)  # config-file keys without a flag
MODEL_OPTIONS = ("n_layer", "n_head", "n_embd", "block_size", "window_size", "dropout", "bias")
RUN_INFO = ("data", "tokenizer", "val_fraction")  # saved with checkpoints; a resume must match

METAVARS = {"data": "PATH", "out": "DIR", "tokenizer": "SPEC", "attention": "TYPES",
            "positions": "KIND"}
ALIASES = {"attention_layers": "attention", "position_embedding": "positions"}  # GPTConfig names


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` and ``sample`` commands."""
    train = subparsers.add_parser(
        "train", help="train a GPT (default: a small model on Tiny Shakespeare, ~1 minute)",
        description="Train a GPT and write a run folder: metrics.jsonl, loss.png, checkpoint/ "
                    "(last, resumable), checkpoint-best/ (lowest validation loss), data/ (token "
                    "cache). With no flags: Tiny Shakespeare (embedded), BPE vocabulary 1024, "
                    "4 layers alternating global and local attention, RoPE.")
    for name, kind, default, text in OPTIONS:
        extra = {"choices": ("cpu", "cuda")} if name == "device" else {}
        shown = "" if default is None else f" (default: {default})"
        metavar = None if extra else METAVARS.get(name) or {int: "N", float: "X"}[kind]
        train.add_argument("--" + name.replace("_", "-"), dest=name, type=kind, default=None,
                           metavar=metavar, help=text + shown, **extra)
    train.add_argument("--config", metavar="FILE",
                       help="JSON or TOML file of settings (keys as the flags, with "
                            "underscores); flags override it")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out exactly where its checkpoint left off")
    train.set_defaults(func=run_train)

    sample = subparsers.add_parser("sample", help="generate text from a trained model",
                                   description="Stream text from a checkpoint, token by token.")
    sample.add_argument("--ckpt", required=True,
                        help="run folder (uses its checkpoint/) or a checkpoint folder")
    sample.add_argument("--prompt", default="\n", help="text to continue (default: a newline)")
    sample.add_argument("--max-new-tokens", type=int, default=300,
                        help="tokens to generate (default: 300)")
    sample.add_argument("--temperature", type=float, default=0.8,
                        help="below 1: safer, above 1: wilder, 0: greedy (default: 0.8)")
    sample.add_argument("--top-k", type=int, default=200,
                        help="sample among the k most likely tokens (default: 200; 0: all)")
    sample.add_argument("--top-p", type=float, default=None,
                        help="sample among the most likely tokens holding probability p "
                             "(default: off)")
    sample.add_argument("--repetition-penalty", type=float, default=1.0,
                        help="> 1 makes tokens already present less likely (default: 1.0)")
    sample.add_argument("--seed", type=int, default=None,
                        help="seed for a reproducible sample (default: random)")
    sample.add_argument("--tokenizer", default=None,
                        help="tokenizer file (default: the one saved with the checkpoint)")
    sample.set_defaults(func=run_sample)


# ------------------------------------------------------------------------------------ settings


def resolve_settings(args: argparse.Namespace) -> dict:
    """Defaults < the checkpoint's settings (--resume) < --config file < flags."""
    settings = dict(DEFAULTS)
    config = read_config(args.config) if args.config else {}
    flags = {name: getattr(args, name) for name, *_ in OPTIONS if getattr(args, name) is not None}
    if args.resume:
        out = flags.get("out") or config.get("out")
        if not out:
            raise DataError("--resume needs --out DIR, the run folder to continue")
        settings.update(saved_settings(out))
    settings.update(config)
    settings.update(flags)
    return settings


def read_config(path: str) -> dict:
    """Settings from a JSON or TOML file; unknown keys are an error that names them."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")  # a byte-order mark (Notepad) is not JSON
    except OSError as e:
        raise DataError(f"--config {path}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"--config {path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    kind = "TOML" if p.suffix.lower() == ".toml" else "JSON"
    try:
        if kind == "TOML":
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                raise DataError(f"--config {path}: TOML needs Python 3.11+; use JSON") from None
            values = tomllib.loads(text)
        else:
            values = json.loads(text)
    except ValueError as e:  # JSONDecodeError and TOMLDecodeError are ValueErrors
        raise DataError(f"--config {path}: not valid {kind}: {e}") from None
    if not isinstance(values, dict):
        raise DataError(f"--config {path}: expected an object of settings")
    values = {ALIASES.get(k, k): v for k, v in values.items()}
    unknown = sorted(set(values) - known_keys())
    if unknown:
        raise DataError(f"--config {path}: unknown setting(s) {unknown}; known: "
                        f"{sorted(known_keys())}")
    return values


def known_keys() -> set[str]:
    from tinygpt.model import GPTConfig

    # vocab_size comes from the tokenizer; extra holds Hugging Face fields of loaded models
    model = {f.name for f in dataclasses.fields(GPTConfig)} - {"vocab_size", "extra", *ALIASES}
    return set(DEFAULTS) | model | {f.name for f in dataclasses.fields(TrainConfig)}


def saved_settings(out: str) -> dict:
    """The settings a run folder's checkpoint was made with."""
    from tinygpt.train import find_checkpoint

    try:
        folder = find_checkpoint(out, "last")
    except FileNotFoundError:
        raise DataError(f"--resume: {out} holds no checkpoint to resume from") from None
    from tinygpt.train import _read_json

    state = _read_json(folder / "trainer_state.json")
    try:
        model = dict(_read_json(folder / "config.json")["tinygpt"])
        model.pop("vocab_size", None)
        model = {ALIASES.get(k, k): v for k, v in model.items()}
        return {**model, **state["train_config"], **state.get("run_info", {})}
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"--resume: the checkpoint in {folder} is damaged or was not written by "
                        f"tinygpt train ({type(e).__name__}: {e})") from None


def build_configs(settings: dict, vocab_size: int):
    """(GPTConfig, TrainConfig) from settings; bad values raise ValueError naming them."""
    from tinygpt.model import GPTConfig

    for name, kind, *_ in OPTIONS:  # a --config file may hold any JSON/TOML value
        v = settings.get(name)
        ok = {str: isinstance(v, str), int: isinstance(v, int) and not isinstance(v, bool),
              float: isinstance(v, (int, float)) and not isinstance(v, bool)}[kind]
        if not ok and not (v is None and name in ("out", "min_lr")) and not (
                name == "attention" and isinstance(v, list)):
            raise ValueError(f"setting {name}={v!r}: must be {KIND_NAMES[kind]}")
    if not isinstance(settings["val_fraction"], (int, float)) or isinstance(
            settings["val_fraction"], bool):
        raise ValueError(f"setting val_fraction={settings['val_fraction']!r}: must be a number")
    model_keys = {f.name for f in dataclasses.fields(GPTConfig)} - {"vocab_size", *ALIASES}
    model = {k: v for k, v in settings.items() if k in model_keys}
    pattern = settings["attention"]
    if isinstance(pattern, str):
        pattern = [p.strip() for p in pattern.split(",") if p.strip()]
    unknown = [p for p in pattern if p not in ("global", "local")] if isinstance(
        pattern, list) else []
    if not pattern or not isinstance(pattern, list) or unknown:
        raise ValueError(f"--attention {settings['attention']!r}: "
                         f"{f'unknown attention type(s) {unknown}; ' if unknown else ''}give "
                         f"global, local or a comma list such as global,local")
    n_layer = settings["n_layer"]
    if not isinstance(n_layer, int) or isinstance(n_layer, bool) or n_layer < 1:
        raise ValueError(f"n_layer={n_layer!r}: must be a positive integer")
    model["attention_layers"] = [pattern[i % len(pattern)] for i in range(n_layer)]
    model["position_embedding"] = settings["positions"]
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    train = {k: v for k, v in settings.items() if k in train_keys}
    return GPTConfig(vocab_size=vocab_size, **model), TrainConfig.from_dict(train)


# ------------------------------------------------------------------------------------ train


def run_train(args: argparse.Namespace) -> int:
    """``tinygpt train``: returns 0 when done, 130 when stopped by Ctrl-C (checkpoint saved),
    2 on bad input, 1 when training diverged."""
    created: list[Path] = []  # the folders this run makes, deepest first
    try:
        settings = resolve_settings(args)
        out = Path(settings["out"] or time.strftime("runs/%Y-%m-%d_%H-%M-%S"))
        where = Path(os.path.abspath(out))  # "a/b/.." is a, which may well exist
        created = [p for p in (where, *where.parents) if not p.exists()]
        trainer = _setup(settings, out, args.resume)
    except (DataError, CheckpointMismatch, ValueError, OSError) as e:
        for i, folder in enumerate(created):  # we made them for this run: leave nothing behind
            if folder.is_dir() and i == 0:
                shutil.rmtree(folder)  # the run folder
            elif folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # its parents (runs/), only if empty
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        summary = trainer.fit()
    except TrainingDiverged as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # e.g. a full disk while writing a checkpoint: the last whole one
        print(f"error: {e.filename or out}: {e.strerror or e} (at step {trainer.step}; the "
              f"last complete checkpoint in {out} is kept: free some space and continue "
              f"with: tinygpt train --out {shlex.quote(str(out))} --resume)", file=sys.stderr)
        return 1
    _report(trainer, summary, out)
    return 130 if summary["interrupted"] else 0


def _setup(settings: dict, out: Path, resume: bool):
    """Device, data, model and Trainer for a run (restored from its checkpoint on resume)."""
    import tinygpt
    from tinygpt.data import prepare_data
    from tinygpt.kernels import get_kernels
    from tinygpt.model import GPT
    from tinygpt.train import Trainer, find_checkpoint

    try:
        tinygpt.set_device(settings["device"])
    except (ValueError, RuntimeError) as e:
        raise DataError(f"--device {settings['device']}: {e}") from None
    # bad settings and a bad TINYGPT_KERNELS fail now, before any data is read or tokenized
    # (the vocabulary is not known yet: any size checks the rest of the model settings)
    build_configs(settings, vocab_size=1)
    get_kernels()
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out}: exists and is not a folder")
    if (out / "config.json").exists():  # a run inside it would leave the real run behind
        raise DataError(f"--out {out} is a checkpoint folder (it holds config.json); give the "
                        f"run folder, the one that holds checkpoint/ (here: {out.parent})")
    if not resume:
        try:
            find_checkpoint(out)
        except FileNotFoundError:  # a run killed before its first checkpoint/last may still
            pass  # have its best weights and metrics: never overwrite those either
        else:
            raise DataError(f"{out} already holds a run; pass --resume to continue it or "
                            f"choose another --out")
        if any((out / name).exists() for name in ("checkpoint-best", "metrics.jsonl")):
            raise DataError(f"{out} already holds a run that stopped before its first "
                            f"checkpoint (it has metrics or best weights, nothing to resume "
                            f"from): choose another --out, or delete {out}")
    if resume:  # settings the run cannot continue with: refused before the data is read
        _check_resume_settings(settings, out)
    print(f"tinygpt train: {settings['data']} -> {out}", flush=True)
    train_data, val_data, tokenizer = prepare_data(
        settings["data"], settings["tokenizer"], out / "data", settings["block_size"],
        settings["val_fraction"], progress=True)
    model_config, train_config = build_configs(settings, tokenizer.vocab_size)
    tinygpt.manual_seed(train_config.seed)
    model = GPT(model_config)
    run_info = _run_info(settings)
    trainer = Trainer(model, train_data, val_data, train_config, tokenizer=tokenizer,
                      out_dir=out, run_info=run_info)
    c, t = model_config, train_config
    if resume:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.resume()
        for w in caught:  # e.g. a raised --max-steps stretches the schedule: say so plainly
            print(f"note: {w.message}")
    layers = ",".join(dict.fromkeys(c.layer_types()))
    print(f"data: {len(train_data):,} training and {len(val_data):,} validation tokens "
          f"({settings['tokenizer']}, vocabulary {tokenizer.vocab_size}, "
          f"{train_data.bytes_per_token:.2f} bytes/token)")
    print(f"model: {model.num_parameters() / 1e6:.2f}M parameters, {c.n_layer} layers x "
          f"{c.n_head} heads x {c.n_embd} wide, context {c.block_size}, attention {layers}"
          f"{f' (window {c.window_size})' if 'local' in layers else ''}, "
          f"{c.position_embedding} positions")
    start = f"resuming at step {trainer.step}" if resume else "training"
    print(f"{start}: {t.max_steps} steps of {trainer.tokens_per_step:,} tokens, lr {t.lr:g} -> "
          f"{t.min_lr:g}, eval every {t.eval_interval} steps", flush=True)
    return trainer


def _run_info(settings: dict) -> dict:
    """The RUN_INFO settings as saved with a checkpoint, files as absolute paths: a run
    started with --data input.txt resumes from another folder, and an input.txt there is
    not taken for it."""
    from tinygpt.data import _is_path

    info = {k: settings[k] for k in RUN_INFO}
    files = {"data": lambda spec: not spec.startswith("builtin:"), "tokenizer": _is_path}
    for key, is_file in files.items():
        if isinstance(info[key], str) and is_file(info[key]):
            info[key] = str(Path(info[key]).expanduser().resolve())
    return info


def _check_resume_settings(settings: dict, out: Path) -> None:
    """What Trainer.resume refuses, found before tokenizing: another model, training or
    data setting (the vocabulary size, known only after tokenizing, is checked there), or a
    --max-steps the run has already reached."""
    from tinygpt.train import _read_json, check_resumable, find_checkpoint

    folder = find_checkpoint(out, "last")
    try:
        vocab_size = int(_read_json(folder / "config.json")["tinygpt"]["vocab_size"])
        state = _read_json(folder / "trainer_state.json")
        step = int(state["step"])
    except (KeyError, TypeError, ValueError):
        return  # a damaged checkpoint: Trainer.resume names what is wrong with it
    model_config, train_config = build_configs(settings, vocab_size)
    check_resumable(folder, state, model_config, train_config,
                    _run_info(settings))
    if step >= train_config.max_steps:
        raise DataError(f"{out} is already at step {step}, and --max-steps is "
                        f"{train_config.max_steps}: give a larger --max-steps to train further")


def _report(trainer, summary: dict, out: Path) -> None:
    minutes, seconds = divmod(summary["elapsed"], 60)
    val = ""
    if summary["val_loss"] is not None:
        val = f", val loss {summary['val_loss']:.4f}"
        if summary["val_bpb"] is not None:
            val += f" ({summary['val_bpb']:.3f} bits/byte)"
    if summary["interrupted"]:
        print(f"stopped at step {summary['step']}; checkpoint saved in {out / 'checkpoint'}\n"
              f"continue with: tinygpt train --out {shlex.quote(str(out))} --resume")
        return
    train_loss = summary["train_loss"]
    loss = f", train loss {train_loss:.4f}" if train_loss is not None else ""
    print(f"done: step {summary['step']}{loss}{val}, {int(minutes)}m{seconds:02.0f}s, "
          f"{summary['tokens_per_s']:,.0f} tokens/s")
    print(f"wrote {out}/metrics.jsonl, {out}/loss.png, {out}/checkpoint/ "
          f"(and checkpoint-best/)")
    if trainer.tokenizer is not None:  # another seed than the evaluations' samples
        print("sample:\n" + trainer.sample(seed=trainer.config.seed + 1).strip("\n"))
    # a prompt from Shakespeare only where the model learned Shakespeare: the characters of
    # "ROMEO:" need not be in another corpus's char vocabulary
    prompt = ' --prompt "ROMEO:"' if trainer.run_info.get("data") == "builtin:shakespeare" else ""
    print(f"next: tinygpt sample --ckpt {shlex.quote(str(out))}{prompt}")


# ------------------------------------------------------------------------------------ sample


def run_sample(args: argparse.Namespace) -> int:
    """``tinygpt sample``: stream a continuation of --prompt; 2 on bad input."""
    from tinygpt.io.hf import CheckpointError
    from tinygpt.tokenizer import load as load_tokenizer
    from tinygpt.train import generate_text, load_checkpoint

    try:
        with warnings.catch_warnings(record=True) as caught:  # said as one plain line each,
            warnings.simplefilter("always")  # not as a Python warning with its source line
            model, tokenizer, _ = load_checkpoint(args.ckpt)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        if args.tokenizer:
            tokenizer = load_tokenizer(args.tokenizer)
        if tokenizer is None:
            raise ValueError(f"{args.ckpt}: no tokenizer saved with this model; pass --tokenizer")
        pieces = generate_text(model, tokenizer, args.prompt, args.max_new_tokens,
                               temperature=args.temperature, top_k=args.top_k or None,
                               top_p=args.top_p, repetition_penalty=args.repetition_penalty,
                               seed=args.seed)
        first = next(pieces, "")  # bad sampling settings fail here, before any output
    except (OSError, CheckpointError, ValueError) as e:  # OSError: e.g. a folder as --tokenizer
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.stdout.write(args.prompt + first)
    sys.stdout.flush()
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0
