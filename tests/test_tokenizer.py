"""BPETokenizer encoding/decoding against tiktoken, with GPT-2's real ranks.

tiktoken is the reference: it reads the same rank file with its own loader and its own
copy of the GPT-2 pattern, and our ids must equal its ids.
"""

import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

from tinygpt.tokenizer import BPETokenizer
from tinygpt.tokenizer.patterns import GPT2_PATTERN, GPT4_PATTERN

tiktoken = pytest.importorskip("tiktoken")
tiktoken_load = pytest.importorskip("tiktoken.load")
openai_public = pytest.importorskip("tiktoken_ext.openai_public")

SAMPLES = {
    "cjk": "こんにちは世界。你好，世界！안녕하세요 세계",
    "emoji": "👋🌍 emoji 🧑‍🤝‍🧑 family 👨‍👩‍👧 flags 🇫🇷🇯🇵 skin 👍🏽",
    "mixed_scripts": "Hello世界123abc Привет мир مرحبا naïve café Ελληνικά हिन्दी",
    "whitespace": "   \n\n\t\t  x  \r\n\r\n    \t \n  end   ",
    "numbers": "1234567 3.14159 1,000,000 2024-01-01 0x1F",
    "contractions": "I'm you'll WE'RE they've he'd it's 'tis",
    "long_runs": " " * 3000 + "a" * 3000 + "\n" * 500 + "!" * 1000,
}

# characters that exercise every branch of the split patterns
TRICKY = list(" \t\n\r\x0b\x0c'sdmtlvreAZaz09.,!?-_$\"\\/()") + list("é中文😀👍🏽\u00a0\u2028١٢")


@pytest.fixture(scope="module")
def gpt2_path():
    return shared_file("gpt2.tiktoken")


@pytest.fixture(scope="module")
def gpt2(gpt2_path):
    return BPETokenizer.from_tiktoken(gpt2_path)


@pytest.fixture(scope="module")
def gpt2_slow(gpt2_path):
    return BPETokenizer.from_tiktoken(gpt2_path, fast=False)


@pytest.fixture(scope="module")
def reference(gpt2_path):
    """tiktoken's GPT-2 encoding, built from tiktoken's own loader and pattern."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken would otherwise cache by file name
        ranks = tiktoken_load.load_tiktoken_bpe(str(gpt2_path))
    return tiktoken.Encoding(
        name="gpt2-reference",
        pat_str=openai_public.r50k_pat_str,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": 50256},
    )


def test_patterns_are_tiktokens():
    assert GPT2_PATTERN == openai_public.r50k_pat_str
    assert f'r"""{GPT4_PATTERN}"""' in inspect.getsource(openai_public.cl100k_base)


def test_kernels_switch_selects_readable_code(gpt2_path, monkeypatch):
    monkeypatch.delenv("TINYGPT_KERNELS", raising=False)
    assert BPETokenizer.from_tiktoken(gpt2_path).fast
    monkeypatch.setenv("TINYGPT_KERNELS", "numpy")
    assert not BPETokenizer.from_tiktoken(gpt2_path).fast


def test_hello_world(gpt2, gpt2_slow):
    for tok in (gpt2, gpt2_slow):
        assert tok.encode("Hello world") == [15496, 995]
        assert tok.encode(" Hello world") == [18435, 995]
        assert tok.decode([15496, 995]) == "Hello world"


def test_attributes(gpt2, reference):
    assert gpt2.vocab_size == len(gpt2) == reference.n_vocab == 50257
    assert gpt2.special_tokens == {"<|endoftext|>": 50256}
    assert gpt2.pattern == GPT2_PATTERN
    assert gpt2.mergeable_ranks == reference._mergeable_ranks
    assert gpt2.id_to_token(995) == b" world"
    assert gpt2.token_to_id(b" world") == 995 and gpt2.token_to_id(" world") == 995
    assert gpt2.token_to_id("<|endoftext|>") == 50256
    assert gpt2.id_to_token(50256) == b"<|endoftext|>"


def test_tinyshakespeare_matches_tiktoken(gpt2, reference):
    text = shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    ids = gpt2.encode(text)
    assert ids == reference.encode_ordinary(text)
    assert gpt2.decode(ids) == text
    assert gpt2.encode(text) == ids  # second pass: every chunk comes from the cache


def test_readable_encoder_matches_tiktoken(gpt2_slow, reference):
    text = shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")[:30_000]
    assert gpt2_slow.encode(text) == reference.encode_ordinary(text)


def test_source_code_matches_tiktoken(gpt2, reference):
    package = Path(__file__).resolve().parents[1] / "tinygpt"
    code = "\n".join(p.read_text(encoding="utf-8") for p in sorted(package.rglob("*.py")))
    assert len(code) > 1000
    # our sources mention "<|endoftext|>": encode it as plain text, as encode_ordinary does
    assert gpt2.encode(code, disallowed_special=()) == reference.encode_ordinary(code)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_match_tiktoken(gpt2, gpt2_slow, reference, name):
    text = SAMPLES[name]
    expected = reference.encode_ordinary(text)
    assert gpt2.encode(text) == expected
    assert gpt2_slow.encode(text) == expected
    assert gpt2.decode(expected) == text


def test_lone_surrogate_is_replaced_like_tiktoken(gpt2, reference):
    text = "a\ud800b"
    assert gpt2.encode(text) == reference.encode(text)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200) | st.text(alphabet=TRICKY, max_size=200))
def test_random_unicode_matches_tiktoken(gpt2, gpt2_slow, reference, text):
    expected = reference.encode_ordinary(text)
    assert gpt2.encode(text) == expected
    assert gpt2_slow.encode(text) == expected
    assert gpt2.decode(expected) == text


@pytest.fixture(scope="module")
def gpt4_split_pair(gpt2_path):
    """GPT-2's ranks cut by GPT-4's (cl100k's) pattern: ours on the fast and readable paths,
    and tiktoken's Encoding with cl100k's own pattern string (cl100k's ranks are a download)."""
    source = open(openai_public.__file__, encoding="utf-8").read()
    pat = re.search(r'"pat_str": r"""(.*?)""",\n', source).group(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TIKTOKEN_CACHE_DIR", "")
        ranks = tiktoken_load.load_tiktoken_bpe(str(gpt2_path))
    ref = tiktoken.Encoding(name="gpt2-ranks-cl100k-split", pat_str=pat, mergeable_ranks=ranks,
                            special_tokens={})
    return (BPETokenizer(ranks, "gpt4", fast=True), BPETokenizer(ranks, "gpt4", fast=False),
            ref)


def test_gpt4_pattern_matches_tiktoken(gpt4_split_pair):
    fast, slow, ref = gpt4_split_pair
    text = shared_file("tinyshakespeare.txt").read_text(encoding="utf-8")
    assert fast.encode(text) == ref.encode_ordinary(text)  # the numba scan (long text)
    for sample in [*SAMPLES.values(), "'S 'LL 'Ve \u017fx'\u017f 'K \u212a", "x\r\n\r\n  y"]:
        want = ref.encode_ordinary(sample * 20)  # over split.SHORT: the scan, not the regex
        assert fast.encode(sample * 20) == want and slow.encode(sample * 20) == want


@settings(max_examples=200, deadline=None)
@given(text=st.text(min_size=128, max_size=400)
       | st.text(alphabet=TRICKY + list("SLVRſ\u212a0123456789"), min_size=128, max_size=400))
def test_gpt4_pattern_random_unicode_matches_tiktoken(gpt4_split_pair, text):
    fast, _, ref = gpt4_split_pair
    assert fast.encode(text) == ref.encode_ordinary(text)


# --- special tokens -----------------------------------------------------------------------------


def test_special_token_is_an_error_by_default(gpt2):
    with pytest.raises(ValueError, match=r"<\|endoftext\|>"):
        gpt2.encode("hi <|endoftext|> there")


def test_special_tokens_allowed(gpt2, reference):
    text = "hi<|endoftext|> there<|endoftext|>"
    for allowed in ("all", {"<|endoftext|>"}):
        ids = gpt2.encode(text, allowed_special=allowed)
        assert ids == reference.encode(text, allowed_special=allowed)
        assert ids.count(50256) == 2
        assert gpt2.decode(ids) == text


def test_special_token_as_plain_text(gpt2, reference):
    text = "hi <|endoftext|>"
    ids = gpt2.encode(text, disallowed_special=())
    assert ids == reference.encode(text, disallowed_special=())
    assert 50256 not in ids
    assert gpt2.encode(text, disallowed_special="none") == ids


def test_unknown_special_token_names_are_rejected(gpt2):
    with pytest.raises(ValueError, match=re.escape("<|nope|>")):
        gpt2.encode("x", allowed_special={"<|nope|>"})
    with pytest.raises(ValueError, match="allowed_special"):
        gpt2.encode("x", allowed_special="everything")


def test_encode_batch(gpt2):
    texts = ["Hello world", "", SAMPLES["cjk"], "a<|endoftext|>b"]
    assert gpt2.encode_batch(texts, allowed_special="all") == [
        gpt2.encode(t, allowed_special="all") for t in texts
    ]


# --- decoding -----------------------------------------------------------------------------------


def test_decode_replaces_invalid_utf8_like_tiktoken(gpt2, reference):
    ids = gpt2.encode("😀")  # 4 bytes; take the tokens apart
    pieces = [[i] for i in ids] + [ids[:1] + gpt2.encode("x")]
    for piece in pieces:
        assert gpt2.decode(piece) == reference.decode(piece)
        assert gpt2.decode_bytes(piece) == reference.decode_bytes(piece)
    assert "\ufffd" in gpt2.decode(ids[:1])


def test_decode_unknown_id_is_a_clear_error(gpt2):
    for bad in (50257, -1, 10**9):
        with pytest.raises(ValueError, match=f"unknown token id {bad}.*position 1"):
            gpt2.decode([15496, bad])
    with pytest.raises(ValueError, match="unknown token id"):
        gpt2.id_to_token(50257)
    with pytest.raises(ValueError, match="not a token"):
        gpt2.token_to_id(b"\xff\xfe definitely not a token")


def test_decode_takes_int_ids_only_and_names_gaps(gpt2):
    # 3.0 found id 3 (its hash equals 3's); tiktoken refuses floats and takes NumPy ints
    assert gpt2.decode(np.array([15496, 995])) == gpt2.decode([15496, 995]) == "Hello world"
    for bad in (995.0, np.float32(995)):
        with pytest.raises(ValueError, match=r"995\.0\)? at position 1 is not an int"):
            gpt2.decode([15496, bad])
    ranks = {bytes([b]): b for b in range(256)}
    gappy = BPETokenizer(ranks, "gpt2", {"<a>": 300, "<b>": 400})
    with pytest.raises(ValueError, match=r"ids 0\.\.255 and the special ids 300, 400"):
        gappy.decode([350])


def test_clear_errors_for_misused_arguments(gpt2):
    with pytest.raises(TypeError, match="encode: expected a str, got NoneType"):
        gpt2.encode(None)
    with pytest.raises(TypeError, match="encode: expected a str, got bytes"):
        gpt2.encode(b"hello")
    with pytest.raises(ValueError, match="allowed_special must be 'all', 'none' or a set"):
        gpt2.encode("hi", allowed_special=None)
    with pytest.raises(TypeError, match=r"special_tokens must be a list of strings, e\.g\. "
                                        r"\['<eos>'\], not one string"):
        BPETokenizer.train("hello world " * 20, 260, special_tokens="<eos>")
    ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(ValueError, match="is not valid Unicode"):
        BPETokenizer(ranks, "gpt2", {"<|\ud800|>": 300})


def test_decode_tokens_bytes(gpt2, reference):
    ids = gpt2.encode("Hello world, 世界")
    assert gpt2.decode_tokens_bytes(ids) == reference.decode_tokens_bytes(ids)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=100), special_at=st.integers(0, 100))
def test_roundtrip_with_special_tokens(gpt2, text, special_at):
    text = text[:special_at] + "<|endoftext|>" + text[special_at:]
    ids = gpt2.encode(text, allowed_special="all")
    assert 50256 in ids
    assert gpt2.decode(ids) == text
