"""tinygpt.data: corpora, the train/val split, tokenizers, the token cache and batches."""

import gzip

import numpy as np
import pytest
from conftest import shared_file

from tinygpt import data
from tinygpt.data import (
    DataError,
    TokenDataset,
    build_tokenizer,
    iter_text,
    load_text,
    prepare_data,
    split_text,
    token_dtype,
)
from tinygpt.tokenizer import BPETokenizer, CharTokenizer

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\n" \
       "All:\nSpeak, speak.\n\nFirst Citizen:\nYou are all resolved rather to die than " \
       "to famish?\n\nAll:\nResolved. resolved. Caf\u00e9 na\u00efve \u2014 \u00e0 bient\u00f4t!\n"


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT * 40, encoding="utf-8")
    return path


# -- corpus ----------------------------------------------------------------------------------


def test_builtin_corpus_is_tiny_shakespeare():
    reference = shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    assert load_text("builtin:shakespeare") == reference


def test_pieces_rebuild_the_text_and_end_before_visible_lines(corpus):
    pieces = list(iter_text(corpus, piece_bytes=37))  # small reads split multibyte characters
    assert "".join(pieces) == TEXT * 40
    assert len(pieces) > 10
    for a, b in zip(pieces, pieces[1:]):
        assert a.endswith("\n") and not b[0].isspace()


def test_a_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello\n")
    assert load_text(path) == "hello\n"


def test_byte_order_marks_do_not_move_the_validation_boundary(tmp_path):
    """corpus_size must not count the marks iter_text drops: with 40 marked files the
    boundary fell 120 bytes late and the validation split came out empty."""
    for bom, folder in ((b"\xef\xbb\xbf", tmp_path / "bom"), (b"", tmp_path / "plain")):
        folder.mkdir()
        for i in range(40):
            (folder / f"f{i:02}.txt").write_bytes(bom + b"abcdefghi\n")
    val = {name: sum(len(p) for split, p in data.split_text(tmp_path / name, 0.2)
                     if split == "val") for name in ("bom", "plain")}
    assert val["bom"] == val["plain"] == 80
    gz = tmp_path / "one.txt.gz"
    gz.write_bytes(gzip.compress(b"\xef\xbb\xbf" + b"abcdefghi\n" * 3))
    assert data.corpus_size(gz) == 30 == len(data.load_text(gz))


def test_gzip_file_and_folder_of_txt_files(tmp_path):
    with gzip.open(tmp_path / "a.txt.gz", "wt", encoding="utf-8") as f:
        f.write("zipped\n")
    assert load_text(tmp_path / "a.txt.gz") == "zipped\n"
    folder = tmp_path / "books"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.txt").write_text("second\n")
    (folder / "a.txt").write_text("first\n")
    (folder / "sub" / "c.txt").write_text("third\n")
    (folder / "notes.md").write_text("not a .txt file\n")
    assert load_text(folder) == "first\nsecond\nthird\n"


def test_files_that_end_mid_line_are_not_glued_to_the_next(tmp_path):
    # "The end.Once upon" trained as one word before: a line break goes between them
    folder = tmp_path / "stories"
    folder.mkdir()
    texts = {"a.txt": "The end.", "b.txt": "", "c.txt": "Once upon\n", "d.txt": "\ufeffNo mark",
             "e.txt": "last, no break"}
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    want = "The end.\nOnce upon\nNo mark\nlast, no break"
    assert load_text(folder) == want
    assert data.corpus_size(folder) == len(want.encode("utf-8"))  # the split's byte count
    for piece_bytes in (3, 7, 100):
        assert "".join(p for _, p in split_text(folder, 0.3, piece_bytes=piece_bytes)) == want


def test_split_keeps_every_byte_and_starts_validation_at_a_line(corpus):
    text = TEXT * 40
    parts = list(split_text(corpus, 0.1, piece_bytes=101))
    train = "".join(p for s, p in parts if s == "train")
    val = "".join(p for s, p in parts if s == "val")
    assert train + val == text
    assert train.endswith("\n")
    size = len(text.encode())
    assert 0.1 * size - len(TEXT.encode()) <= len(val.encode()) <= 0.1 * size + 1
    assert [s for s, _ in parts] == sorted(s for s, _ in parts)  # all train, then all val


def test_a_text_without_line_breaks_is_still_split_and_streamed(tmp_path):
    path = tmp_path / "one_line.txt"
    path.write_text("\u00e9t\u00e9 " * 500)  # 3000 bytes, two-byte characters, no newline
    parts = list(split_text(path, 0.1, piece_bytes=256))
    train = "".join(p for s, p in parts if s == "train")
    val = "".join(p for s, p in parts if s == "val")
    assert train + val == "\u00e9t\u00e9 " * 500
    assert 280 <= len(val.encode()) <= 310
    assert max(len(p) for _, p in parts) <= 3 * 256  # bounded memory without line breaks


@pytest.mark.parametrize("name, message", [
    ("missing.txt", "no such file or folder"),
    ("empty.txt", "the corpus is empty"),
    ("folder", "the folder has no .txt files"),
])
def test_bad_sources_name_the_problem(tmp_path, name, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder" / "notes.md").write_text("not a .txt file")
    path = tmp_path / name
    with pytest.raises(DataError, match=message) as e:
        list(split_text(path))
    assert str(path) in str(e.value)


def test_not_utf8_names_the_byte(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\u00e9 ok\n".encode() + b"na\xefve\n")
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 11"):
        load_text(path)


def test_unknown_builtin_lists_the_available_ones():
    with pytest.raises(DataError, match="builtin:shakespeare"):
        load_text("builtin:nope")


# -- tokenizers -----------------------------------------------------------------------------


def test_tokenizer_specs(tmp_path):
    char = build_tokenizer("char", ["ba", "ca"])
    assert isinstance(char, CharTokenizer) and char.chars == ["a", "b", "c"]
    bpe = build_tokenizer("bpe:300", TEXT * 20, cache_dir=tmp_path)
    assert isinstance(bpe, BPETokenizer) and bpe.vocab_size == 300
    assert (tmp_path / "tokenizer-bpe-300.tok").exists()
    again = build_tokenizer("bpe:300", "", cache_dir=tmp_path)  # from the cache: no text needed
    assert again.mergeable_ranks == bpe.mergeable_ranks
    loaded = build_tokenizer(str(tmp_path / "tokenizer-bpe-300.tok"), "")
    assert loaded.mergeable_ranks == bpe.mergeable_ranks


@pytest.mark.parametrize("spec, message", [
    ("bpe:abc", "integer vocabulary size"),
    ("bpe:100", "N > 256"),
    ("no/such/tokenizer.tok", "existing tokenizer file"),
    ("bpe:100000", "runs out of pairs"),
])
def test_bad_tokenizer_specs(spec, message):
    with pytest.raises(DataError, match=message) as e:
        build_tokenizer(spec, TEXT)
    assert spec in str(e.value)


def test_token_dtype_is_the_smallest_that_holds_the_vocabulary():
    assert token_dtype(65) == np.uint16
    assert token_dtype(2**16) == np.uint16
    assert token_dtype(2**16 + 1) == np.uint32
    with pytest.raises(DataError, match="4294967297 tokens does not fit in uint32"):
        token_dtype(2**32 + 1)


# -- prepare_data and the cache ---------------------------------------------------------------


def test_prepare_data_tokenizes_both_splits_into_memmaps(corpus, tmp_path):
    out = tmp_path / "run" / "data"
    train, val, tok = prepare_data(corpus, "char", out, block_size=16)
    assert isinstance(train.ids, np.memmap) and train.ids.dtype == np.uint16
    assert (out / "train.bin").stat().st_size == 2 * len(train)
    text = TEXT * 40
    assert tok.decode(train.ids.tolist()) + tok.decode(val.ids.tolist()) == text
    assert train.num_bytes + val.num_bytes == len(text.encode())
    assert val.bytes_per_token == pytest.approx(val.num_bytes / len(val))
    assert sorted(p.name for p in out.iterdir()) == [
        "meta.json", "tokenizer-char.json", "train.bin", "val.bin"]


def test_bpe_is_trained_on_the_training_split_only(corpus, tmp_path):
    train, val, tok = prepare_data(corpus, "bpe:280", tmp_path / "d", block_size=8)
    train_text = "".join(p for s, p in split_text(corpus) if s == "train")
    assert tok.mergeable_ranks == BPETokenizer.train(train_text, 280).mergeable_ranks
    assert tok.decode(val.ids.tolist()) == "".join(p for s, p in split_text(corpus) if s == "val")


def test_the_cache_is_reused_and_rebuilt_when_the_corpus_changes(corpus, tmp_path, monkeypatch):
    out = tmp_path / "d"
    first, _, _ = prepare_data(corpus, "char", out, block_size=16)
    real = data._tokenize
    monkeypatch.setattr(data, "_tokenize", lambda *a: pytest.fail("tokenized again"))
    again, _, _ = prepare_data(corpus, "char", out, block_size=16)
    assert np.array_equal(first.ids, again.ids)
    monkeypatch.setattr(data, "_tokenize", real)
    corpus.write_text("a different text\n" * 200)
    changed, _, tok = prepare_data(corpus, "char", out, block_size=16)
    assert tok.decode(changed.ids[:17].tolist()) == "a different text\n"


def test_too_short_corpus_leaves_nothing_behind(tmp_path):
    path = tmp_path / "short.txt"
    path.write_text("To be, or not to be:\nthat is the question.\n")
    out = tmp_path / "run" / "data"
    with pytest.raises(DataError, match=r"validation split has \d+ tokens, fewer than one window"):
        prepare_data(path, "char", out, block_size=32)
    assert not out.exists()


def test_vocabulary_too_large_for_the_ids_leaves_nothing_behind(tmp_path, monkeypatch):
    path = tmp_path / "many.txt"
    path.write_text("".join(chr(0x400 + i) for i in range(300)) * 4 + "\n")
    monkeypatch.setattr(data, "ID_DTYPES", (np.uint8,))
    out = tmp_path / "d"
    with pytest.raises(DataError, match="301 tokens does not fit in uint8"):
        prepare_data(path, "char", out, block_size=8)
    assert not out.exists()


# -- batches ----------------------------------------------------------------------------------


def test_get_batch_gives_shifted_contiguous_windows():
    ids = np.arange(1000, dtype=np.uint16)
    ds = TokenDataset(ids, block_size=16)
    x, y = ds.get_batch(8, np.random.default_rng(0))
    assert x.shape == y.shape == (8, 16) and x.dtype == y.dtype == np.int64
    assert np.array_equal(x[:, 1:], y[:, :-1])
    assert np.array_equal(np.diff(x, axis=1), np.ones((8, 15)))  # consecutive tokens
    x2, _ = ds.get_batch(8, np.random.default_rng(0))
    assert np.array_equal(x, x2)
    assert len(ds) == 1000


def test_every_window_can_be_drawn_and_none_runs_past_the_end():
    ds = TokenDataset(np.arange(20), block_size=4)
    x, y = ds.get_batch(2000, np.random.default_rng(1))
    assert x[:, 0].min() == 0 and y[:, -1].max() == 19


def test_eval_batches_are_fixed_and_span_the_data():
    ds = TokenDataset(np.arange(500), block_size=10)
    batches = list(ds.eval_batches(3, 4))
    assert len(batches) == 3
    starts = np.concatenate([x[:, 0] for x, _ in batches])
    assert starts[0] == 0 and batches[-1][1][-1, -1] == 499
    again = np.concatenate([x[:, 0] for x, _ in ds.eval_batches(3, 4)])
    assert np.array_equal(starts, again)


def test_token_dataset_rejects_bad_input():
    with pytest.raises(DataError, match="only 5 tokens, fewer than one window of block_size "
                                        r"\+ 1 = 9"):
        TokenDataset(np.arange(5), block_size=8)
    with pytest.raises(DataError, match="1-D integer array"):
        TokenDataset(np.zeros((4, 4)), block_size=2)
