"""``tinygpt viz attention``: draw what a trained model attends to.

    tinygpt viz attention --ckpt runs/shakespeare --text "To be, or not to be" --out attn.png
    tinygpt viz attention --ckpt runs/shakespeare --text "..." --layer 1 --head 0 --out map.svg
    tinygpt viz attention --ckpt runs/shakespeare --text "..." --html attn.html

``--ckpt`` is a run folder (its ``checkpoint/`` subfolder is used) or a model folder with
config.json + model.safetensors, loaded by ``tinygpt.train.load_checkpoint``; the tokenizer
is the one saved beside the weights unless ``--tokenizer`` names another file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FIGURE_SUFFIXES = (".png", ".svg", ".pdf")


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``viz`` command (and its ``attention`` subcommand)."""
    parser = subparsers.add_parser("viz", help="draw attention maps of a model")
    commands = parser.add_subparsers(dest="viz_command", metavar="COMMAND", required=True)
    attn = commands.add_parser("attention", help="attention maps for a text (PNG/SVG, HTML)")
    attn.add_argument("--ckpt", required=True,
                      help="run folder (uses DIR/checkpoint) or folder with config.json")
    attn.add_argument("--text", required=True, help="the text to run through the model")
    attn.add_argument("--out", help="figure to write: .png, .svg or .pdf")
    attn.add_argument("--html", help="also (or instead) write an interactive HTML page")
    attn.add_argument("--layer", type=int, help="only this layer (default: all)")
    attn.add_argument("--head", type=int, help="only this head (default: all)")
    attn.add_argument("--tokenizer", help="tokenizer file (default: the one saved with the model)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run ``viz attention``; returns the exit code (2 on bad input)."""
    try:
        return _attention(args)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _attention(args: argparse.Namespace) -> int:
    if not args.out and not args.html:
        raise ValueError("nothing to write: give --out FILE.png|.svg and/or --html FILE")
    if args.out and Path(args.out).suffix.lower() not in FIGURE_SUFFIXES:
        raise ValueError(f"--out {args.out}: use a {', '.join(FIGURE_SUFFIXES)} file name")
    for flag, path in (("--out", args.out), ("--html", args.html)):  # before any work
        if path and not Path(path).parent.is_dir():
            raise ValueError(f"{flag} {path}: the folder {Path(path).parent} does not exist")
    from tinygpt import viz  # first: it picks a headless backend before pyplot loads
    from tinygpt.tensor import no_grad

    model, tokenizer = load_model_and_tokenizer(args.ckpt, args.tokenizer)
    config = model.config
    ids = viz.encode_text(tokenizer, args.text)
    if not ids:
        raise ValueError("--text is empty: there is nothing to attend to")
    if config.position_embedding == "learned" and len(ids) > config.block_size:
        raise ValueError(f"--text is {len(ids)} tokens; this model reads at most block_size="
                         f"{config.block_size} tokens")
    if len(ids) > config.block_size:  # RoPE runs on, but past what training ever showed
        print(f"note: --text is {len(ids)} tokens, more than the block_size "
              f"{config.block_size} the model was trained on; positions past it are "
              f"extrapolated", file=sys.stderr)
    model.eval()
    with no_grad():
        out = model(np.array([ids]), output_attentions=True)
    tokens = viz.token_labels(tokenizer, ids)
    windows = [config.window_size if t == "local" else None for t in config.layer_types()]

    if args.out:
        import matplotlib.pyplot as plt

        fig = viz.plot_attention(out.attentions, tokens, layer=args.layer, head=args.head,
                                 window=windows)
        fig.savefig(args.out, dpi=120)
        plt.close(fig)
        print(f"wrote {args.out}")
    if args.html:
        page = viz.attention_html(out.attentions, tokens, window=windows,
                                  title=f"attention: {Path(args.ckpt).name}")
        Path(args.html).write_text(page, encoding="utf-8")
        print(f"wrote {args.html}")
    print(f"{config.n_layer} layers x {config.n_head} heads, {len(ids)} tokens")
    return 0


def load_model_and_tokenizer(ckpt: str, tokenizer_path: str | None = None):
    """The model and tokenizer of a run folder or checkpoint folder (the trainer's loader)."""
    from tinygpt.tokenizer import load
    from tinygpt.train import check_tokenizer_fits, load_checkpoint

    if not Path(ckpt).is_dir():
        raise FileNotFoundError(f"--ckpt {ckpt}: no such folder")
    model, tokenizer, _ = load_checkpoint(ckpt)
    if tokenizer_path is not None:
        tokenizer = load(tokenizer_path)
    if tokenizer is None:
        raise FileNotFoundError(f"--ckpt {ckpt}: no tokenizer file beside the weights "
                                f"(tokenizer.tok or tokenizer.json); pass --tokenizer PATH")
    check_tokenizer_fits(model, tokenizer)
    return model, tokenizer
