"""Tokenizer files (ours, .tiktoken, GPT-2's encoder.json + vocab.bpe), CharTokenizer, the CLI."""

import argparse
import gzip
import json

import pytest
from conftest import shared_file
from hypothesis import given, settings
from hypothesis import strategies as st

import tinygpt.tokenizer as tokenizer_pkg
from tinygpt.tokenizer import BPETokenizer, CharTokenizer, cli
from tinygpt.tokenizer.bytes_unicode import bytes_to_unicode
from tinygpt.tokenizer.files import escape_token, save_tiktoken, unescape_token
from tinygpt.tokenizer.patterns import GPT4_PATTERN

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    "You are all resolved rather to die than to famish? café 世界 😀\t\tend\n"
) * 3


@pytest.fixture(scope="module")
def trained():
    return BPETokenizer.train(TEXT, 330, pattern="gpt4", special_tokens=["<|endoftext|>", "<|x|>"])


@pytest.fixture(scope="module")
def gpt2():
    return BPETokenizer.from_tiktoken(shared_file("gpt2.tiktoken"))


# --- our format ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(token=st.binary(min_size=1, max_size=12) | st.text(min_size=1).map(str.encode))
def test_escape_roundtrip(token):
    quoted = escape_token(token)
    assert "\n" not in quoted and quoted.startswith('"') and quoted.endswith('"')
    assert unescape_token(quoted) == token


def test_escape_is_readable():
    assert escape_token(b" the") == '" the"'
    assert escape_token("世界".encode()) == '"世界"'
    assert escape_token(b"\n") == '"\\x0a"'
    assert escape_token(b'"\\') == '"\\x22\\x5c"'
    assert escape_token(b"\xe4\xb8") == '"\\xe4\\xb8"'  # half a character


def test_save_load_roundtrip(tmp_path, trained):
    path = tmp_path / "t.tok"
    trained.save(path)
    loaded = BPETokenizer.load(path)
    assert loaded.mergeable_ranks == trained.mergeable_ranks
    assert loaded.pattern == trained.pattern == GPT4_PATTERN
    assert loaded.special_tokens == trained.special_tokens
    text = TEXT + "<|x|>"
    assert loaded.encode(text, allowed_special="all") == trained.encode(text, allowed_special="all")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "tinygpt-bpe v1"
    assert 'special "<|x|>" 329' in lines
    assert f'{trained.token_to_id(b" speak")} " speak"' in lines  # human-readable tokens


def test_save_load_gpt2_ranks(tmp_path, gpt2):
    # 50k real tokens: partial UTF-8, control bytes, quotes and backslashes all survive
    path = tmp_path / "gpt2.tok"
    gpt2.save(path)
    loaded = tokenizer_pkg.load(path)
    assert loaded.mergeable_ranks == gpt2.mergeable_ranks
    assert loaded.special_tokens == gpt2.special_tokens
    assert loaded.pattern == gpt2.pattern


def test_load_detects_tiktoken_files(gpt2):
    path = shared_file("gpt2.tiktoken")
    assert BPETokenizer.load(path).mergeable_ranks == gpt2.mergeable_ranks
    assert tokenizer_pkg.load(path).encode("Hello world") == [15496, 995]


def test_tiktoken_file_roundtrip(tmp_path, trained, monkeypatch):
    tiktoken_load = pytest.importorskip("tiktoken.load")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # it would otherwise cache by file name
    path = tmp_path / "t.tiktoken"
    save_tiktoken(path, trained.mergeable_ranks)
    assert tiktoken_load.load_tiktoken_bpe(str(path)) == trained.mergeable_ranks
    loaded = BPETokenizer.from_tiktoken(path, pattern="gpt4", special_tokens={"<|x|>": 400})
    assert loaded.mergeable_ranks == trained.mergeable_ranks
    assert loaded.special_tokens == {"<|x|>": 400} and loaded.vocab_size == 401


def _write_lines(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_truncated_file_names_file_and_line(tmp_path, trained):
    path = tmp_path / "t.tok"
    trained.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    short = tmp_path / "short.tok"
    _write_lines(short, lines[:-10])
    with pytest.raises(ValueError, match=rf"short.tok, line {len(lines) - 10}: truncated"):
        BPETokenizer.load(short)
    cut = tmp_path / "cut.tok"
    cut.write_text("\n".join(lines)[:-3], encoding="utf-8")  # cut inside the last token
    with pytest.raises(ValueError, match=rf"cut.tok, line {len(lines)}: .*double quotes"):
        BPETokenizer.load(cut)


@pytest.mark.parametrize(
    "line_no, replacement, message",
    [
        (1, "tinygpt-bpe v9", "first line"),
        (2, 'pattern "unterminated', "line 2"),
        (9, '4 "\\x03"', "line 9: expected rank 3, found 4"),
        (9, '3 "\\x02"', 'line 9: token "\\x02" already has rank 2'),
        (9, 'three "x"', "line 9"),
        (9, '3 "a"b"', 'bare "'),
        (2, "pattern 5", "line 2: the pattern must be a JSON string"),
        (3, "special [1] 300", "line 3: a special token must be a non-empty JSON string"),
        (4, 'special "<|endoftext|>" 301', "line 4: special token '<|endoftext|>' is listed"),
        (4, 'special "<|other|>" 328', "line 4: special id 328 is listed twice"),
        (9, '3 ""', "line 9: a token must have at least one byte"),
        (3, 'pattern "x"', "line 3: a second 'pattern' line"),
        (9, '\u0663 "\\x03"', "line 9: expected a number"),  # int() reads Arabic-Indic 3
        (5, "ranks 1_0", "line 5: expected a number, found '1_0'"),
    ],
)
def test_bad_file_names_file_and_line(tmp_path, trained, line_no, replacement, message):
    path = tmp_path / "t.tok"
    trained.save(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[8] == '3 "\\x03"'  # magic, pattern, 2 specials, "ranks N", then ranks 0, 1..
    lines[line_no - 1] = replacement
    _write_lines(path, lines)
    with pytest.raises(ValueError, match="t.tok") as info:
        BPETokenizer.load(path)
    assert message in str(info.value)


def test_a_file_with_a_byte_order_mark_loads(tmp_path, trained):
    path = tmp_path / "t.tok"
    trained.save(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # saved by an editor that adds one
    loaded = tokenizer_pkg.load(path)
    assert loaded.mergeable_ranks == trained.mergeable_ranks and loaded.pattern == trained.pattern
    chars = tmp_path / "c.json"
    CharTokenizer(list("abc")).save(chars)
    chars.write_bytes(b"\xef\xbb\xbf" + chars.read_bytes())
    assert tokenizer_pkg.load(chars).encode("cab") == [2, 0, 1]


def test_a_file_with_crlf_line_ends_loads(tmp_path, trained):
    path = tmp_path / "t.tok"
    trained.save(path)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))  # saved by a Windows editor
    loaded = BPETokenizer.load(path)
    assert loaded.mergeable_ranks == trained.mergeable_ranks
    assert loaded.special_tokens == trained.special_tokens and loaded.pattern == trained.pattern


def test_bad_tiktoken_file(tmp_path):
    path = tmp_path / "bad.tiktoken"
    _write_lines(path, ["IQ== 0", "Ig== 1", "not-base64!! 2"])
    with pytest.raises(ValueError, match="bad.tiktoken, line 3"):
        BPETokenizer.from_tiktoken(path)
    _write_lines(path, ["IQ== 0", "Ig== 0"])
    with pytest.raises(ValueError, match="bad.tiktoken, line 2: .*repeats"):
        BPETokenizer.from_tiktoken(path)
    _write_lines(path, ["IQ== 0", "Ig== 1"])  # well-formed, but most bytes have no token
    with pytest.raises(ValueError, match="bad.tiktoken: .*256 bytes"):
        BPETokenizer.from_tiktoken(path)


def test_bad_ranks_and_specials():
    ranks = {bytes([b]): b for b in range(256)}
    with pytest.raises(ValueError, match="0..256"):
        BPETokenizer({**ranks, b"ab": 300})
    with pytest.raises(ValueError, match="id 5"):
        BPETokenizer(ranks, special_tokens={"<|s|>": 5})
    with pytest.raises(ValueError, match="share ids"):
        BPETokenizer(ranks, special_tokens={"<|a|>": 300, "<|b|>": 300})


# --- GPT-2's encoder.json + vocab.bpe -----------------------------------------------------------


def _recover_merge(token: bytes, ranks: dict[bytes, int]) -> tuple[bytes, bytes]:
    """The two tokens a token was merged from: BPE on it with only lower ranks allowed."""
    parts = [token[i : i + 1] for i in range(len(token))]
    limit = ranks[token]
    while len(parts) > 2:
        candidates = [(ranks.get(parts[i] + parts[i + 1], limit), i) for i in range(len(parts) - 1)]
        rank, i = min(candidates)
        assert rank < limit
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts[0], parts[1]


@pytest.fixture(scope="module")
def gpt2_files(tmp_path_factory, gpt2):
    """GPT-2's encoder.json and vocab.bpe, rebuilt from the ranks with a reference byte map."""
    convert = pytest.importorskip("transformers.convert_slow_tokenizer")
    table = convert.bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(table[b] for b in token)

    ranks = gpt2.mergeable_ranks
    folder = tmp_path_factory.mktemp("gpt2files")
    encoder = {text(t): r for t, r in sorted(ranks.items(), key=lambda item: item[1])}
    encoder["<|endoftext|>"] = 50256
    (folder / "encoder.json").write_text(json.dumps(encoder), encoding="utf-8")
    merges = ["#version: 0.2"]
    for token, _ in sorted(((t, r) for t, r in ranks.items() if r >= 256), key=lambda x: x[1]):
        left, right = _recover_merge(token, ranks)
        merges.append(f"{text(left)} {text(right)}")
    (folder / "vocab.bpe").write_text("\n".join(merges) + "\n", encoding="utf-8")
    return folder / "encoder.json", folder / "vocab.bpe"


def test_bytes_to_unicode_matches_references():
    convert = pytest.importorskip("transformers.convert_slow_tokenizer")
    assert bytes_to_unicode() == convert.bytes_to_unicode()
    tokenizers = pytest.importorskip("tokenizers")
    assert set(bytes_to_unicode().values()) == set(tokenizers.pre_tokenizers.ByteLevel.alphabet())


def test_from_gpt2_files(gpt2_files, gpt2, monkeypatch):
    encoder_json, vocab_bpe = gpt2_files
    tok = BPETokenizer.from_gpt2_files(encoder_json, vocab_bpe)
    assert tok.mergeable_ranks == gpt2.mergeable_ranks
    assert tok.special_tokens == {"<|endoftext|>": 50256}
    assert tok.encode("Hello world") == [15496, 995]
    # tiktoken's own reader of these two files agrees (and checks they are consistent)
    tiktoken_load = pytest.importorskip("tiktoken.load")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # it would otherwise cache by file name
    reference = tiktoken_load.data_gym_to_mergeable_bpe_ranks(str(vocab_bpe), str(encoder_json))
    assert tok.mergeable_ranks == reference


def test_bad_gpt2_files(gpt2_files, tmp_path):
    encoder_json, vocab_bpe = gpt2_files
    merges = vocab_bpe.read_text(encoding="utf-8").split("\n")
    swapped = tmp_path / "swapped.bpe"
    swapped.write_text("\n".join(merges[:3] + [merges[4], merges[3]] + merges[5:]), "utf-8")
    with pytest.raises(ValueError, match="swapped.bpe, line 4: .*merge order"):
        BPETokenizer.from_gpt2_files(encoder_json, swapped)
    short = tmp_path / "short.bpe"
    short.write_text("\n".join(merges[:1000]) + "\n", "utf-8")
    with pytest.raises(ValueError, match="short.bpe.*truncated"):
        BPETokenizer.from_gpt2_files(encoder_json, short)
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": 1,\n "b": }', "utf-8")
    with pytest.raises(ValueError, match="broken.json, line 2"):
        BPETokenizer.from_gpt2_files(broken, vocab_bpe)
    bad_line = tmp_path / "badline.bpe"
    bad_line.write_text("\n".join(merges[:5] + ["onlyone"] + merges[5:]), "utf-8")
    with pytest.raises(ValueError, match="badline.bpe, line 6: expected 'left right'"):
        BPETokenizer.from_gpt2_files(encoder_json, bad_line)


# --- CharTokenizer ------------------------------------------------------------------------------


def test_char_tokenizer(tmp_path):
    tok = CharTokenizer.train("hello world")
    assert tok.chars == sorted(set("hello world")) and tok.vocab_size == len(tok) == 8
    ids = tok.encode("hello")
    assert ids == [tok.chars.index(c) for c in "hello"]
    assert tok.decode(ids) == "hello"
    with pytest.raises(ValueError, match="'z' at position 2"):
        tok.encode("hez")
    with pytest.raises(ValueError, match="unknown token id 8 at position 1"):
        tok.decode([0, 8])
    with pytest.raises(ValueError, match="empty"):
        CharTokenizer.train("")
    path = tmp_path / "c.json"
    tok.save(path)
    for loaded in (CharTokenizer.load(path), tokenizer_pkg.load(path)):
        assert isinstance(loaded, CharTokenizer) and loaded.chars == tok.chars
    with pytest.raises(ValueError, match="CharTokenizer"):
        BPETokenizer.load(path)


# --- CLI ----------------------------------------------------------------------------------------


def run_cli(*argv):
    parser = argparse.ArgumentParser(prog="tinygpt")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tokenize", *argv])
    return args.func(args)


def test_cli_train_drops_a_byte_order_mark(tmp_path):
    # as `tinygpt train` reads corpora: the mark is no text, so the tokenizers are equal
    plain, marked = tmp_path / "plain.txt", tmp_path / "marked.txt"
    plain.write_text(TEXT, encoding="utf-8")
    marked.write_bytes(b"\xef\xbb\xbf" + TEXT.encode("utf-8"))
    for corpus in (plain, marked):  # 346: every pair merged, even those seen once
        assert run_cli("train", "--input", str(corpus), "--vocab-size", "346", "--out",
                       str(corpus.with_suffix(".tok")), "--quiet") == 0
        # and no more: a mark read as text would bring pairs of its own
        assert run_cli("train", "--input", str(corpus), "--vocab-size", "347", "--out",
                       str(tmp_path / "more.tok"), "--quiet") == 2
    assert plain.with_suffix(".tok").read_bytes() == marked.with_suffix(".tok").read_bytes()


def test_cli_train_reads_corpora_as_tinygpt_train_does(tmp_path):
    """--input takes what `tinygpt train --data` takes: a .gz file or a folder of .txt."""
    plain, packed, folder = tmp_path / "c.txt", tmp_path / "c.txt.gz", tmp_path / "corpus"
    plain.write_text(TEXT, encoding="utf-8")
    packed.write_bytes(gzip.compress(TEXT.encode("utf-8")))
    folder.mkdir()
    (folder / "a.txt").write_text(TEXT, encoding="utf-8")
    for corpus in (plain, packed, folder):
        assert run_cli("train", "--input", str(corpus), "--vocab-size", "300", "--out",
                       str(tmp_path / f"{corpus.name}.tok"), "--quiet") == 0
    tokens = {(tmp_path / f"{c.name}.tok").read_bytes() for c in (plain, packed, folder)}
    assert len(tokens) == 1


def test_cli_train_encode_decode_show(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    out = tmp_path / "tok.tok"
    assert (
        run_cli(
            "train",
            "--input",
            str(corpus),
            "--vocab-size",
            "300",
            "--out",
            str(out),
            "--special",
            "<|endoftext|>",
            "--quiet",
        )
        == 0
    )
    tok = BPETokenizer.load(out)
    assert tok.vocab_size == 300 and tok.special_tokens == {"<|endoftext|>": 299}
    capsys.readouterr()

    assert run_cli("encode", "--tokenizer", str(out), "--text", "Speak, speak.") == 0
    ids = [int(i) for i in capsys.readouterr().out.split()]
    assert ids == tok.encode("Speak, speak.")

    assert run_cli("decode", "--tokenizer", str(out), "--ids", ",".join(map(str, ids))) == 0
    assert capsys.readouterr().out == "Speak, speak.\n"

    assert (
        run_cli("show", "--tokenizer", str(out), "--text", "Speak<|endoftext|>", "--allow-special")
        == 0
    )
    shown = capsys.readouterr().out.splitlines()
    assert shown[-1] == f"{len(tok.encode('Speak')) + 1} tokens"
    assert shown[-2].split() == ["299", "'<|endoftext|>'"]


def test_cli_reads_stdin(monkeypatch, capsys):
    path = str(shared_file("gpt2.tiktoken"))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("Hello world"))
    assert run_cli("encode", "--tokenizer", path) == 0
    assert capsys.readouterr().out == "15496 995\n"
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("15496 995\n"))
    assert run_cli("decode", "--tokenizer", path) == 0
    assert capsys.readouterr().out == "Hello world\n"


def test_cli_errors(tmp_path, capsys):
    assert run_cli("encode", "--tokenizer", str(tmp_path / "missing.tok"), "--text", "x") == 2
    assert "error:" in capsys.readouterr().err
    corpus = tmp_path / "c.txt"
    corpus.write_text("abc", encoding="utf-8")
    args = ("train", "--input", str(corpus), "--vocab-size", "10", "--out", str(tmp_path / "o"))
    assert run_cli(*args) == 2
    assert "vocab_size=10" in capsys.readouterr().err
    path = str(shared_file("gpt2.tiktoken"))
    assert run_cli("decode", "--tokenizer", path, "--ids", "1 two 3") == 2
    assert "'two'" in capsys.readouterr().err
    for bad in ("--5", "²"):  # they look like digits to str.isdigit(), not to int()
        assert run_cli("decode", "--tokenizer", path, "--ids", f"15496 {bad}") == 2
        assert repr(bad) in capsys.readouterr().err
    assert run_cli("encode", "--tokenizer", path, "--text", "<|endoftext|>") == 2
    assert "<|endoftext|>" in capsys.readouterr().err
