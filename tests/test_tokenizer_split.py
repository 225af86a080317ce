"""The numba scan of GPT-2's pre-split pattern (tokenizer/split.py) against the regex itself."""

import pytest
import regex
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.data import load_text
from tinygpt.tokenizer import BPETokenizer, split
from tinygpt.tokenizer.patterns import GPT2_PATTERN
from tinygpt.tokenizer.split import gpt2_split

SPLIT = regex.compile(GPT2_PATTERN)
# every branch: contractions (and near misses), space + each class, whitespace runs of
# several kinds (NBSP, U+2028, U+0085, U+3000 are \s; U+200B and U+FEFF are not), letters,
# numbers of several scripts (Arabic-Indic, Roman numeral, fractions), combining marks,
# astral letters and numbers (U+1D7CE, U+10140, U+20000) and emoji
TRICKY = list(" \t\n\r\x0b\x0c'sdmtlvreSLVRAZaz09.,!?-_$\"\\/()") + list(
    "\u00a0\u2028\u0085\u3000\u200b\ufeff\u1680é\u0301中文١٢Ⅻ¼😀👍🏽\U0001d7ce\U00010140\U00020000")


@settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=300) | st.text(alphabet=TRICKY, max_size=300))
def test_scan_splits_like_the_regex(text, monkeypatch_short):
    assert gpt2_split(text) == SPLIT.findall(text)


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


def test_only_gpt2s_pattern_on_the_fast_path_uses_the_scan():
    ranks = {bytes([b]): b for b in range(256)}
    assert BPETokenizer(ranks, "gpt2", fast=True)._split_text is gpt2_split
    assert BPETokenizer(ranks, "gpt2", fast=False)._split_text != gpt2_split  # readable: regex
    assert BPETokenizer(ranks, "gpt4", fast=True)._split_text != gpt2_split
