# %% [markdown]
# # Lesson 12: a Hugging Face checkpoint, opened and checked
#
# Models are shared as a folder with two files: `config.json` (the architecture, as
# numbers and switches) and `model.safetensors` (every weight, by name). tinygpt reads
# and writes that format itself (`tinygpt/io/`), so a model saved here loads in
# `transformers` and the other way round, for GPT-2, GPT-Neo, GPT-NeoX, GPT-J and OPT.
#
# We save a small model, open both files by hand, load it back with
# `GPT.from_pretrained`, and check every tensor against what the config says it must be.
# A checkpoint is just data: knowing how to check it is how you debug one that will not
# load.

# %%
import importlib.util
import json
import shutil

import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
from tinygpt.io import load_file, read_metadata
from tinygpt.io.hf import CheckpointError, closest_model_type, config_from_hf
from tinygpt.model import GPT, GPTConfig

lesson = setup(12, "loading a Hugging Face-format checkpoint and checking it against its config")

# %% [markdown]
# ## Save a model
#
# `save_pretrained` picks the Hugging Face family closest to the config (here GPT-2) and
# writes its names and layouts.

# %%
tg.manual_seed(0)
config = GPTConfig(vocab_size=96, block_size=64, n_layer=2, n_head=4, n_embd=64)
model = GPT(config)
folder = lesson.out / "tiny-gpt2"
shutil.rmtree(folder, ignore_errors=True)
model.save_pretrained(folder)
print("family:", closest_model_type(config))
for path in sorted(folder.iterdir()):
    print(f"  {path.name:20s} {path.stat().st_size:8,d} bytes")

# %% [markdown]
# ## config.json
#
# The family's own field names (GPT-2 says `n_positions` where we say `block_size`), plus
# a `"tinygpt"` entry with our complete config. `transformers` ignores that entry; tinygpt
# uses it to reload exactly. `config_from_hf` translates the family's fields alone, the way
# a checkpoint made by `transformers` is read.

# %%
hf = json.loads((folder / "config.json").read_text())
print({k: v for k, v in hf.items() if k != "tinygpt"})
from_fields = config_from_hf({k: v for k, v in hf.items() if k != "tinygpt"})
print("the family's fields alone rebuild our config:", from_fields == config)

# %% [markdown]
# ## model.safetensors, byte by byte
#
# The format is: 8 bytes giving the header length N (little-endian), N bytes of JSON
# header, then the raw tensor bytes. The header maps each name to its dtype, shape and
# byte range in the data section. Nothing is executed when reading it, unlike a pickled
# PyTorch `.bin` file.

# %%
raw = (folder / "model.safetensors").read_bytes()
n = int.from_bytes(raw[:8], "little")
header = json.loads(raw[8:8 + n])
meta = header.pop("__metadata__", {})
print(f"header: {n} bytes of JSON; metadata {meta}")
print("read_metadata agrees:", read_metadata(folder / "model.safetensors") == meta)
for name, entry in list(header.items())[:6]:
    shape, span = str(entry["shape"]), entry["data_offsets"]
    print(f"  {name:36s} {entry['dtype']} {shape:10s} bytes {span}")
print(f"  ... {len(header)} tensors in all")

# the bytes of one tensor, decoded by hand, equal what load_file returns
name = "transformer.h.0.ln_1.weight"
start, end = header[name]["data_offsets"]
by_hand = np.frombuffer(raw[8 + n + start:8 + n + end], dtype="<f4")
tensors = load_file(folder / "model.safetensors")
print(f"{name} decoded by hand == load_file:", np.array_equal(by_hand, tensors[name]))

kinds = {"attn": "tab:orange", "mlp": "tab:green", "ln": "tab:purple", "w": "tab:blue"}
spans = [(0, 8, "black"), (8, n, "gray")]  # (start, length, colour): length, header
for name, entry in header.items():
    s, e = entry["data_offsets"]
    kind = next((k for k in kinds if f".{k}" in name), "w")
    spans.append((8 + n + s, e - s, kinds[kind]))

fig, (whole, zoom) = plt.subplots(2, 1, figsize=(12, 3.6))
zoom_end = 8 + n + 12_000
for ax, limit in ((whole, len(raw)), (zoom, zoom_end)):
    for s, length, color in spans:
        ax.broken_barh([(s, length)], (0, 1), color=color, edgecolor="white", linewidth=0.3)
    ax.set_xlim(0, limit)
    ax.set_yticks([])
whole.set_title(f"model.safetensors, {len(raw):,} bytes: length, JSON header, raw tensors")
zoom.set_title(f"the first {zoom_end:,} bytes: the 8-byte length (black), the {n:,}-byte "
               f"header (grey), the first tensors", fontsize=10)
zoom.set_xlabel("byte offset")
handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in kinds.values()]
zoom.legend(handles, ["attention", "MLP", "layer norm", "embeddings"], ncol=4, fontsize=8,
            loc="upper center", bbox_to_anchor=(0.5, -0.5))
fig.tight_layout()
lesson.savefig(fig, "safetensors_layout")

# %% [markdown]
# ## The family's layout is not ours
#
# GPT-2 was written with a `Conv1D` layer that stores weights as (in, out), the transpose
# of `nn.Linear`'s (out, in). `io/hf.py` transposes on the way in and out. (GPT-NeoX
# interleaves q, k, v per head; Neo, J and OPT keep three matrices: each is one visible
# rule in that file.)

# %%
ours = model.transformer.h[0].attn.c_attn.weight.shape
theirs = tensors["transformer.h.0.attn.c_attn.weight"].shape
print(f"c_attn.weight: ours {ours} (out, in), in the file {theirs} (in, out)")
in_file = tensors["transformer.h.0.attn.c_attn.weight"]
print("the file holds the transpose:",
      np.array_equal(in_file.T, model.transformer.h[0].attn.c_attn.weight.numpy()))

# %% [markdown]
# ## Load it back and check it against its config
#
# From the config alone we can say what shape every tensor must have. We load the folder
# with `GPT.from_pretrained` and check shapes, the parameter count and the logits.

# %%
def expected_shapes(c: GPTConfig) -> dict[str, tuple[int, ...]]:
    """Our parameter shapes, derived from the config by hand (GPT-2 layout)."""
    C, V = c.n_embd, c.vocab_size
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (c.block_size, C),
              "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for i in range(c.n_layer):
        p = f"transformer.h.{i}."
        shapes.update({
            p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
            p + "attn.c_attn.weight": (3 * C, C), p + "attn.c_attn.bias": (3 * C,),
            p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
            p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
            p + "mlp.c_fc.weight": (c.mlp_dim, C), p + "mlp.c_fc.bias": (c.mlp_dim,),
            p + "mlp.c_proj.weight": (C, c.mlp_dim), p + "mlp.c_proj.bias": (C,)})
    return shapes


loaded = GPT.from_pretrained(folder)
want = expected_shapes(loaded.config)
got = {name: p.shape for name, p in loaded.named_parameters()}
wrong = {k: (got.get(k), v) for k, v in want.items() if got.get(k) != v}
print(f"{len(want)} tensors expected, {len(got)} loaded, shape mismatches: {wrong or 'none'}")
print("parameter count:", loaded.num_parameters(), "== count from the config:",
      GPT.count_parameters(loaded.config))
ids = np.random.default_rng(0).integers(0, config.vocab_size, (2, 16))
with tg.no_grad():
    same = np.array_equal(model(ids).logits.numpy(), loaded(ids).logits.numpy())
print("loaded model gives identical logits:", same)

# %% [markdown]
# ## A checkpoint that does not match its config
#
# Edit config.json to claim a wider model than the weights hold. Loading stops with an
# error that names the file, the tensor and both shapes.

# %%
broken = lesson.out / "broken"
shutil.rmtree(broken, ignore_errors=True)
shutil.copytree(folder, broken)
bad = {k: v for k, v in hf.items() if k != "tinygpt"}  # read by the family's fields only
bad["n_embd"] = 128
(broken / "config.json").write_text(json.dumps(bad))
try:
    GPT.from_pretrained(broken)
except CheckpointError as err:
    print("CheckpointError:", err)

# %% [markdown]
# ## Other families
#
# The same round trip for a GPT-NeoX-like and an OPT-like model: the file names change,
# the check does not.

# %%
for family, extra in (("gpt_neox", dict(position_embedding="rope", rotary_pct=0.25,
                                        parallel_residual=True, tie_word_embeddings=False)),
                      ("opt", dict(activation="relu", position_offset=2))):
    tg.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=96, block_size=64, n_layer=2, n_head=4, n_embd=64, **extra))
    path = lesson.out / f"tiny-{family}"
    shutil.rmtree(path, ignore_errors=True)
    m.save_pretrained(path)
    names = list(load_file(path / "model.safetensors"))
    back = GPT.from_pretrained(path)
    with tg.no_grad():
        same = np.array_equal(m(ids).logits.numpy(), back(ids).logits.numpy())
    print(f"{family:9s}: {len(names)} tensors, e.g. {names[len(names) // 2]}; "
          f"round trip identical: {same}")

# %% [markdown]
# ## Optional: ask transformers itself
#
# If `transformers` and `torch` happen to be installed (they are not tinygpt dependencies),
# load the GPT-2 folder with `AutoModelForCausalLM` and compare its logits with ours.
# (Skipped with `--quick`: importing torch alone takes several seconds.)

# %%
have_reference = importlib.util.find_spec("transformers") and importlib.util.find_spec("torch")
if have_reference and not lesson.quick:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    transformers.logging.set_verbosity_error()  # our toy vocabulary trips GPT-2's defaults
    transformers.logging.disable_progress_bar()
    reference = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        theirs = reference(torch.tensor(ids)).logits.numpy()
    with tg.no_grad():
        ours = model(ids).logits.numpy()
    print(f"transformers {type(reference).__name__}: max |logit difference| "
          f"{np.abs(theirs - ours).max():.1e}")
elif have_reference:
    print("quick mode: skipping the comparison with transformers")
else:
    print("transformers/torch not installed: skipping the comparison (tinygpt does not need them)")

notice("config.json says what every tensor's shape must be; checking is a few lines",
       "safetensors is a length, a JSON header and raw bytes: readable without any library",
       "family layouts differ (GPT-2 stores transposed weights) and io/hf.py maps them",
       "a mismatch is reported with the file, the tensor and both shapes")
