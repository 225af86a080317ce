"""From a corpus to batches of token ids: text, tokenizer, a memory-mapped cache, windows.

The path, in the order it runs:

1. ``iter_text(source)``: the corpus as a stream of text pieces. A source is the embedded
   Tiny Shakespeare (``builtin:shakespeare``, shipped gzipped inside the package, so
   training works offline), a UTF-8 text file (``.gz`` too), or a folder of ``.txt`` files
   (read in sorted order). ``load_text`` joins the pieces into one string.
2. The split: the last ``val_fraction`` of the corpus bytes (from the next line break on)
   is the validation text; everything before it is the training text.
3. ``build_tokenizer``: ``"char"`` (every character of the corpus), ``"bpe:N"`` (our BPE,
   trained on the training text, vocabulary N) or a saved tokenizer / ``.tiktoken`` file.
4. ``prepare_data``: encode both splits piece by piece into ``train.bin`` / ``val.bin``
   (uint16 ids, uint32 when the vocabulary needs it) in the run folder, then map them
   back with ``np.memmap``: a corpus of gigabytes is tokenized once, with a progress bar,
   and is never held in memory. A second run with the same corpus and tokenizer reuses
   the files.
5. ``TokenDataset.get_batch``: random contiguous windows; ``y`` is ``x`` shifted by one.

Bad input (a missing file, an empty or non-UTF-8 file, a corpus shorter than one window,
a vocabulary too large for the ids) raises ``DataError`` naming the problem, and leaves
no half-written file behind: everything is written under temporary names and renamed
only when it is complete.
"""

from __future__ import annotations

import codecs
import gzip
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from tinygpt import backend
from tinygpt.tokenizer import BPETokenizer, CharTokenizer
from tinygpt.tokenizer import load as load_tokenizer

BUILTIN = {"shakespeare": Path(__file__).parent / "corpora" / "shakespeare.txt.gz"}
ID_DTYPES = (np.uint16, np.uint32)  # token files use the smallest that holds the vocabulary
PIECE_BYTES = 1 << 22  # text is read, decoded and encoded 4 MiB at a time
BPE_TRAIN_BYTES = 1 << 24  # bpe:N learns its merges from at most the first 16 MiB of training text
CACHE_VERSION = 2  # 2: a line break between files that do not end with one


class DataError(ValueError):
    """Unusable training data; the message names the source and what is wrong with it."""


# ---------------------------------------------------------------------------------- corpus


def corpus_files(source: str | os.PathLike) -> list[Path]:
    """The files a source stands for, in reading order."""
    text = os.fspath(source)
    if text.startswith("builtin:"):
        name = text[len("builtin:"):]
        if name not in BUILTIN:
            raise DataError(f"unknown built-in corpus {text!r}; available: "
                            f"{', '.join('builtin:' + n for n in BUILTIN)}")
        return [BUILTIN[name]]
    path = Path(text).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"{path}: the folder has no .txt files")
        return files
    if not path.exists():
        raise DataError(f"{path}: no such file or folder (give a UTF-8 text file, a folder of "
                        f".txt files, or builtin:shakespeare)")
    return [path]


BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark, which some editors put at a file's start


def _chunks(path: Path, size: int) -> Iterator[bytes]:
    """The bytes of a corpus file in chunks of ``size`` (uncompressed for .gz), then b"";
    a damaged or truncated .gz file is a DataError that names it."""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            while chunk := f.read(size):
                yield chunk
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataError(f"{path}: damaged or truncated gzip file ({e})") from None
    yield b""


def corpus_size(source: str | os.PathLike) -> int:
    """Bytes of text in a source (gzipped files are counted uncompressed; a UTF-8 byte-order
    mark is not text: iter_text drops it, so it is not counted either; the line break
    iter_text puts between files is)."""
    total = 0
    files = corpus_files(source)
    for i, path in enumerate(files):
        if path.suffix != ".gz":
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                size -= len(BOM) if f.read(len(BOM)) == BOM else 0
                if size:
                    f.seek(-1, os.SEEK_END)
                last = f.read(1) if size else b""
        else:
            size, last = 0, b""
            for chunk in _chunks(path, PIECE_BYTES):
                if size == 0 and chunk.startswith(BOM):
                    chunk = chunk[len(BOM):]
                size += len(chunk)
                last = chunk[-1:] or last
        total += size + (i < len(files) - 1 and size > 0 and last != b"\n")
    return total


def iter_text(source: str | os.PathLike, piece_bytes: int = PIECE_BYTES) -> Iterator[str]:
    """The corpus as text pieces of about ``piece_bytes``, files one after another (with a
    line break between two where the first does not end with one).

    A piece ends just before a line that starts with a visible character: cutting there
    does not change how the GPT-2 and GPT-4 split patterns cut the text into words (only
    a text without such line breaks for two whole pieces is cut anywhere). A file that is
    not UTF-8 raises DataError with the byte offset of the first bad byte.
    """
    last_newline = True
    for path in corpus_files(source):
        if not last_newline:  # the file before ended mid-line: its last word and this
            yield "\n"  # file's first must not run together (corpus_size counts it)
            last_newline = True
        decoder = codecs.getincrementaldecoder("utf-8")()
        offset, rest = 0, ""
        for chunk in _chunks(path, piece_bytes):  # ends with b""
            try:
                text = rest + decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as e:
                pending = len(e.object) - len(chunk)  # bytes the decoder held back
                raise DataError(f"{path}: not UTF-8 text (byte {offset - pending + e.start}: "
                                f"{e.reason}); convert it to UTF-8 first") from None
            if offset == 0:
                text = text.removeprefix("\ufeff")  # a byte-order mark is not text
            offset += len(chunk)
            if not chunk:
                if text:
                    last_newline = text.endswith("\n")
                    yield text
                break
            cut = _line_cut(text)
            if not cut and len(text) > 2 * piece_bytes:
                cut = len(text)  # no line break in two whole pieces: cut anywhere
            if cut:
                last_newline = text[cut - 1] == "\n"
                yield text[:cut]
            rest = text[cut:]


def _line_cut(text: str) -> int:
    """Index just after the last newline that is followed by a visible character (0: none)."""
    end = len(text) - 1  # the character after the newline must be in the text
    while (i := text.rfind("\n", 0, end)) != -1:
        if not text[i + 1].isspace():
            return i + 1
        end = i
    return 0


def load_text(source: str | os.PathLike) -> str:
    """The whole corpus as one string (fine for small corpora; big ones go through
    ``prepare_data``, which streams)."""
    text = "".join(iter_text(source))
    if not text:
        raise DataError(f"{os.fspath(source)}: the corpus is empty")
    return text


def split_text(source: str | os.PathLike, val_fraction: float = 0.1,
               piece_bytes: int = PIECE_BYTES) -> Iterator[tuple[str, str]]:
    """("train" | "val", piece) pairs: validation is the last ``val_fraction`` of the
    bytes, starting at the next line break so no line is cut in two."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction!r} must be between 0 and 1")
    total = corpus_size(source)
    if total == 0:
        raise DataError(f"{os.fspath(source)}: the corpus is empty")
    boundary = round(total * (1.0 - val_fraction))  # first byte of the validation text
    seen = 0
    for piece in iter_text(source, piece_bytes):
        data = piece.encode("utf-8")
        if seen >= boundary:
            yield "val", piece
        elif seen + len(data) <= boundary:
            yield "train", piece
        else:  # the boundary falls inside this piece: move it to the next line start
            cut = data.find(b"\n", boundary - seen) + 1
            if cut == 0:  # no line break left: cut at the boundary, on a character start
                cut = boundary - seen
                while data[cut] & 0xC0 == 0x80:  # a UTF-8 continuation byte
                    cut += 1
            yield "train", data[:cut].decode("utf-8")
            if cut < len(data):
                yield "val", data[cut:].decode("utf-8")
        seen += len(data)


# ---------------------------------------------------------------------------------- tokenizer


def build_tokenizer(spec: str, text: str | Iterable[str],
                    cache_dir: str | os.PathLike | None = None,
                    verbose: bool = False) -> BPETokenizer | CharTokenizer:
    """A tokenizer from a spec: "char", "bpe:N" or the path of a saved tokenizer.

    ``text`` (a string or an iterable of pieces) is what "char" and "bpe:N" learn from;
    a path ignores it. With ``cache_dir``, a trained tokenizer is saved there and the
    next call with the same spec loads it instead of training again. ``verbose`` shows
    BPE training progress.
    """
    spec = str(spec)
    if _is_path(spec):
        path = _tokenizer_file(spec)
        try:
            return load_tokenizer(path)
        except (ValueError, OSError) as e:
            raise DataError(f"tokenizer {spec!r}: {e}") from None

    cached = Path(cache_dir) / _tokenizer_filename(spec) if cache_dir is not None else None
    if cached is not None and cached.exists():
        return load_tokenizer(cached)
    pieces = [text] if isinstance(text, str) else text
    if spec == "char":
        chars: set[str] = set()
        for piece in pieces:
            chars.update(piece)
        if not chars:
            raise DataError("tokenizer 'char': the text is empty")
        tokenizer: BPETokenizer | CharTokenizer = CharTokenizer(sorted(chars))
    else:
        vocab_size = _bpe_vocab_size(spec)
        sample = _take_bytes(pieces, BPE_TRAIN_BYTES)
        try:
            tokenizer = BPETokenizer.train(sample, vocab_size, verbose=verbose)
        except ValueError as e:
            raise DataError(f"tokenizer {spec!r}: {e} (a smaller N in 'bpe:N', or 'char')") \
                from None
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(cached.name + ".tmp")
        tokenizer.save(tmp)
        os.replace(tmp, cached)
    return tokenizer


def _bpe_vocab_size(spec: str) -> int:
    try:
        vocab_size = int(spec[len("bpe:"):])
    except ValueError:
        vocab_size = 0
    if vocab_size < 257:
        raise DataError(f"tokenizer {spec!r}: bpe:N needs an integer vocabulary size N > 256 "
                        f"(the 256 bytes plus at least one merge), e.g. bpe:512")
    return vocab_size


def _tokenizer_filename(spec: str) -> str:
    return "tokenizer-char.json" if spec == "char" else f"tokenizer-bpe-{spec[4:]}.tok"


def _take_bytes(pieces: Iterable[str], limit: int) -> str:
    """The first ``limit`` bytes (about) of a stream of pieces, as one string."""
    out, size = [], 0
    for piece in pieces:
        out.append(piece)
        size += len(piece.encode("utf-8"))
        if size >= limit:
            break
    return "".join(out)


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text``; special-token strings (``<|endoftext|>``) become their ids."""
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode(text, allowed_special="all")
    return tokenizer.encode(text)


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned integer type of ``ID_DTYPES`` that holds ids 0..vocab_size-1."""
    for dtype in ID_DTYPES:
        if vocab_size - 1 <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    widest = np.dtype(ID_DTYPES[-1])
    raise DataError(f"a vocabulary of {vocab_size} tokens does not fit in {widest.name} token "
                    f"ids (at most {np.iinfo(widest).max + 1} tokens)")


# ---------------------------------------------------------------------------------- datasets


class TokenDataset:
    """A long 1-D array of token ids, served as windows of ``block_size + 1`` tokens.

    ``len()`` is the number of tokens. ``num_bytes`` (the bytes of text the ids encode)
    gives ``bytes_per_token``, which turns a loss per token into bits per byte.
    """

    def __init__(self, ids, block_size: int, num_bytes: int | None = None):
        ids = ids if isinstance(ids, np.ndarray) else np.asarray(ids)
        if ids.ndim != 1 or not np.issubdtype(ids.dtype, np.integer):
            raise DataError(f"TokenDataset: ids must be a 1-D integer array, got {ids.dtype} "
                            f"of shape {ids.shape}")
        if not isinstance(block_size, (int, np.integer)) or block_size < 1:
            raise DataError(f"TokenDataset: block_size must be a positive integer, got "
                            f"{block_size!r}")
        if len(ids) < block_size + 1:
            raise DataError(f"only {len(ids)} tokens, fewer than one window of block_size + 1 = "
                            f"{block_size + 1}: use a longer text or a smaller --block-size")
        self.ids, self.block_size, self.num_bytes = ids, int(block_size), num_bytes

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def bytes_per_token(self) -> float | None:
        return self.num_bytes / len(self.ids) if self.num_bytes else None

    def get_batch(self, batch_size: int, rng: np.random.Generator):
        """``batch_size`` windows at random offsets drawn from ``rng``: (x, y), each
        (batch_size, block_size) int64 arrays of the active backend, y = x shifted by one."""
        starts = rng.integers(0, len(self.ids) - self.block_size, size=batch_size)
        return self._windows(starts)

    def eval_batches(self, num_batches: int, batch_size: int) -> Iterator[tuple]:
        """``num_batches`` batches of windows spread evenly over the whole array: the same
        windows every time, so validation losses of different steps and runs compare."""
        starts = np.linspace(0, len(self.ids) - self.block_size - 1, num_batches * batch_size)
        starts = starts.round().astype(np.int64)
        for i in range(num_batches):
            yield self._windows(starts[i * batch_size:(i + 1) * batch_size])

    def _windows(self, starts: np.ndarray):
        rows = starts[:, None] + np.arange(self.block_size + 1)  # [B] -> [B, T + 1]
        windows = np.asarray(self.ids[rows], dtype=np.int64)
        x, y = np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:])
        return backend.xp.asarray(x), backend.xp.asarray(y)

    def __repr__(self) -> str:
        return f"TokenDataset({len(self)} tokens, block_size={self.block_size})"


def prepare_data(source: str | os.PathLike, tokenizer_spec: str, out_dir: str | os.PathLike,
                 block_size: int, val_fraction: float = 0.1, progress: bool = False):
    """Tokenize a corpus into ``out_dir`` (once) and return (train, val, tokenizer).

    ``out_dir`` receives ``train.bin`` and ``val.bin`` (raw token ids), ``meta.json`` (what
    they were built from, written last: it marks the cache complete) and the trained
    tokenizer. If ``meta.json`` matches the source files (names, sizes, modification times),
    the tokenizer spec and ``val_fraction``, nothing is tokenized again.
    """
    out = Path(out_dir)
    fingerprint = _fingerprint(source, tokenizer_spec, val_fraction)
    meta, tokenizer = _read_cache(out, fingerprint, tokenizer_spec)
    if meta is None:
        meta, tokenizer = _tokenize(source, tokenizer_spec, out, val_fraction, block_size,
                                    fingerprint, progress)
    dtype = np.dtype(meta["dtype"])
    datasets = []
    for split in ("train", "val"):
        n = meta[split]["tokens"]
        _check_length(split, n, block_size, source)
        ids = np.memmap(out / f"{split}.bin", dtype=dtype, mode="r", shape=(n,))
        datasets.append(TokenDataset(ids, block_size, meta[split]["bytes"]))
    return datasets[0], datasets[1], tokenizer


def _is_path(spec: str) -> bool:
    return spec != "char" and not str(spec).startswith("bpe:")


def _tokenizer_file(spec: str) -> Path:
    """The saved tokenizer a spec names; an error that lists the choices if there is none."""
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DataError(f"tokenizer {spec!r}: not 'char', 'bpe:N' (e.g. bpe:512) or an "
                        f"existing tokenizer file")
    return path


def _check_length(split: str, n: int, block_size: int, source, unit: str = "tokens") -> None:
    """A split must hold one window of block_size + 1 tokens (``unit="bytes"``: n bytes, at
    most n tokens whatever the tokenizer)."""
    if n < block_size + 1:
        name = "training" if split == "train" else "validation"
        raise DataError(f"{os.fspath(source)}: the {name} split has {n} {unit}, fewer than one "
                        f"window of block_size + 1 = {block_size + 1} tokens: use a longer text "
                        f"or a smaller --block-size")


def _fingerprint(source, tokenizer_spec: str, val_fraction: float) -> dict:
    """What a token cache depends on: the files (name, size, mtime), tokenizer, split."""
    def stat(p: Path) -> list:
        s = p.stat()
        return [str(p.resolve()), s.st_size, s.st_mtime_ns]

    files = [stat(p) for p in corpus_files(source)]
    tok = [tokenizer_spec, *stat(_tokenizer_file(tokenizer_spec))[1:]] if _is_path(
        tokenizer_spec) else [tokenizer_spec]
    return {"version": CACHE_VERSION, "files": files, "tokenizer": tok,
            "val_fraction": val_fraction}


def _read_cache(out: Path, fingerprint: dict, tokenizer_spec: str):
    """(meta, tokenizer) of a complete cache built from the same inputs, else (None, None)."""
    try:
        meta = json.loads((out / "meta.json").read_text())
        if meta.get("fingerprint") != fingerprint:
            return None, None
        itemsize = np.dtype(meta["dtype"]).itemsize
        for split in ("train", "val"):
            if (out / f"{split}.bin").stat().st_size != meta[split]["tokens"] * itemsize:
                return None, None
        if _is_path(tokenizer_spec):
            return meta, build_tokenizer(tokenizer_spec, "")
        return meta, load_tokenizer(out / _tokenizer_filename(tokenizer_spec))
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def _tokenize(source, tokenizer_spec: str, out: Path, val_fraction: float, block_size: int,
              fingerprint: dict, progress: bool) -> tuple[dict, BPETokenizer | CharTokenizer]:
    """Build the tokenizer and both token files under temporary names; rename when done."""
    from tqdm import tqdm

    train_pieces = (p for split, p in split_text(source, val_fraction) if split == "train")
    all_pieces = (p for _, p in split_text(source, val_fraction))
    # char: every character of the corpus (as nanoGPT), so validation text always encodes;
    # bpe:N learns its merges from the training text only
    try:
        tokenizer = build_tokenizer(tokenizer_spec, all_pieces if tokenizer_spec == "char"
                                    else train_pieces, verbose=progress)
    except DataError:  # a text too short for BPE may be too short for one window: say that
        sizes = {"train": 0, "val": 0}
        for split, piece in split_text(source, val_fraction):
            sizes[split] += len(piece.encode("utf-8"))
        for split, n in sizes.items():  # no tokenizer makes fewer bytes into more tokens
            _check_length(split, n, block_size, source, unit="bytes")
        raise
    dtype = token_dtype(tokenizer.vocab_size)
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    tok_path = None if _is_path(tokenizer_spec) else out / _tokenizer_filename(tokenizer_spec)
    final = {"train": out / "train.bin", "val": out / "val.bin", "meta": out / "meta.json"}
    if tok_path is not None:
        final["tokenizer"] = tok_path
    tmp = {k: p.with_name(p.name + ".tmp") for k, p in final.items()}
    counts = {s: {"tokens": 0, "bytes": 0} for s in ("train", "val")}
    try:
        with open(tmp["train"], "wb") as train_file, open(tmp["val"], "wb") as val_file, \
                tqdm(total=corpus_size(source), unit="B", unit_scale=True, desc="tokenizing",
                     disable=not progress, leave=False) as bar:
            files = {"train": train_file, "val": val_file}
            for split, piece in split_text(source, val_fraction):
                try:
                    ids = encode(tokenizer, piece)
                except ValueError as e:
                    raise DataError(f"{os.fspath(source)}: cannot encode the {split} text with "
                                    f"tokenizer {tokenizer_spec!r}: {e}") from None
                np.asarray(ids, dtype=dtype).tofile(files[split])
                size = len(piece.encode("utf-8"))
                counts[split]["tokens"] += len(ids)
                counts[split]["bytes"] += size
                bar.update(size)
        for split in ("train", "val"):
            _check_length(split, counts[split]["tokens"], block_size, source)
        meta = {"fingerprint": fingerprint, "source": os.fspath(source),
                "tokenizer": tokenizer_spec, "vocab_size": tokenizer.vocab_size,
                "dtype": dtype.name, **counts}
        tmp["meta"].write_text(json.dumps(meta, indent=1) + "\n")
        if tok_path is not None:
            tokenizer.save(tmp["tokenizer"])
        # complete: move everything into place, meta.json (the mark of a whole cache) last
        final["meta"].unlink(missing_ok=True)
        for key in sorted(final, key=lambda k: k == "meta"):
            os.replace(tmp[key], final[key])
        return meta, tokenizer
    except BaseException:
        for p in tmp.values():
            p.unlink(missing_ok=True)
        if created and not any(out.iterdir()):
            out.rmdir()
        raise
