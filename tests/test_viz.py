"""Visualization: attention maps read back from the pixels, window outlines, HTML, CLI, plots."""

import json
import os
import subprocess
import sys
import warnings
from html.parser import HTMLParser

import matplotlib
import numpy as np
import pytest
from conftest import REPO

from tinygpt import viz
from tinygpt.cli import main
from tinygpt.kernels.reference import allowed_keys, rope_cos_sin
from tinygpt.model import GPT, GPTConfig, KVCache
from tinygpt.optim import warmup_cosine_lr
from tinygpt.tokenizer import BPETokenizer, CharTokenizer

plt = viz.plt


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def known_weights(L=2, H=3, T=6, S=6, seed=0):
    """Distinct values in every cell, so a transposed or shifted map cannot pass."""
    w = np.random.default_rng(seed).permutation(L * H * T * S).reshape(L, H, T, S) + 1.0
    return w / w.max()


def rendered(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)


def cell_colour(pixels, ax, i, j):
    """RGB at the centre of cell (query i, key j) of an imshow'd map."""
    x, y = ax.transData.transform((j, i))
    return pixels[int(round(pixels.shape[0] - y)), int(round(x))]


def map_axes(fig):
    return [a for a in fig.axes if a.images and a.get_label() != "<colorbar>"]


# ---------------------------------------------------------------------------- plot_attention


def test_a_single_map_puts_each_value_in_its_cell():
    w = known_weights()
    tokens = [f"t{i}" for i in range(6)]
    fig = viz.plot_attention(w, tokens, layer=1, head=2)
    (ax,) = map_axes(fig)
    image = ax.images[0]
    np.testing.assert_array_equal(image.get_array(), w[1, 2])
    pixels = rendered(fig)
    for i in range(6):
        for j in range(6):
            expected = np.array(image.cmap(image.norm(w[1, 2, i, j]))[:3]) * 255
            got = cell_colour(pixels, ax, i, j)
            assert np.abs(got - expected).max() <= 2, (i, j, got, expected)
    # the colours decode back to the values: brighter cells never hold larger weights
    darkness = [-cell_colour(pixels, ax, i, j).sum() for i in range(6) for j in range(6)]
    assert np.array_equal(np.argsort(darkness, kind="stable"),
                          np.argsort(w[1, 2].ravel(), kind="stable"))
    assert ax.get_title() == "layer 1, head 2"
    assert [t.get_text() for t in ax.get_xticklabels()] == tokens


def test_the_grid_has_one_map_per_layer_and_head_and_a_colour_bar():
    w = known_weights(L=2, H=3)
    fig = viz.plot_attention(w, list("abcdef"))
    axes = map_axes(fig)
    assert len(axes) == 6
    for n, ax in enumerate(axes):
        np.testing.assert_array_equal(ax.images[0].get_array(), w[n // 3, n % 3])
        assert ax.get_title() == f"L{n // 3} H{n % 3}"
    assert len(fig.axes) == 7  # + the colour bar
    assert "attention weight" in fig.axes[-1].get_ylabel()
    # one shared scale, so maps compare
    assert {(a.images[0].norm.vmin, a.images[0].norm.vmax) for a in axes} == {(0.0, 1.0)}
    one_layer = viz.plot_attention(w, list("abcdef"), layer=0)
    assert [a.get_title() for a in map_axes(one_layer)] == ["L0 H0", "L0 H1", "L0 H2"]
    one_head = viz.plot_attention(w, list("abcdef"), head=1)
    assert [a.get_title() for a in map_axes(one_head)] == ["L0 H1", "L1 H1"]


def test_model_attentions_plot_directly():
    tok = CharTokenizer.train("hello world")
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_head=2,
                          n_embd=16))
    ids = tok.encode("hello")
    attentions = model(np.array([ids]), output_attentions=True).attentions
    fig = viz.plot_attention(attentions, viz.token_labels(tok, ids))
    axes = map_axes(fig)
    assert len(axes) == 4
    np.testing.assert_allclose(axes[3].images[0].get_array(), attentions[1].numpy()[0, 1])


@pytest.mark.parametrize("T, S, window", [(7, 7, 3), (4, 9, 2), (5, 5, 1), (6, 6, 10)])
def test_the_local_window_is_outlined_around_exactly_its_cells(T, S, window):
    w = known_weights(L=2, H=1, T=T, S=S)
    fig = viz.plot_attention(w, [f"k{j}" for j in range(S)], window=[None, window])
    global_ax, local_ax = map_axes(fig)
    assert not [p for p in global_ax.patches if p.get_gid() == viz.WINDOW_GID]
    (outline,) = [p for p in local_ax.patches if p.get_gid() == viz.WINDOW_GID]
    path = outline.get_path()
    inside = np.array([[path.contains_point((j, i)) for j in range(S)] for i in range(T)])
    np.testing.assert_array_equal(inside, allowed_keys(T, S, True, window, np))
    # it is drawn on the figure, in the outline colour: look right of query 0's last key
    pixels = rendered(fig)
    x, y = local_ax.transData.transform((S - T + 0.5, 0))
    red = matplotlib.colors.to_rgb(viz.WINDOW_COLOR)
    col = pixels[int(round(pixels.shape[0] - y)), int(round(x)) - 1: int(round(x)) + 2]
    assert np.abs(col - np.array(red) * 255).sum(axis=1).min() < 90


def test_labels_show_whitespace_and_are_thinned_for_long_texts():
    tokens = [" the", "\n", "\t", "a$b$", "x"]
    w = known_weights(L=1, H=1, T=5, S=5)
    fig = viz.plot_attention(w, tokens, window=2)
    (ax,) = map_axes(fig)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["␣the", "\\n", "\\t", "a$b$", "x"]
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert viz.token_label(b"\xe2\x80") == "\\xe2\\x80"  # half a character stays readable

    n = 128
    w = known_weights(L=1, H=1, T=n, S=n)
    fig = viz.plot_attention(w, [f" w{i}" for i in range(n)])
    (ax,) = map_axes(fig)
    shown = [t.get_text() for t in ax.get_xticklabels()]
    assert 16 <= len(shown) <= 48 and shown[0] == "␣w0"
    assert ax.images[0].get_array().shape == (n, n)
    fig.canvas.draw()  # labels, colour bar and outline all lay out without errors


def test_draws_into_a_given_axes():
    fig, ax = plt.subplots()
    w = known_weights(L=1, H=2)
    assert viz.plot_attention(w, list("abcdef"), layer=0, head=1, ax=ax) is fig
    np.testing.assert_array_equal(ax.images[0].get_array(), w[0, 1])
    with pytest.raises(ValueError, match="ax= draws one map"):
        viz.plot_attention(w, list("abcdef"), ax=ax)


def test_bad_attention_inputs_are_clear_errors():
    w = known_weights(L=2, H=2, T=4, S=4)
    with pytest.raises(ValueError, match="got 3 tokens for attention over 4 keys"):
        viz.plot_attention(w, list("abc"))
    with pytest.raises(ValueError, match="layer 2 is out of range: there are 2 layers"):
        viz.plot_attention(w, list("abcd"), layer=2)
    with pytest.raises(ValueError, match="head -1 is out of range"):
        viz.plot_attention(w, list("abcd"), head=-1)
    with pytest.raises(ValueError, match="window has 3 entries"):
        viz.plot_attention(w, list("abcd"), window=[1, 2, 3])
    for bad in (0, 2.5, "16", True, [1, 0.5]):  # a float, a string, a bool: not windows
        with pytest.raises(ValueError, match="window must be a positive int"):
            viz.plot_attention(w, list("abcd"), window=bad)
    with pytest.raises(ValueError, match="batch size 2"):
        viz.plot_attention([np.ones((2, 1, 4, 4))], list("abcd"))
    with pytest.raises(ValueError, match="more queries"):
        viz.plot_attention(np.ones((5, 4)), list("abcd"))


# ------------------------------------------------------------------------------------ HTML


class _Collect(HTMLParser):
    """Tags in order, a balance check, every src/href, and the text of each script."""

    VOID = {"meta", "br", "img", "input", "link", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.urls, self.scripts, self.seen = [], [], [], []
        self.doctype = None
        self._in_script = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.seen.append(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href")]
        if tag not in self.VOID:
            self.stack.append(tag)
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((dict(attrs), ""))

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()
        self._in_script = None

    def handle_data(self, data):
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)


def test_cached_attention_of_a_local_layer_lines_up_with_the_full_forward():
    """With a KV cache a local layer keeps only its window of keys, yet its maps span every
    position (zeros outside the window, as transformers gives): they equal the last rows of
    a full forward's maps (and plot like them)."""
    model = GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=8,
                          attention_layers=["global", "local"], window_size=3,
                          position_embedding="rope"))
    cache = KVCache(2)
    model(np.arange(10)[None], cache=cache)
    step = model(np.array([[3, 4]]), cache=cache, output_attentions=True).attentions
    assert cache.layer_length(1) == 3 and [a.shape[-1] for a in step] == [12, 12]
    full = model(np.r_[np.arange(10), 3, 4][None], output_attentions=True).attentions
    for a, b in zip(step, full):
        np.testing.assert_array_equal(a.numpy(), b.numpy()[:, :, -2:])
    np.testing.assert_array_equal(viz.attention_stack(step),
                                  viz.attention_stack(full)[:, :, -2:])
    viz.plot_attention(step, [str(i) for i in range(12)], layer=1)


def test_infinite_or_negative_weights_are_refused():
    for bad in (np.inf, -0.5):
        w = np.full((1, 1, 2, 2), 0.5)
        w[0, 0, 1, 0] = bad
        with pytest.raises(ValueError, match="finite and >= 0"):
            viz.plot_attention(w, ["a", "b"])
        with pytest.raises(ValueError, match="finite and >= 0"):
            viz.attention_html(w, ["a", "b"])


def test_nan_or_empty_weights_and_non_integer_indices_are_refused():
    with pytest.raises(ValueError, match="contain NaN"):
        viz.plot_attention(np.full((3, 3), np.nan), list("abc"))
    with pytest.raises(ValueError, match="nothing to draw"):
        viz.plot_attention(np.zeros((0, 3)), list("abc"))
    for bad in (True, 1.0):
        with pytest.raises(TypeError, match="layer must be an integer"):
            viz.plot_attention(known_weights(), list("abcdef"), layer=bad)


def test_html_export_is_valid_and_holds_every_layer_and_head():
    w = known_weights(L=2, H=3, T=5, S=5)
    tokens = ["<b>", " </script>", "\n", "&amp;", "é"]
    page = viz.attention_html(w, tokens, window=[None, 2], title="a <test>")
    parser = _Collect()
    parser.feed(page)
    parser.close()
    assert parser.doctype.lower() == "doctype html" and parser.stack == []
    assert parser.urls == [] and "http" not in page  # self-contained: nothing to fetch
    assert all("src" not in attrs for attrs, _ in parser.scripts)
    assert "<title>a &lt;test&gt;</title>" in page
    (data_text,) = [text for attrs, text in parser.scripts if attrs.get("id") == "attention-data"]
    data = json.loads(data_text)
    assert (data["n_layer"], data["n_head"], data["queries"], data["keys"]) == (2, 3, 5, 5)
    assert data["tokens"] == ["<b>", "␣</script>", "\\n", "&amp;", "é"]
    assert data["window"] == [None, 2]
    assert data["scale"] == viz.HTML_SCALE
    np.testing.assert_allclose(np.array(data["weights"]) / data["scale"], w,
                               atol=0.5 / viz.HTML_SCALE)
    assert {"layer", "head", "tokens", "map"} <= set(_ids(page))
    assert "mouseenter" in page  # hovering a token shows what it attends to


def _ids(page):
    class Ids(HTMLParser):
        found: list = []

        def handle_starttag(self, tag, attrs):
            self.found += [v for k, v in attrs if k == "id"]

    p = Ids()
    p.found = []
    p.feed(page)
    return p.found


# ------------------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run folder as the trainer writes it: DIR/checkpoint/ with weights and tokenizer."""
    run = tmp_path_factory.mktemp("run")
    tok = CharTokenizer.train("hello world, the quick brown fox\n")
    config = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2,
                       n_embd=16, attention_layers=["global", "local"], window_size=3,
                       scale_attn=False, qkv_bias=False)  # GPT-Neo's shape: saves exactly
    GPT(config).save_pretrained(run / "checkpoint")
    tok.save(run / "checkpoint" / "tokenizer.json")
    return run


def test_cli_writes_png_svg_and_html(run_dir, tmp_path, capsys):
    png, svg, page = tmp_path / "a.png", tmp_path / "a.svg", tmp_path / "a.html"
    assert main(["viz", "attention", "--ckpt", str(run_dir), "--text", "hello world",
                 "--out", str(png), "--html", str(page)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert "2 layers x 2 heads, 11 tokens" in capsys.readouterr().out
    data = page.read_text()
    assert '"window":[null,3]' in data and '"n_layer":2,"n_head":2' in data
    assert main(["viz", "attention", "--ckpt", str(run_dir / "checkpoint"), "--text", "the fox",
                 "--layer", "1", "--head", "0", "--out", str(svg)]) == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert "layer 1, head 0, local window 3" in text


def test_cli_errors_name_the_problem(run_dir, tmp_path, capsys):
    base = ["viz", "attention", "--ckpt", str(run_dir), "--text", "hello"]
    cases = [
        ([], "nothing to write: give --out"),
        (["--out", str(tmp_path / "a.jpg")], "a.jpg: use a .png, .svg, .pdf file name"),
        (["--out", str(tmp_path / "a.png"), "--layer", "7"], "layer 7 is out of range"),
        (["--html", str(tmp_path / "a.html"), "--text", "hello Z"],
         "character 'Z' at position 6 is not in the vocabulary"),
        (["--html", str(tmp_path / "a.html"), "--text", "o" * 40],
         "--text is 40 tokens; this model reads at most block_size=32"),
        (["--out", str(tmp_path / "no" / "dir" / "a.png")], "does not exist"),
        (["--out", str(tmp_path / "a.png"), "--html", str(tmp_path / "no" / "a.html")],
         "does not exist"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        assert message in capsys.readouterr().err
    assert main(["viz", "attention", "--ckpt", str(tmp_path / "none"), "--text", "a",
                 "--html", "x.html"]) == 2
    assert "no such folder" in capsys.readouterr().err
    bare = tmp_path / "bare"
    GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=1, n_embd=8)).save_pretrained(bare)
    page = tmp_path / "bare.html"
    assert main(["viz", "attention", "--ckpt", str(bare), "--text", "a", "--html", str(page)]) == 2
    assert "pass --tokenizer PATH" in capsys.readouterr().err
    CharTokenizer(list("abcdefgh")).save(tmp_path / "chars.json")
    assert main(["viz", "attention", "--ckpt", str(bare), "--text", "abc", "--html", str(page),
                 "--tokenizer", str(tmp_path / "chars.json")]) == 0
    assert '"tokens":["a","b","c"]' in page.read_text()
    CharTokenizer(list("abcdefghij")).save(tmp_path / "ten.json")  # 10 ids, 8 embeddings
    assert main(["viz", "attention", "--ckpt", str(bare), "--text", "abc", "--html", str(page),
                 "--tokenizer", str(tmp_path / "ten.json")]) == 2
    assert "the tokenizer has 10 tokens but the model's vocab_size is 8" in (
        capsys.readouterr().err)


# ------------------------------------------------------------------------------ other plots


def test_plot_tokens_draws_one_box_per_token_with_its_id(tmp_path):
    text = "hello hello world\nthe end"
    tok = BPETokenizer.train(text * 3, 262)
    ids = tok.encode(text)
    fig = viz.plot_tokens(tok, text)
    ax = fig.axes[0]
    assert len(ax.patches) == len(ids)
    texts = [t.get_text() for t in ax.texts]
    assert texts[0::2] == viz.token_labels(tok, ids) and texts[1::2] == [str(i) for i in ids]
    assert "\\n" in texts[0::2]
    fig.savefig(tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="empty"):
        viz.plot_tokens(tok, "")
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="width must be a positive int"):
            viz.plot_tokens(tok, text, width=bad)


def test_plot_loss_reads_the_metrics_file(tmp_path):
    records = [{"step": s, "train_loss": 4.0 - s / 100, "lr": 1e-3} for s in range(0, 50, 10)]
    records[2]["val_loss"] = 3.9
    records[4]["val_loss"] = 3.7
    path = tmp_path / "metrics.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    fig = viz.plot_loss(tmp_path)  # a run folder works as well as the file
    train, val = fig.axes[0].get_lines()
    np.testing.assert_allclose(train.get_xydata(), [(r["step"], r["train_loss"]) for r in records])
    np.testing.assert_allclose(val.get_xydata(), [(20, 3.9), (40, 3.7)])
    path.write_text('{"step": 0, "train_loss": 1}\n{"step": 1, "train_loss": \n')
    with pytest.raises(ValueError, match="metrics.jsonl, line 2: not valid JSON"):
        viz.plot_loss(path)
    path.write_text('{"step": 0, "lr": 1}\n')
    with pytest.raises(ValueError, match="no record has a step with train_loss or val_loss"):
        viz.plot_loss(path)
    with pytest.raises(FileNotFoundError, match="no metrics file"):
        viz.plot_loss(tmp_path / "missing.jsonl")


def test_plot_lr_schedule_draws_the_optimizers_schedule():
    fig = viz.plot_lr_schedule(6e-4, 10, 100, 6e-5)
    (line,) = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) > 2]
    expected = [warmup_cosine_lr(s, 6e-4, 10, 100, 6e-5) for s in range(101)]
    np.testing.assert_allclose(line.get_ydata(), expected)
    with pytest.raises(ValueError, match="warmup_steps=20, max_steps=10"):
        viz.plot_lr_schedule(1e-3, 20, 10)


def test_plot_rope_shows_the_cos_table_and_the_decay(tmp_path):
    fig = viz.plot_rope(rotary_dim=16, max_position=64)
    left, right = (a for a in fig.axes if a.get_label() != "<colorbar>")
    cos, _ = rope_cos_sin(np.arange(64), 16, dtype=np.float64)
    np.testing.assert_allclose(left.images[0].get_array(), cos)
    scores = right.get_lines()[0].get_ydata()
    assert scores[0] == pytest.approx(1.0) and scores[1:].max() < 1.0
    fig.savefig(tmp_path / "rope.png")
    assert (tmp_path / "rope.png").read_bytes()[:4] == b"\x89PNG"


# -------------------------------------------------------------------------------- headless


@pytest.mark.parametrize("env_backend, expected", [(None, "agg"), ("svg", "svg")])
def test_importing_viz_is_headless_unless_told_otherwise(env_backend, expected):
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    if env_backend:
        env["MPLBACKEND"] = env_backend
    env["DISPLAY"] = ":0"  # even where a display seems available, no window is chosen
    code = ("import tinygpt.viz, matplotlib, matplotlib.pyplot as plt; "
            "print(matplotlib.get_backend().lower())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, cwd=REPO, check=True)
    assert out.stdout.strip() == expected


def test_library_code_never_calls_show():
    for path in [REPO / "tinygpt" / "viz.py", REPO / "tinygpt" / "commands" / "viz.py"]:
        assert ".show(" not in path.read_text()


def test_no_warnings_when_plotting(recwarn):
    warnings.simplefilter("always")
    w = known_weights(L=1, H=1, T=8, S=8)
    viz.plot_attention(w, [f"${i}" for i in range(8)], window=3).canvas.draw()
    assert not [str(r.message) for r in recwarn.list]
