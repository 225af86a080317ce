"""BPE training: the readable and numba trainers agree; trained vocabularies work in tiktoken."""

import re

import numpy as np
import pytest
from conftest import shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.tokenizer import BPETokenizer, bpe, fast
from tinygpt.tokenizer.patterns import GPT2_PATTERN, GPT4_PATTERN

SAMPLE = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n"
    "First Citizen:\nYou are all resolved rather to die than to famish?\n\n"
    "All:\nResolved. resolved.\n\nFirst Citizen:\nFirst, you know Caius Marcius is chief "
    "enemy to the people. It's 1234 o'clock   and\tall's well; café, 世界, 😀!\n"
)


def shakespeare(n_chars: int) -> str:
    return shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")[:n_chars]


@settings(max_examples=60, deadline=None)
@given(
    text=st.text(alphabet="ab c\n'.é😀", max_size=300),
    pattern=st.sampled_from([GPT2_PATTERN, GPT4_PATTERN]),
)
def test_fast_trainer_equals_readable(text, pattern):
    # a small alphabet gives many equal counts, so the tie-break is exercised; 200 merges
    # is more than these texts allow, so both must also stop at the same place
    counts = bpe.count_chunks(text, pattern)
    assert fast.train_merges(counts, 200) == bpe.train_merges(counts, 200)


def test_fast_trainer_equals_readable_on_shakespeare():
    counts = bpe.count_chunks(shakespeare(20_000), GPT2_PATTERN)
    merges = fast.train_merges(counts, 200)
    assert len(merges) == 200
    assert merges == bpe.train_merges(counts, 200)


def test_tie_break_is_smallest_pair():
    # chunks "ab", " cd": the pairs (a,b), (space,c), (c,d) all occur once;
    # the smallest (left, right) is (32, 99): b" c" becomes token 256
    for use_fast in (True, False):
        tok = BPETokenizer.train("ab cd", 257, fast=use_fast)
        assert tok.id_to_token(256) == b" c"


def test_most_frequent_pair_first():
    # chunks "xy", " xy", " xy", " ab": (x,y) occurs 3 times and wins over the smaller (32,97);
    # then (32, xy) occurs twice
    for use_fast in (True, False):
        tok = BPETokenizer.train("xy xy xy ab", 258, fast=use_fast)
        assert [tok.id_to_token(256), tok.id_to_token(257)] == [b"xy", b" xy"]


def test_trained_vocab_layout():
    tok = BPETokenizer.train(SAMPLE, 300, special_tokens=["<|endoftext|>", "<|pad|>"])
    assert tok.vocab_size == len(tok) == 300
    assert len(tok.mergeable_ranks) == 298
    assert tok.special_tokens == {"<|endoftext|>": 298, "<|pad|>": 299}  # after the merges
    assert all(tok.mergeable_ranks[bytes([b])] == b for b in range(256))
    assert tok.pattern == GPT2_PATTERN


def test_special_tokens_are_not_learned_from():
    text = "hello<|sep|>world<|sep|>" * 50
    tok = BPETokenizer.train(text, 265, special_tokens=["<|sep|>"])  # 8 merges: all there are
    learned = [t for t, r in tok.mergeable_ranks.items() if r >= 256]
    assert not any(b"|" in t for t in learned), learned
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(tok.special_tokens["<|sep|>"]) == 100
    assert tok.decode(ids) == text


@pytest.mark.parametrize("name, pat_str", [("gpt2", "r50k_pat_str"), ("gpt4", None)])
def test_trained_tokenizer_works_in_tiktoken(name, pat_str):
    tiktoken = pytest.importorskip("tiktoken")
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    if pat_str is None:  # cl100k's pattern, read from tiktoken's source
        source = open(openai_public.__file__, encoding="utf-8").read()
        pat = re.search(r'"pat_str": r"""(.*?)""",\n', source).group(1)
        assert pat == GPT4_PATTERN
    else:
        pat = getattr(openai_public, pat_str)
    text = shakespeare(100_000)
    tok = BPETokenizer.train(text, 600, pattern=name, special_tokens=["<|endoftext|>"])
    enc = tiktoken.Encoding(
        name=f"tinygpt-{name}",
        pat_str=pat,
        mergeable_ranks=tok.mergeable_ranks,
        special_tokens=tok.special_tokens,
    )
    probe = shakespeare(300_000)[100_000:] + SAMPLE + "  \n\n x = f(y) + 12345 \t\n"
    assert tok.encode(probe) == enc.encode_ordinary(probe)
    mixed = "To be<|endoftext|>or not"
    assert tok.encode(mixed, allowed_special="all") == enc.encode(mixed, allowed_special="all")


def test_readable_and_fast_tokenizers_are_identical():
    text = shakespeare(10_000)
    a = BPETokenizer.train(text, 400, pattern="gpt4", fast=True)
    b = BPETokenizer.train(text, 400, pattern="gpt4", fast=False)
    assert a.mergeable_ranks == b.mergeable_ranks


def test_vocab_size_too_small():
    with pytest.raises(ValueError, match=r"vocab_size=257 .* 256 byte tokens \+ 2 special"):
        BPETokenizer.train(SAMPLE, 257, special_tokens=["<|a|>", "<|b|>"])
    with pytest.raises(ValueError, match="vocab_size=100"):
        BPETokenizer.train(SAMPLE, 100)


def test_vocab_size_256_learns_nothing():
    tok = BPETokenizer.train(SAMPLE, 256)
    assert len(tok.mergeable_ranks) == 256
    assert tok.encode("ab") == [97, 98]


@pytest.mark.parametrize("use_fast", [True, False])
def test_running_out_of_pairs(use_fast):
    # chunks "abc", " abc", " abc": merges ab, abc, " abc", then every chunk is one token
    with pytest.raises(ValueError, match=r"after 3 merges \(vocab size 259\).*vocab_size=300"):
        BPETokenizer.train("abc abc abc", 300, fast=use_fast)


def test_bad_special_tokens_and_pattern():
    with pytest.raises(ValueError, match="distinct"):
        BPETokenizer.train(SAMPLE, 300, special_tokens=["<|a|>", "<|a|>"])
    with pytest.raises(ValueError, match="not a valid regex"):
        BPETokenizer.train(SAMPLE, 300, pattern="(unclosed")


def test_progress_reports_reach_the_end():
    counts = bpe.count_chunks(shakespeare(20_000), GPT2_PATTERN)
    for train_merges in (fast.train_merges, bpe.train_merges):
        seen = []
        train_merges(counts, 150, progress=seen.append)
        assert seen == sorted(seen) and seen[-1] == 150
    fast_seen = []
    fast.train_merges(counts, 150, progress=fast_seen.append, report_every=50)
    assert fast_seen == [50, 100, 150, 150]


def test_verbose_training_shows_a_bar(capsys):
    BPETokenizer.train(SAMPLE, 280, verbose=True)
    assert "BPE merges" in capsys.readouterr().err


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("pattern", [r"(\w+)|\s", r"(\w)(\w*)|(\s)"])
def test_a_pattern_with_capturing_groups_cuts_whole_matches(pattern, fast):
    """regex.findall would return the groups' text (dropping characters, or tuples): the
    chunks are the whole matches, as in tiktoken."""
    text = "hello world hello"
    tok = BPETokenizer.train(text, 260, pattern=pattern, fast=fast)
    assert tok.decode(tok.encode("hello world")) == "hello world"
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=40, deadline=None)
@given(
    chunk=st.text(alphabet="ab", min_size=fast.LONG_CHUNK + 1, max_size=1500)
    | st.text(alphabet="ab c'.é", min_size=fast.LONG_CHUNK + 1, max_size=1500),
)
def test_long_chunks_merge_on_the_heap_as_the_readable_encoder_does(chunk):
    """Chunks longer than fast.LONG_CHUNK are merged with a heap (the scan is O(n^2));
    they must give the readable encoder's ids: lowest rank first, leftmost on ties (a
    two-letter alphabet makes many equal-ranked pairs side by side)."""
    tok = _LONG_CHUNK_TOKENIZER
    data = chunk.encode("utf-8")
    want = bpe.encode_chunk(data, tok.mergeable_ranks)
    keys, vals = fast.build_merge_table(tok.mergeable_ranks)
    byte_ids = np.array([tok.mergeable_ranks[bytes([b])] for b in range(256)], np.int32)
    ids, ends = fast.encode_chunks(np.frombuffer(data, np.uint8),
                                   np.array([0, len(data)], np.int64), byte_ids, keys, vals)
    assert ids.tolist() == want and ends.tolist() == [len(want)]


# merges learned from long runs of a two-letter alphabet (and a little more): tokens for
# "aaaa...", "abab..." and mixes, so long chunks see many merges of equal rank
_LONG_CHUNK_TOKENIZER = BPETokenizer.train(
    ("aaaaaaaabbbbabababab aabbaabb c'.é " * 40) + SAMPLE, 400, pattern=r"[\s\S]+")
