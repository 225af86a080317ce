"""Pictures of what a model does: attention maps, tokens, loss curves, schedules, RoPE.

Every function returns a matplotlib ``Figure``; save it with ``fig.savefig("x.png")`` and
free it with ``plt.close(fig)``. Importing this module selects the headless Agg backend
(unless ``MPLBACKEND`` names another, pyplot is already in use, or we run in a Jupyter
kernel), so no window ever pops up in scripts, tests or CI; in a notebook the figures
show inline as usual.

``attention_html`` writes the same attention weights as one self-contained web page:
hover a token to see what it attends to, per layer and head.
"""

from __future__ import annotations

import html
import json
import math
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import matplotlib
import numpy as np

if not (os.environ.get("MPLBACKEND") or "matplotlib.pyplot" in sys.modules
        or "ipykernel" in sys.modules):
    matplotlib.use("Agg")  # headless by default: lessons and tests never open a window

import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Polygon, Rectangle  # noqa: E402

from tinygpt import backend  # noqa: E402
from tinygpt.kernels.reference import rope_cos_sin  # noqa: E402
from tinygpt.optim import warmup_cosine_lr  # noqa: E402
from tinygpt.tensor import Tensor  # noqa: E402

ATTENTION_CMAP = "Blues"
WINDOW_COLOR = "#d62728"
WINDOW_GID = "attention-window"  # the outline patches carry this gid, so tests can find them
HTML_SCALE = 10_000  # the HTML page stores weights as integers in 1/10000 (half the bytes)

# ----------------------------------------------------------------------------- tokens


def token_label(piece: str | bytes) -> str:
    """A token as a reader can see it: spaces as ␣, newlines and tabs as \\n and \\t.

    Bytes that are not valid UTF-8 (a BPE token can hold part of a character) are shown
    as \\xHH escapes.
    """
    if isinstance(piece, bytes):
        piece = piece.decode("utf-8", errors="backslashreplace")
    out = []
    for ch in piece:
        if ch == " ":
            out.append("␣")
        elif ch.isprintable():
            out.append(ch)
        else:  # \n, \t, \r and other control characters, escaped
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def token_labels(tokenizer, ids: Sequence[int]) -> list[str]:
    """Readable labels of ``ids`` for any tinygpt tokenizer (BPE or char)."""
    ids = [int(i) for i in ids]
    if hasattr(tokenizer, "decode_tokens_bytes"):  # BPE: a token is bytes, maybe partial
        return [token_label(b) for b in tokenizer.decode_tokens_bytes(ids)]
    return [token_label(tokenizer.decode([i])) for i in ids]


def encode_text(tokenizer, text: str) -> list[int]:
    """Token ids of ``text``; a BPE tokenizer turns special-token strings into their ids."""
    if hasattr(tokenizer, "special_tokens"):  # BPE: show special tokens as one token each
        return tokenizer.encode(text, allowed_special="all")
    return tokenizer.encode(text)


# -------------------------------------------------------------------------- attention


def _host(a) -> np.ndarray:
    """A Tensor or array (numpy or cupy) as a float64 host array."""
    if isinstance(a, Tensor):
        a = a.data
    return np.asarray(backend.to_numpy(a), dtype=np.float64)


def attention_stack(attentions) -> np.ndarray:
    """Attention weights as one host array (n_layer, n_head, T, S).

    Takes what ``model(idx, output_attentions=True).attentions`` gives (a list per layer of
    (1, H, T, S) Tensors; a layer given with a shorter S, only its last keys, is padded with
    zeros on the left), or one array: (L, H, T, S), (H, T, S) for one layer, (T, S) for one
    map.
    """
    if isinstance(attentions, (list, tuple)):
        if not attentions:
            raise ValueError("attentions is empty: expected one (B, H, T, S) array per layer")
        layers = [_host(a) for a in attentions]
        # a layer with only its last S_l keys (say, maps a local layer computed over its
        # window alone): zeros on the left, keys it cannot attend, line it up
        if len({a.shape[:-1] for a in layers}) == 1 and len({a.ndim for a in layers}) == 1:
            S = max(a.shape[-1] for a in layers)
            layers = [np.pad(a, [(0, 0)] * (a.ndim - 1) + [(S - a.shape[-1], 0)])
                      for a in layers]
        shapes = {a.shape for a in layers}
        if len(shapes) != 1 or layers[0].ndim not in (3, 4):
            raise ValueError(f"attentions must be per-layer arrays of one shape (B, H, T, S) "
                             f"or (H, T, S), got shapes {[a.shape for a in layers]}")
        if layers[0].ndim == 4:
            if layers[0].shape[0] != 1:
                raise ValueError(f"attentions have batch size {layers[0].shape[0]}; plot one "
                                 f"sequence, e.g. [a[i:i+1] for a in attentions]")
            layers = [a[0] for a in layers]
        maps = np.stack(layers)
    else:
        maps = _host(attentions)
        if maps.ndim not in (2, 3, 4):
            raise ValueError(f"attentions must be (L, H, T, S), (H, T, S) or (T, S), got "
                             f"shape {maps.shape}")
        maps = maps.reshape((1,) * (4 - maps.ndim) + maps.shape)
    if maps.shape[2] > maps.shape[3]:
        raise ValueError(f"attention maps have more queries (T={maps.shape[2]}) than keys "
                         f"(S={maps.shape[3]})")
    if 0 in maps.shape:
        raise ValueError(f"attention maps of shape {maps.shape} hold nothing to draw")
    if np.isnan(maps).any():
        raise ValueError("attention weights contain NaN (did training diverge?)")
    if not np.isfinite(maps).all() or (maps < 0).any():
        raise ValueError(f"attention weights must be finite and >= 0 (probabilities), got "
                         f"values from {maps.min()} to {maps.max()}")
    return maps


def _labels(tokens: Sequence, n_keys: int) -> list[str]:
    """Visible labels, one per key (tokens may be strings, bytes or anything printable)."""
    labels = [token_label(t if isinstance(t, (str, bytes)) else str(t)) for t in tokens]
    if len(labels) != n_keys:
        raise ValueError(f"got {len(labels)} tokens for attention over {n_keys} keys; pass "
                         f"one label per key")
    return labels


def _windows(window, n_layer: int) -> list[int | None]:
    """One local-window size (or None) per layer from an int, None, or a per-layer list."""
    wrong = "window must be a positive int, a per-layer list of them (or None), or None; got"
    if window is None or isinstance(window, (int, np.integer)):
        windows = [window] * n_layer
    elif isinstance(window, (str, bytes)) or not isinstance(window, Iterable):
        raise ValueError(f"{wrong} {window!r}")
    else:
        windows = list(window)
        if len(windows) != n_layer:
            raise ValueError(f"window has {len(windows)} entries, one per layer is needed "
                             f"({n_layer} layers)")
    for w in windows:
        if w is not None and (not isinstance(w, (int, np.integer)) or isinstance(w, bool)
                              or w < 1):
            raise ValueError(f"{wrong} {w!r}")
    return [None if w is None else int(w) for w in windows]


def _pick(index: int | None, n: int, what: str) -> list[int]:
    if index is None:
        return list(range(n))
    if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
        raise TypeError(f"{what} must be an integer, got {index!r}")
    if not 0 <= index < n:
        raise ValueError(f"{what} {index!r} is out of range: there are {n} {what}s "
                         f"(0..{n - 1})")
    return [int(index)]


def window_outline(T: int, S: int, window: int) -> np.ndarray:
    """Corners (x=key, y=query, in cell units) of the staircase around the local window.

    Query i sits at position S - T + i and sees keys pos - window < j <= pos; the outline
    runs down the right edges of those rows, then back up their left edges.
    """
    pos = S - T + np.arange(T)
    right = pos + 0.5
    left = np.maximum(pos - window + 1, 0) - 0.5
    down = [(x, y) for i, x in enumerate(right) for y in (i - 0.5, i + 0.5)]
    up = [(x, y) for i, x in reversed(list(enumerate(left))) for y in (i + 0.5, i - 0.5)]
    return np.array(down + up, dtype=np.float64)


def _short(label: str, limit: int = 14) -> str:
    """A tick label cut to ``limit`` characters, so one long token cannot squeeze the map."""
    return label if len(label) <= limit else label[:limit - 1] + "…"


def _ticks(ax, labels: Sequence[str], axis: str, max_labels: int, fontsize: float) -> None:
    """Label every k-th cell so at most ``max_labels`` labels fit along an axis."""
    step = max(1, math.ceil(len(labels) / max_labels))
    ticks = list(range(0, len(labels), step))
    text = [_short(labels[i]) for i in ticks]
    if axis == "x":
        ax.set_xticks(ticks, text, rotation=90, fontsize=fontsize, parse_math=False)
    else:
        ax.set_yticks(ticks, text, fontsize=fontsize, parse_math=False)


def plot_attention(attentions, tokens: Sequence[str], layer: int | None = None,
                   head: int | None = None, window=None, ax=None) -> Figure:
    """Attention maps with token labels: one map, or a grid of layers (rows) x heads.

    ``attentions``: ``model(..., output_attentions=True).attentions`` or an array (see
    :func:`attention_stack`); ``tokens``: one label per key (S of them; queries are the
    last T). ``layer``/``head`` pick one row/column of the grid (both: a single map).
    ``window``: a local window size, or one per layer (None for global layers); its band
    of allowed keys is outlined. ``ax``: draw a single map into an existing Axes.
    All maps share one colour scale, 0 to the largest weight shown, so they compare; it
    is a square-root scale, so the small weights of long sequences stay visible.
    """
    maps = attention_stack(attentions)
    L, H, T, S = maps.shape
    labels = _labels(tokens, S)
    windows = _windows(window, L)
    layers, heads = _pick(layer, L, "layer"), _pick(head, H, "head")
    if ax is not None and len(layers) * len(heads) != 1:
        raise ValueError(f"ax= draws one map: pick a layer and a head (the attentions have "
                         f"{L} layers x {H} heads)")
    shown = maps[np.ix_(layers, heads)]
    vmax = float(shown.max()) or 1.0
    norm = PowerNorm(gamma=0.5, vmin=0.0, vmax=vmax)
    single = len(layers) * len(heads) == 1

    max_labels, fontsize = (48, 7 if S <= 48 else 5.5) if single else (20, 5.5)
    if ax is not None:
        fig, axes, cax = ax.figure, np.array([[ax]]), None
    else:
        fig, axes, cax = _map_grid(len(layers), len(heads), T / S, single, labels, fontsize)
    image = None
    for r, l in enumerate(layers):
        for c, h in enumerate(heads):
            a = axes[r, c]
            image = a.imshow(maps[l, h], cmap=ATTENTION_CMAP, norm=norm, interpolation="nearest")
            if windows[l] is not None:
                a.add_patch(Polygon(window_outline(T, S, windows[l]), closed=True, fill=False,
                                    edgecolor=WINDOW_COLOR, linewidth=1.2, gid=WINDOW_GID))
            local = "" if windows[l] is None else f", local window {windows[l]}"
            if single:
                a.set_title(f"layer {l}, head {h}{local}", fontsize=10)
            else:
                a.set_title(f"L{l} H{h}{' (local)' if local else ''}", fontsize=8)
            if r == len(layers) - 1:
                _ticks(a, labels, "x", max_labels, fontsize)
                a.set_xlabel("key (attended to)", fontsize=8)
            else:
                a.set_xticks([])
            if c == 0:
                _ticks(a, labels[S - T:], "y", max_labels, fontsize)
                a.set_ylabel("query (attending)", fontsize=8)
            else:
                a.set_yticks([])
    bar = fig.colorbar(image, ax=axes[0, 0]) if cax is None else fig.colorbar(image, cax=cax)
    bar.set_label("attention weight (square-root scale)", fontsize=8)
    return fig


def _map_grid(rows: int, cols: int, aspect: float, single: bool, labels: Sequence[str],
              fontsize: float):
    """A figure with rows x cols map axes and a colour-bar axes, margins fixed in inches.

    Laid out by hand rather than by matplotlib's constrained layout, which takes minutes
    on a 12 x 12 grid; the margins are sized from the longest token label.
    """
    width = 0.08 * len(labels) + 3.0 if single else (2.4 if len(labels) <= 32 else 3.0)
    width = min(10.0, max(4.0, width)) if single else width
    height = width * max(aspect, 0.35)
    longest = max(len(_short(label)) for label in labels)
    label_in = longest * fontsize * 0.62 / 72 + 0.5  # tick labels + axis title
    left, bottom, top, right = label_in, label_in, 0.45, 1.2  # inches; right: colour bar
    gap_w, gap_h = 0.15, 0.35  # between maps: room for each one's title
    fig_w = left + cols * width + (cols - 1) * gap_w + right
    inner_h = max(rows * height + (rows - 1) * gap_h, 2.2)  # at least the colour bar's label
    fig_h = bottom + inner_h + top
    fig = plt.figure(figsize=(fig_w, fig_h))
    axes = fig.subplots(rows, cols, squeeze=False, gridspec_kw=dict(
        left=left / fig_w, right=1 - right / fig_w, bottom=bottom / fig_h, top=1 - top / fig_h,
        wspace=gap_w / width, hspace=gap_h / height))
    cax = fig.add_axes((1 - (right - 0.25) / fig_w, bottom / fig_h, 0.15 / fig_w,
                        min(inner_h, 6.0) / fig_h))
    return fig, np.asarray(axes), cax


# ------------------------------------------------------------------------------- HTML


def attention_html(attentions, tokens: Sequence[str], window=None,
                   title: str = "tinygpt attention") -> str:
    """A self-contained HTML page (no external files or network) to explore attention.

    Hover a token to shade every token by how much it attends to it; pick the layer and
    head in the menus; click a token to pin it. The weights of every layer and head are
    embedded as JSON in ``<script id="attention-data">``, as integers in units of
    1 / ``HTML_SCALE`` (the page divides them back).
    """
    maps = attention_stack(attentions)
    L, H, T, S = maps.shape
    labels = _labels(tokens, S)
    data = {"tokens": labels, "n_layer": L, "n_head": H, "queries": T, "keys": S,
            "window": _windows(window, L), "scale": HTML_SCALE,
            "weights": np.rint(maps * HTML_SCALE).astype(np.int64).tolist()}
    # "<" only occurs inside JSON strings, where \u003c means the same: no "</script>" leaks
    payload = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    return (_HTML_TEMPLATE.replace("{{title}}", html.escape(title))
            .replace("{{data}}", payload))


_HTML_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{title}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
#tokens { font-family: ui-monospace, monospace; line-height: 2.2; max-width: 60em; }
.tok { padding: 2px 3px; margin: 1px; border: 1px solid #ccc; border-radius: 3px;
       cursor: pointer; white-space: pre; }
.tok.query { outline: 2px solid #d62728; }
#info { min-height: 1.5em; font-family: ui-monospace, monospace; }
canvas { border: 1px solid #ccc; margin-top: 0.5em; }
</style>
</head>
<body>
<h1>{{title}}</h1>
<p>Hover a token to see what it attends to (darker = more attention); click to pin it.
Layer <select id="layer"></select> Head <select id="head"></select></p>
<div id="tokens"></div>
<p id="info"></p>
<canvas id="map" width="10" height="10"></canvas>
<script type="application/json" id="attention-data">{{data}}</script>
<script>
"use strict";
const data = JSON.parse(document.getElementById("attention-data").textContent);
data.weights = data.weights.map(l => l.map(h => h.map(row => row.map(w => w / data.scale))));
const offset = data.keys - data.queries;  // query i is the token at offset + i
const layerSel = document.getElementById("layer"), headSel = document.getElementById("head");
const info = document.getElementById("info"), canvas = document.getElementById("map");
for (let l = 0; l < data.n_layer; l++) {
  const w = data.window[l];
  layerSel.add(new Option(w ? l + " (local, window " + w + ")" : String(l), l));
}
for (let h = 0; h < data.n_head; h++) headSel.add(new Option(String(h), h));
const spans = data.tokens.map((t, j) => {
  const s = document.createElement("span");
  s.className = "tok"; s.textContent = t; s.title = "token " + j;
  s.addEventListener("mouseenter", () => show(j));
  s.addEventListener("click", () => { pinned = pinned === j ? null : j; show(j); });
  document.getElementById("tokens").appendChild(s);
  return s;
});
let pinned = null;
document.getElementById("tokens").addEventListener("mouseleave", () => show(pinned));
layerSel.addEventListener("change", () => show(pinned));
headSel.addEventListener("change", () => show(pinned));
const weights = () => data.weights[+layerSel.value][+headSel.value];
const cell = Math.max(3, Math.min(14, Math.floor(512 / data.keys)));
canvas.width = cell * data.keys; canvas.height = cell * data.queries;
canvas.addEventListener("mousemove", e => {
  const r = canvas.getBoundingClientRect();
  const q = Math.floor((e.clientY - r.top) / cell);
  if (q >= 0 && q < data.queries) show(offset + q);
});
function shade(w, max) {  // white -> dark blue
  const t = max > 0 ? w / max : 0;
  return "rgb(" + Math.round(247 - 239 * t) + "," + Math.round(251 - 203 * t) + ","
       + Math.round(255 - 148 * t) + ")";
}
function drawMap(q) {
  const ctx = canvas.getContext("2d"), W = weights();
  const max = Math.max(...W.map(row => Math.max(...row)));
  for (let i = 0; i < data.queries; i++)
    for (let j = 0; j < data.keys; j++) {
      ctx.fillStyle = shade(W[i][j], max); ctx.fillRect(j * cell, i * cell, cell, cell);
    }
  const w = data.window[+layerSel.value];
  if (w) {  // the local window: keys pos - w < j <= pos
    ctx.strokeStyle = "#d62728"; ctx.lineWidth = 1;
    for (let i = 0; i < data.queries; i++) {
      const pos = offset + i, lo = Math.max(0, pos - w + 1);
      ctx.strokeRect(lo * cell + 0.5, i * cell + 0.5, (pos - lo + 1) * cell - 1, cell - 1);
    }
  }
  if (q !== null) {
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
    ctx.strokeRect(1, q * cell + 1, canvas.width - 2, cell - 2);
  }
}
function show(j) {
  spans.forEach(s => { s.style.background = ""; s.style.color = ""; s.classList.remove("query"); });
  const q = j === null ? -1 : j - offset;
  if (q < 0) { info.textContent = j === null ? "" : "token " + j + " is context only";
               drawMap(null); return; }
  const row = weights()[q], max = Math.max(...row);
  spans.forEach((s, k) => {
    const t = max > 0 ? row[k] / max : 0;
    s.style.background = shade(row[k], max);
    s.style.color = t > 0.6 ? "#fff" : "";
    s.title = "token " + k + ": weight " + row[k].toFixed(4);
  });
  spans[j].classList.add("query");
  const top = row.map((w, k) => [w, k]).sort((a, b) => b[0] - a[0]).slice(0, 5);
  info.textContent = "token " + j + " " + JSON.stringify(data.tokens[j]) + " attends to: "
    + top.map(([w, k]) => JSON.stringify(data.tokens[k]) + " " + w.toFixed(3)).join(", ");
  drawMap(q);
}
show(null);
</script>
</body>
</html>
"""


# ------------------------------------------------------------------------------ tokens


def plot_tokens(tokenizer, text: str, width: int = 60) -> Figure:
    """``text`` as the tokenizer cuts it: one coloured box per token, its id beneath.

    Spaces show as ␣ and newlines as \\n (and start a new line), so token boundaries at
    whitespace are visible. ``width`` is the line length in characters.
    """
    if not text:
        raise ValueError("plot_tokens: the text is empty")
    if not isinstance(width, (int, np.integer)) or isinstance(width, bool) or width < 1:
        raise ValueError(f"plot_tokens: width must be a positive int (characters a line), "
                         f"got {width!r}")
    ids = encode_text(tokenizer, text)
    labels = token_labels(tokenizer, ids)
    # lay the boxes out in character cells, wrapping at `width`
    placed, x, line = [], 0, 0
    for i, label in zip(ids, labels):
        w = max(len(label), len(str(i)))
        if x and x + w > width:
            x, line = 0, line + 1
        placed.append((x, line, w, i, label))
        x += w + 1
        if label.endswith("\\n"):
            x, line = 0, line + 1
    lines = placed[-1][1] + 1
    fig = plt.figure(figsize=(width * 0.13 + 0.6, lines * 0.62 + 0.7), layout="constrained")
    ax = fig.subplots()
    colors = matplotlib.colormaps["Pastel1"].colors
    for n, (x, line, w, i, label) in enumerate(placed):
        y = -line
        ax.add_patch(Rectangle((x - 0.4, y - 0.35), w + 0.8, 0.7, facecolor=colors[n % 8],
                               edgecolor="#666", linewidth=0.6))
        ax.text(x + w / 2, y + 0.02, label, ha="center", va="center", family="monospace",
                fontsize=9, parse_math=False)
        ax.text(x + w / 2, y - 0.48, str(i), ha="center", va="center", fontsize=6,
                color="#444")
    ax.set_xlim(-1, width + 1)
    ax.set_ylim(-lines + 0.3, 0.6)
    ax.axis("off")
    ax.set_title(f"{len(ids)} tokens, {len(text)} characters", fontsize=9)
    return fig


# ------------------------------------------------------------------------------ training


def read_metrics(metrics_path: str | os.PathLike) -> list[dict]:
    """The records of a ``metrics.jsonl`` file (or of ``DIR/metrics.jsonl``)."""
    path = Path(metrics_path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no metrics file at {path}")
    records = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}, line {n}: not valid JSON ({e.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}, line {n}: expected a JSON object, got {line[:40]!r}")
        records.append(record)
    return records


def plot_loss(metrics_path: str | os.PathLike) -> Figure:
    """Train and validation loss against step, from a run's ``metrics.jsonl``."""
    records = read_metrics(metrics_path)
    fig = plt.figure(figsize=(7, 4), layout="constrained")
    ax = fig.subplots()
    plotted = False
    for key, style in (("train_loss", dict(linewidth=1.2)),
                       ("val_loss", dict(marker="o", markersize=3, linewidth=1.2))):
        points = [(r["step"], r[key]) for r in records
                  if r.get(key) is not None and r.get("step") is not None]
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, label=key.replace("_", " "), **style)
            plotted = True
    if not plotted:
        raise ValueError(f"{metrics_path}: no record has a step with train_loss or val_loss")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_lr_schedule(max_lr: float, warmup_steps: int, max_steps: int, min_lr: float = 0.0,
                     ax=None) -> Figure:
    """The warmup + cosine learning rate of :func:`tinygpt.optim.warmup_cosine_lr`."""
    if max_steps < 1 or not 0 <= warmup_steps <= max_steps:
        raise ValueError(f"need 0 <= warmup_steps <= max_steps and max_steps >= 1, got "
                         f"warmup_steps={warmup_steps}, max_steps={max_steps}")
    steps = np.arange(max_steps + 1)
    lrs = [warmup_cosine_lr(int(s), max_lr, warmup_steps, max_steps, min_lr) for s in steps]
    if ax is None:
        fig = plt.figure(figsize=(7, 3.5), layout="constrained")
        ax = fig.subplots()
    ax.plot(steps, lrs, linewidth=1.5)
    if warmup_steps:
        ax.axvline(warmup_steps, color="#888", linestyle="--", linewidth=0.8,
                   label=f"end of warmup ({warmup_steps})")
        ax.legend()
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.set_title("linear warmup, then cosine decay")
    ax.grid(alpha=0.3)
    return ax.figure


def plot_rope(rotary_dim: int = 64, max_position: int = 128, theta: float = 10000.0) -> Figure:
    """What RoPE does: the rotation angle of each feature pair, and the score decay.

    Left: cos(position * theta^(-2i/R)) for each pair i: early pairs turn fast, late
    pairs slowly. Right: q . rot(d) k for q = k = all ones, against the distance d
    between query and key: the mean of cos(d * freq) over pairs, which falls off with d.
    """
    if max_position < 2:
        raise ValueError(f"max_position must be at least 2, got {max_position}")
    cos, _ = rope_cos_sin(np.arange(max_position), rotary_dim, theta, dtype=np.float64)
    fig = plt.figure(figsize=(11, 4), layout="constrained")
    left, right = fig.subplots(1, 2)
    image = left.imshow(cos, aspect="auto", cmap="RdBu", vmin=-1, vmax=1,
                        interpolation="nearest")
    left.set_xlabel(f"feature pair i (of {rotary_dim // 2})")
    left.set_ylabel("position")
    left.set_title("cos(position x frequency of pair i)")
    fig.colorbar(image, ax=left)
    right.plot(np.arange(max_position), cos.mean(axis=1))
    right.set_xlabel("distance between query and key")
    right.set_ylabel("relative score")
    right.set_title("q . k of equal vectors falls with distance")
    right.grid(alpha=0.3)
    return fig


__all__ = ["attention_html", "attention_stack", "encode_text", "plot_attention", "plot_loss",
           "plot_lr_schedule", "plot_rope", "plot_tokens", "read_metrics", "token_label",
           "token_labels", "window_outline"]
