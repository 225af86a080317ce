"""The numba scans of GPT-2's and GPT-4's pre-split patterns (tokenizer/split.py) against the
regexes themselves."""

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.data import load_text
from tinygpt.tokenizer import BPETokenizer, split
from tinygpt.tokenizer.patterns import GPT2_PATTERN, GPT4_PATTERN
from tinygpt.tokenizer.split import gpt2_split, gpt4_split

SPLIT = regex.compile(GPT2_PATTERN)
SPLIT4 = regex.compile(GPT4_PATTERN)
# every branch: contractions (and near misses), space + each class, whitespace runs of
# several kinds (NBSP, U+2028, U+0085, U+3000 are \s; U+200B and U+FEFF are not), letters,
# numbers of several scripts (Arabic-Indic, Roman numeral, fractions), combining marks,
# astral letters and numbers (U+1D7CE, U+10140, U+20000) and emoji
TRICKY = list(" \t\n\r\x0b\x0c'sdmtlvreSLVRAZaz09.,!?-_$\"\\/()") + list(
    "\u00a0\u2028\u0085\u3000\u200b\ufeff\u1680é\u0301中文١٢Ⅻ¼😀👍🏽\U0001d7ce\U00010140\U00020000")
# GPT-4's endings are case-insensitive: the long s (U+017F) is an s, the Kelvin sign (U+212A)
# a k (no ending); more digits and line breaks for the runs of three and the \r\n rules
TRICKY4 = TRICKY + list("MDTEſK\u212a\u0130\u01310123456789\n\r\r\n  ")


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300) | st.text(alphabet=TRICKY, max_size=300))
def test_scan_splits_like_the_regex(text, monkeypatch_short):
    assert gpt2_split(text) == SPLIT.findall(text)


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300) | st.text(alphabet=TRICKY4, max_size=300))
def test_gpt4_scan_splits_like_the_regex(text, monkeypatch_short):
    assert gpt4_split(text) == SPLIT4.findall(text)


@pytest.fixture(scope="module")
def monkeypatch_short():
    """Scan every text, short ones too (gpt2_split hands texts under SHORT to the regex)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(split, "SHORT", 0)
        yield


def test_scan_on_shakespeare_and_edge_cases(monkeypatch_short):
    for text in [load_text("builtin:shakespeare"), "", "'", "'l", "'ll", "'LL", " ", "  ",
                 " \n", "\n ", "a  b", "a \n b", "x\u2028 \u00a0y", "end   ", "'s'd'm't"]:
        assert gpt2_split(text) == SPLIT.findall(text), repr(text[:40])


def test_gpt4_scan_on_shakespeare_and_edge_cases(monkeypatch_short):
    for text in [load_text("builtin:shakespeare"), "", "'", "'L", "'ll", "'LL", "'lL", "'ſ",
                 "'Ve", "'rE", " ", "  ", " \n", "\n ", "a  b", "a \n b", "a\r\n\r\n  b",
                 "x\u2028 \u00a0y", "end   ", "end \n", "'s'd'm't", "(word", "\tword",
                 "\nword", "1234567", " 12", "a1b22c333d4444", "...\n\nx", " !!\r\n",
                 "\u00e9\u0301t\u00e9", "''s", "'\n"]:
        assert gpt4_split(text) == SPLIT4.findall(text), repr(text[:40])


def test_only_the_two_patterns_on_the_fast_path_use_the_scans():
    ranks = {bytes([b]): b for b in range(256)}
    assert BPETokenizer(ranks, "gpt2", fast=True)._split_text is gpt2_split
    assert BPETokenizer(ranks, "gpt4", fast=True)._split_text is gpt4_split
    for fast, pattern in [(False, "gpt2"), (False, "gpt4"), (True, r"\w+|\s+")]:
        splitter = BPETokenizer(ranks, pattern, fast=fast)._split_text  # the regex
        assert splitter not in (gpt2_split, gpt4_split)


def test_gpt4_long_number_runs_split_in_threes_in_linear_time():
    # each group of three scanned to the end of the run: a million digits took ~2 minutes
    import time

    for text in ["1" * 300_000, "x" + "\u0660" * 200_001 + " y"]:
        t0 = time.perf_counter()
        got = gpt4_split(text)
        elapsed = time.perf_counter() - t0
        assert got == SPLIT4.findall(text)
        assert elapsed < 5, elapsed  # a hang guard (~0.02 s now, ~12 s before), not a benchmark
