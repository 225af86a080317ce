"""``tinygpt tokenize train|encode|decode|show``: the tokenizer from the command line.

    tinygpt tokenize train --input input.txt --vocab-size 2048 --out shakespeare.tok
    tinygpt tokenize encode --tokenizer shakespeare.tok --text "To be, or not to be"
    echo "2061 318 257" | tinygpt tokenize decode --tokenizer gpt2.tiktoken
    tinygpt tokenize show --tokenizer gpt2.tiktoken --text "Hello world"

``--tokenizer`` takes any file ``tinygpt.tokenizer.load`` reads: our BPE or char format, or a
``.tiktoken`` rank file (read with GPT-2's pattern and <|endoftext|>).
"""

from __future__ import annotations

import argparse
import sys

from . import load
from .tokenizer import BPETokenizer


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``tokenize`` command (and its train/encode/decode/show subcommands)."""
    parser = subparsers.add_parser("tokenize", help="train a BPE tokenizer, encode, decode, show")
    commands = parser.add_subparsers(dest="tokenize_command", metavar="COMMAND", required=True)

    train = commands.add_parser("train", help="learn a byte-level BPE vocabulary from a text file")
    train.add_argument("--input", required=True,
                       help="UTF-8 text file (.gz too) or folder of .txt files to learn from")
    train.add_argument("--vocab-size", type=int, required=True, help="256 + merges + specials")
    train.add_argument("--out", required=True, help="where to write the tokenizer (.tok)")
    train.add_argument("--pattern", default="gpt2", help="gpt2, gpt4 or a regex (default gpt2)")
    train.add_argument(
        "--special",
        action="append",
        default=[],
        metavar="TOKEN",
        help="a special token, e.g. '<|endoftext|>' (repeatable)",
    )
    train.add_argument("--quiet", action="store_true", help="no progress bar")

    for name, what in (("encode", "text -> ids"), ("show", "text -> tokens, one per line")):
        sub = commands.add_parser(name, help=what)
        sub.add_argument("--tokenizer", required=True, help="tokenizer file (.tok, .tiktoken)")
        sub.add_argument("--text", help="the text (default: read stdin)")
        sub.add_argument(
            "--allow-special",
            action="store_true",
            help="encode special-token strings as their ids (default: they are an error)",
        )

    decode = commands.add_parser("decode", help="ids -> text")
    decode.add_argument("--tokenizer", required=True, help="tokenizer file (.tok, .tiktoken)")
    decode.add_argument("--ids", help="ids separated by spaces or commas (default: read stdin)")

    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    """Run a ``tokenize`` subcommand; returns the exit code (2 on bad input)."""
    try:
        if args.tokenize_command == "train":
            return _train(args)
        tokenizer = load(args.tokenizer)
        if args.tokenize_command == "decode":
            text = args.ids if args.ids is not None else sys.stdin.read()
            print(tokenizer.decode(_parse_ids(text)))
            return 0
        text = args.text if args.text is not None else sys.stdin.read()
        ids = _encode(tokenizer, text, args.allow_special)
        if args.tokenize_command == "encode":
            print(" ".join(map(str, ids)))
        else:
            _show(tokenizer, ids)
        return 0
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _train(args: argparse.Namespace) -> int:
    from tinygpt.data import load_text  # the trainer's reader: .gz, folders, BOM, UTF-8 errors

    text = load_text(args.input)
    tokenizer = BPETokenizer.train(
        text,
        args.vocab_size,
        pattern=args.pattern,
        special_tokens=args.special,
        verbose=not args.quiet,
    )
    tokenizer.save(args.out)
    print(f"wrote {args.out}: {tokenizer}")
    return 0


def _encode(tokenizer, text: str, allow_special: bool) -> list[int]:
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode(text, allowed_special="all" if allow_special else "none")
    return tokenizer.encode(text)


def _parse_ids(text: str) -> list[int]:
    words = text.replace(",", " ").replace("[", " ").replace("]", " ").split()
    ids = []
    for w in words:
        try:
            ids.append(int(w))
        except ValueError:  # "--5" and "²" pass str.isdigit() checks but are no ints
            raise ValueError(f"ids must be integers, got {w!r}") from None
    return ids


def _show(tokenizer, ids: list[int]) -> None:
    """One line per token: its id and its text (bytes that are not UTF-8 shown as \\xHH)."""
    if isinstance(tokenizer, BPETokenizer):
        pieces = [_readable(b) for b in tokenizer.decode_tokens_bytes(ids)]
    else:
        pieces = [repr(tokenizer.decode([i])) for i in ids]
    width = len(str(max(ids, default=0)))
    for i, piece in zip(ids, pieces):
        print(f"{i:>{width}}  {piece}")
    print(f"{len(ids)} tokens")


def _readable(token: bytes) -> str:
    try:
        return repr(token.decode("utf-8"))
    except UnicodeDecodeError:
        return repr(token)  # part of a multi-byte character: show the raw bytes
