"""Tokenizer files: our own text format, tiktoken's ``.tiktoken`` ranks, GPT-2's two files.

Our format (``.tok`` by convention) is UTF-8 text, one record per line, meant to be read:

    tinygpt-bpe v1
    pattern "'(?:[sdmt]|ll|ve|re)| ?\\p{L}++| ..."
    special "<|endoftext|>" 50256
    ranks 50256
    0 "!"
    ...
    220 " "
    464 " the"
    198 "\\x0a"

- line 1 is the magic line;
- ``pattern`` is followed by the split regex as a JSON string;
- one ``special`` line per special token: the string as JSON, then its id;
- ``ranks N`` is followed by exactly N lines ``rank "token"``, ranks 0..N-1 in order. A token
  is shown as text inside double quotes; printable characters stand for themselves and
  every other byte (control characters, bytes that are not UTF-8 on their own, ``"`` and
  ``\\``) is written ``\\xHH``.
Lines starting with ``#`` and blank lines are ignored. No pickle: loading never runs code.

Every parse error names the file and the line.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re

from .bytes_unicode import text_to_token

MAGIC = "tinygpt-bpe v1"
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
_SPECIAL = re.compile(r"<\|.*\|>")  # how GPT-2's files spell special tokens: <|endoftext|>


class TokenizerFileError(ValueError):
    """A tokenizer file that cannot be read; the message names the file and line."""

    def __init__(self, path: str | os.PathLike, line: int | None, message: str):
        where = f"{os.fspath(path)}, line {line}" if line is not None else os.fspath(path)
        super().__init__(f"{where}: {message}")


# --- our format -------------------------------------------------------------------------------


def escape_token(token: bytes) -> str:
    """Token bytes -> quoted text: b' the' -> '" the"', b'\\n' -> '"\\x0a"'."""
    out = []
    # surrogateescape keeps bytes that are not valid UTF-8 as lone surrogates (not printable)
    for ch in token.decode("utf-8", errors="surrogateescape"):
        if ch.isprintable() and ch not in '"\\':
            out.append(ch)
        else:
            out.extend(f"\\x{b:02x}" for b in ch.encode("utf-8", errors="surrogateescape"))
    return '"' + "".join(out) + '"'


def unescape_token(quoted: str) -> bytes:
    """Inverse of :func:`escape_token`; raises ValueError on a malformed token."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        raise ValueError(f"a token must be in double quotes, got {quoted!r}")
    # split() puts the hex digits of each \xHH at odd positions, literal text at even ones
    pieces = _ESCAPE.split(quoted[1:-1])
    out = bytearray()
    for i, piece in enumerate(pieces):
        if i % 2:
            out.append(int(piece, 16))
        elif '"' in piece or "\\" in piece:
            raise ValueError(f'a bare " or \\ in token {quoted!r} (write them as \\xHH)')
        else:
            out += piece.encode("utf-8")
    return bytes(out)


def save_bpe(
    path: str | os.PathLike,
    ranks: dict[bytes, int],
    pattern: str,
    special_tokens: dict[str, int],
) -> None:
    """Write a tokenizer in our format (see the module docstring)."""
    lines = [MAGIC, f"pattern {json.dumps(pattern)}"]
    lines += [f"special {json.dumps(s)} {i}" for s, i in special_tokens.items()]
    lines.append(f"ranks {len(ranks)}")
    for token, rank in sorted(ranks.items(), key=_by_rank):
        lines.append(f"{rank} {escape_token(token)}")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(lines) + "\n")


def _by_rank(item: tuple[bytes, int]) -> int:
    return item[1]


def load_bpe(path: str | os.PathLike) -> tuple[dict[bytes, int], str, dict[str, int]]:
    """Read our format: (ranks, pattern, special_tokens)."""
    lines = _read_utf8(path).replace("\r\n", "\n").split("\n")  # (an editor's CRLF too)
    if not lines or lines[0].strip() != MAGIC:
        raise TokenizerFileError(path, 1, f"expected the first line {MAGIC!r}")
    pattern, specials, ranks = None, {}, {}
    expected_ranks = None
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip() or line.startswith("#"):
            continue
        try:
            if expected_ranks is not None:
                rank_text, _, quoted = line.partition(" ")
                rank = _number(rank_text)
                if rank != len(ranks):
                    raise ValueError(f"expected rank {len(ranks)}, found {rank}")
                token = unescape_token(quoted)
                if not token:
                    raise ValueError("a token must have at least one byte")
                if token in ranks:
                    raise ValueError(f"token {quoted} already has rank {ranks[token]}")
                ranks[token] = rank
            elif line.startswith("pattern "):
                if pattern is not None:
                    raise ValueError("a second 'pattern' line")
                pattern = json.loads(line[len("pattern ") :])
                if not isinstance(pattern, str):
                    raise ValueError("the pattern must be a JSON string")
            elif line.startswith("special "):
                name_json, _, id_text = line[len("special ") :].rpartition(" ")
                name = json.loads(name_json)
                if not isinstance(name, str) or not name:
                    raise ValueError("a special token must be a non-empty JSON string")
                if name in specials:
                    raise ValueError(f"special token {name!r} is listed twice")
                special_id = _number(id_text)
                if special_id in specials.values():
                    raise ValueError(f"special id {special_id} is listed twice")
                specials[name] = special_id
            elif line.startswith("ranks "):
                expected_ranks = _number(line[len("ranks ") :])
            else:
                raise ValueError(f"unknown record {line[:40]!r}")
        except ValueError as e:  # json.JSONDecodeError is a ValueError too
            raise TokenizerFileError(path, n, str(e)) from None
    last = len(lines) - (lines[-1] == "")
    if pattern is None:
        raise TokenizerFileError(path, last, "no 'pattern' line")
    if expected_ranks is None:
        raise TokenizerFileError(path, last, "no 'ranks N' line")
    if len(ranks) != expected_ranks:
        raise TokenizerFileError(
            path, last, f"truncated: 'ranks {expected_ranks}' but the file ends after {len(ranks)}"
        )
    return ranks, pattern, specials


def _number(text: str) -> int:
    """A count, rank or id as we write them: ASCII digits only (int() would also take
    "1_00" or Arabic-Indic digits)."""
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"expected a number, found {text[:20]!r}")
    return int(text)


def _read_utf8(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")  # an editor's byte-order mark is not part of line 1
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise TokenizerFileError(path, line, f"not UTF-8 text ({e.reason})") from None


# --- tiktoken's format --------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """'tinygpt' for our BPE format, 'char' for a CharTokenizer file (JSON), else 'tiktoken'
    (base64 token, space, rank on each line)."""
    with open(path, "rb") as f:
        first = f.readline().strip().removeprefix(b"\xef\xbb\xbf")  # a byte-order mark
    if first.startswith(b"tinygpt-bpe"):  # any version: load_bpe says if it is not ours
        return "tinygpt"
    if first.startswith(b"{") and b'"tinygpt-char"' in first:
        return "char"
    return "tiktoken"


def load_tiktoken(path: str | os.PathLike) -> dict[bytes, int]:
    """Read a ``.tiktoken`` file: lines of ``base64(token) rank``."""
    ranks: dict[bytes, int] = {}
    seen_ranks: set[int] = set()
    with open(path, "rb") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                token_b64, rank_text = line.split()
                token = base64.b64decode(token_b64, validate=True)
                rank = int(rank_text)
            except (ValueError, binascii.Error):
                raise TokenizerFileError(
                    path, n, f"expected 'base64-token rank', found {line[:60]!r}"
                ) from None
            if token in ranks or rank in seen_ranks:
                raise TokenizerFileError(path, n, f"token {token!r} or rank {rank} repeats")
            ranks[token] = rank
            seen_ranks.add(rank)
    if not ranks:
        raise TokenizerFileError(path, None, "no ranks in the file")
    return ranks


def save_tiktoken(path: str | os.PathLike, ranks: dict[bytes, int]) -> None:
    """Write ranks in tiktoken's format (what ``tiktoken.load.load_tiktoken_bpe`` reads)."""
    with open(path, "wb") as f:
        for token, rank in sorted(ranks.items(), key=_by_rank):
            f.write(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")


# --- GPT-2's encoder.json + vocab.bpe ----------------------------------------------------------


def load_gpt2_files(
    encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike
) -> tuple[dict[bytes, int], dict[str, int]]:
    """Read GPT-2's ``encoder.json`` (token text -> id) and ``vocab.bpe`` (merges in order).

    Tokens are written with the byte-to-unicode mapping of ``bytes_unicode.py``. GPT-2's
    ids are ranks: the 256 byte tokens first, then merge i (line i + 1 of vocab.bpe) has id
    256 + i. Entries of encoder.json that are neither a byte nor a merge (``<|endoftext|>``)
    become special tokens.
    """
    try:
        encoder = json.loads(_read_utf8(encoder_json))
    except json.JSONDecodeError as e:
        raise TokenizerFileError(encoder_json, e.lineno, e.msg) from None
    if not isinstance(encoder, dict):
        raise TokenizerFileError(encoder_json, 1, "expected a JSON object of token -> id")

    ranks: dict[bytes, int] = {}
    merged_texts = set()
    merge_lines = _read_utf8(vocab_bpe).split("\n")
    for n, line in enumerate(merge_lines, start=1):
        if not line or line.startswith("#version"):
            continue
        parts = line.split(" ")
        if len(parts) != 2 or not all(parts):
            raise TokenizerFileError(vocab_bpe, n, f"expected 'left right', found {line[:60]!r}")
        text = parts[0] + parts[1]
        rank = 256 + len(merged_texts)
        if encoder.get(text) != rank:
            raise TokenizerFileError(
                vocab_bpe,
                n,
                f"merge {line!r} makes {text!r}, whose id in {os.fspath(encoder_json)} is "
                f"{encoder.get(text)!r}, not {rank} (its merge order)",
            )
        merged_texts.add(text)
        ranks[_gpt2_token(text, vocab_bpe, n)] = rank

    specials = {}
    for text, token_id in encoder.items():
        if text in merged_texts:
            continue
        if len(text) == 1 and isinstance(token_id, int) and 0 <= token_id < 256:
            ranks[_gpt2_token(text, encoder_json, None)] = token_id
        elif _SPECIAL.fullmatch(text):
            specials[text] = token_id
        else:
            raise TokenizerFileError(
                vocab_bpe,
                len(merge_lines),
                f"{os.fspath(encoder_json)} has the token {text!r} (id {token_id!r}) but no merge "
                f"here makes it; is this file truncated? (it has {len(merged_texts)} merges)",
            )
    return ranks, specials


def _gpt2_token(text: str, path: str | os.PathLike, line: int | None) -> bytes:
    try:
        return text_to_token(text)
    except KeyError as e:
        raise TokenizerFileError(
            path,
            line,
            f"token {text!r} has the character {e.args[0]!r}, outside GPT-2's "
            "byte-to-unicode mapping",
        ) from None
