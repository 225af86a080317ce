"""GPT without references: config validation, cache, sampling, errors, checkpoints files."""

import json
import warnings

import numpy as np
import pytest

import tinygpt as tg
from tinygpt.io.hf import CheckpointError
from tinygpt.model import GPT, GPTConfig, KVCache, expand_attention_types, sample_next


def tiny(**kw):
    base = dict(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16)
    base.update(kw)
    tg.manual_seed(0)
    return GPT(GPTConfig(**base))


# ---------------------------------------------------------------------- config


def test_expand_attention_types_like_gpt_neo():
    assert expand_attention_types([[["global", "local"], 2]]) == ["global", "local"] * 2
    assert expand_attention_types([[["local"], 1], [["global"], 2]]) == ["local", "global",
                                                                          "global"]
    with pytest.raises(ValueError, match="attention_types entries"):
        expand_attention_types([["global", 2, 3]])


@pytest.mark.parametrize("kw, match", [
    (dict(n_embd=30, n_head=4), r"n_embd=30.*divisible by n_head=4"),
    (dict(attention_layers=["global"]), "one entry per layer"),
    (dict(attention_layers=["global", "sparse"]), r"unknown attention type\(s\) \['sparse'\]"),
    (dict(position_embedding="alibi"), "position_embedding='alibi'"),
    (dict(position_embedding="rope", rotary_dim=3), "rotary_dim"),
    (dict(position_embedding="rope", rotary_dim=4, rotary_pct=0.5), "not both"),
    (dict(activation="swish"), "activation='swish'"),
    (dict(vocab_size=0), "vocab_size=0"),
    (dict(dropout=1.0), "dropout"),
    (dict(shared_layer_norm=True), "parallel_residual"),
])
def test_config_errors_name_the_field(kw, match):
    base = dict(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16)
    with pytest.raises(ValueError, match=match):
        GPTConfig(**{**base, **kw})


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match=r"unknown GPTConfig key\(s\) \['n_heads'\]"):
        GPTConfig.from_dict({"n_heads": 4})
    with pytest.raises(ValueError, match="unknown preset 'gpt3'"):
        GPTConfig.from_preset("gpt3")


def test_config_dict_roundtrip():
    c = GPTConfig(vocab_size=50, block_size=32, n_layer=2, n_head=2, n_embd=16,
                  attention_layers=["local", "global"], position_embedding="rope",
                  rotary_pct=0.5)
    assert GPTConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# ---------------------------------------------------------------------- forward


def test_targets_and_labels_give_the_same_loss():
    m = tiny()
    idx = np.random.default_rng(0).integers(0, 50, (2, 10))
    targets = np.concatenate([idx[:, 1:], np.full((2, 1), -100)], axis=1)
    a = m(idx, targets=targets).loss.item()
    b = m(idx, labels=idx).loss.item()
    assert a == pytest.approx(b, rel=1e-6)
    with pytest.raises(ValueError, match="not both"):
        m(idx, targets=targets, labels=idx)


def test_forward_errors():
    m = tiny()
    with pytest.raises(IndexError, match="token id 50 is out of range for vocab_size 50"):
        m(np.array([[1, 50]]))
    with pytest.raises(ValueError, match=r"integer token ids of shape \(B, T\)"):
        m(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="beyond block_size 32"):
        m(np.zeros((1, 33), dtype=np.int64))
    with pytest.raises(ValueError, match=r"attention_mask must have shape"):
        m(np.zeros((1, 4), dtype=np.int64), attention_mask=np.ones((1, 5)))
    with pytest.raises(ValueError, match=r"targets must have shape \(1, 4\)"):
        m(np.zeros((1, 4), dtype=np.int64), targets=np.zeros((1, 3), dtype=np.int64))


def test_rope_model_extends_past_block_size_but_learned_does_not():
    m = tiny(position_embedding="rope")
    assert m(np.zeros((1, 40), dtype=np.int64)).logits.shape == (1, 40, 50)


def test_attention_weights_zero_outside_local_window():
    m = tiny(attention_layers=["global", "local"], window_size=3)
    out = m(np.arange(10)[None, :], output_attentions=True)
    g, loc = out.attentions[0].numpy()[0], out.attentions[1].numpy()[0]
    i, j = np.indices((10, 10))
    assert np.all(g[:, j > i] == 0) and np.all(g[:, j <= i] > 0)
    assert np.all(loc[:, (j > i) | (j <= i - 3)] == 0)
    np.testing.assert_allclose(loc.sum(-1), 1, rtol=1e-5)


def test_local_layer_cache_is_bounded_by_the_window():
    m = tiny(attention_layers=["global", "local"], window_size=4, position_embedding="rope")
    ids = np.random.default_rng(1).integers(0, 50, (1, 30))
    out = m(ids[:, :2], cache=True)
    for t in range(2, 30):
        out = m(ids[:, t:t + 1], cache=out.cache)
    cache = out.cache
    assert cache.layer_length(0) == 30 and cache.layer_length(1) == 4
    assert cache.seen_tokens == 30
    full = m(ids).logits.numpy()[:, -1]
    np.testing.assert_allclose(out.logits.numpy()[:, -1], full, atol=1e-5, rtol=1e-5)


def test_gpt2_init_scales_residual_projections():
    m = tiny(n_layer=8, n_embd=64, n_head=4)
    c_proj = m.transformer.h[0].attn.c_proj.weight.numpy().std()
    c_attn = m.transformer.h[0].attn.c_attn.weight.numpy().std()
    assert c_attn == pytest.approx(0.02, rel=0.1)
    assert c_proj == pytest.approx(0.02 / np.sqrt(16), rel=0.1)


def test_optimizer_groups_exclude_biases_norms_embeddings():
    m = tiny()
    decay, no_decay = m.optimizer_groups(0.1)
    names = {id(p): n for n, p in m.named_parameters()}
    assert all(names[id(p)].endswith("weight") and "ln" not in names[id(p)]
               and "wte" not in names[id(p)] and "wpe" not in names[id(p)]
               for p in decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(m.parameters()))


# ---------------------------------------------------------------------- generation


def test_generate_is_reproducible_with_seed_and_greedy_with_temperature_zero():
    m = tiny()
    prompt = np.array([[1, 2, 3]])
    a = m.generate(prompt, 10, seed=7, top_k=10, top_p=0.9)
    b = m.generate(prompt, 10, seed=7, top_k=10, top_p=0.9)
    np.testing.assert_array_equal(a, b)
    greedy = m.generate(prompt, 10, do_sample=False)
    np.testing.assert_array_equal(m.generate(prompt, 10, temperature=0), greedy)
    # greedy really is the argmax of a full forward at each step
    seq = prompt
    for _ in range(10):
        nxt = m(seq).logits.numpy()[:, -1].argmax(-1)
        seq = np.concatenate([seq, nxt[:, None]], axis=1)
    np.testing.assert_array_equal(seq, greedy)


def test_generate_stops_at_eos_and_pads_finished_rows():
    m = tiny()
    prompt = np.array([[1, 2, 3], [7, 8, 9]])
    greedy = m.generate(prompt, 8, do_sample=False)
    eos = int(greedy[0, 5])  # row 0's third generated token
    out = m.generate(prompt, 8, do_sample=False, eos_token_id=eos)
    first = [list(row[3:]).index(eos) if eos in row[3:] else None for row in greedy]
    stop = max(f if f is not None else 8 for f in first) + 1  # all rows finished
    assert out.shape == (2, 3 + min(stop, 8))
    for row, f in enumerate(first):
        end = 3 + (f + 1 if f is not None else 8)
        np.testing.assert_array_equal(out[row, :end], greedy[row, :min(end, out.shape[1])])
        assert all(t == eos for t in out[row, end:])  # finished rows are padded with eos


def test_stream_yields_the_generate_tokens():
    m = tiny()
    prompt = np.array([[4, 5]])
    streamed = [int(t[0]) for t in m.stream(prompt, 6, seed=3)]
    assert streamed == m.generate(prompt, 6, seed=3)[0, 2:].tolist()


def test_generation_beyond_learned_block_size_slides_the_window():
    m = tiny(block_size=8)
    out = m.generate(np.array([[1, 2, 3]]), 12, do_sample=False)
    assert out.shape == (1, 15)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m.generate(np.arange(10)[None, :] % 50, 1, do_sample=False)
    assert any("longer than block_size" in str(x.message) for x in w)


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=-1), "temperature must be a finite number >= 0"),
    (dict(temperature=float("nan")), "temperature must be a finite number >= 0"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_p=float("nan")), r"top_p must be in \(0, 1\]"),
    (dict(top_k=0), "top_k must be a positive integer"),
    (dict(top_k=True), "top_k must be a positive integer"),
    (dict(repetition_penalty=0), "repetition_penalty must be a finite number > 0"),
    (dict(repetition_penalty=float("nan")), "repetition_penalty must be a finite number > 0"),
    (dict(eos_token_id=999), r"eos_token_id must be a token id in 0\.\."),  # never produced
    (dict(eos_token_id=-1), "eos_token_id must be a token id"),
    (dict(eos_token_id=True), "eos_token_id must be a token id"),
    (dict(eos_token_id=[3, 999]), "eos_token_id must be a token id"),
    (dict(eos_token_id=[]), "eos_token_id is an empty list"),
    (dict(eos_token_id=3, pad_token_id=999), "pad_token_id must be a token id"),
])
def test_generate_bad_arguments(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny().generate(np.array([[1]]), 3, **kw)


def test_forward_refuses_empty_input_and_a_mismatched_cache():
    m = tiny()
    for idx in (np.zeros((0, 3), int), np.zeros((2, 0), int)):
        with pytest.raises(ValueError, match="holds no tokens"):
            m(idx)
    with pytest.raises(ValueError, match="max_new_tokens"):
        m.generate(np.array([[1]]), True)
    cache = KVCache(m.config.n_layer)
    m(np.array([[1, 2], [3, 4]]), cache=cache)
    with pytest.raises(ValueError, match="batch of 1"):
        m(np.array([[5]]), cache=cache)  # the cache holds a batch of 2
    with pytest.raises(ValueError, match="layers"):
        m(np.array([[5]]), cache=KVCache(m.config.n_layer + 1))
    with pytest.raises(TypeError, match="KVCache"):
        m(np.array([[5]]), cache="yes")


def test_sampling_frequencies_follow_the_filtered_distribution():
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]]))
    rng = np.random.default_rng(0)
    draws = [int(sample_next(logits, np.zeros((1, 0), int), 1.0, None, 0.75, 1.0, True, rng)[0])
             for _ in range(4000)]
    freq = np.bincount(draws, minlength=4) / 4000
    # top_p=0.75 keeps {0.5, 0.3}: renormalised 0.625 / 0.375, never the others
    assert freq[2] == freq[3] == 0
    assert freq[0] == pytest.approx(0.625, abs=0.03)


def test_kv_cache_object():
    c = KVCache(2)
    k = np.ones((1, 1, 3, 2))
    full_k, _ = c.update(1, k, k, keep=2)
    assert full_k.shape[2] == 3 and c.layer_length(1) == 2 and c.layer_length(0) == 0
    assert c.nbytes() == 2 * 2 * 2 * 8


# ---------------------------------------------------------------------- files


def test_save_and_load_roundtrip_for_a_tinygpt_only_config(tmp_path):
    m = tiny(attention_layers=["global", "local"], position_embedding="rope", window_size=4)
    with pytest.warns(UserWarning, match="will not match this model exactly"):
        m.save_pretrained(tmp_path)
    back = GPT.from_pretrained(tmp_path)
    assert back.config == m.config
    idx = np.arange(12)[None, :]
    np.testing.assert_array_equal(back(idx).logits.numpy(), m(idx).logits.numpy())


def test_from_pretrained_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not a directory"):
        GPT.from_pretrained(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="no config.json"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").mkdir()  # a folder of that name: not a file to read
    with pytest.raises(CheckpointError, match="no config.json file"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").rmdir()
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(CheckpointError, match="unsupported model_type 'llama'"):
        GPT.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 16,
                                                      "n_head": 2, "n_layer": 1,
                                                      "vocab_size": 10, "n_positions": 8}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"pickle!")
    with pytest.raises(CheckpointError, match="no model.safetensors.*pickles"):
        GPT.from_pretrained(tmp_path)


def test_from_pretrained_names_missing_and_misshaped_tensors(tmp_path):
    from tinygpt.io.safetensors import load_file, save_file

    m = tiny()
    m.save_pretrained(tmp_path)
    weights = dict(load_file(tmp_path / "model.safetensors", mmap=False))
    weights.pop("transformer.h.1.mlp.c_fc.bias")
    weights["transformer.h.0.attn.c_attn.weight"] = np.zeros((3, 3), np.float32)
    weights["transformer.extra.weight"] = np.zeros(2, np.float32)
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"shape \(3, 3\), expected \(48, 16\)"):
        GPT.from_pretrained(tmp_path)
    weights["transformer.h.0.attn.c_attn.weight"] = np.zeros((16, 48), np.float32)
    save_file(weights, tmp_path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing tensors \['transformer.h.1.mlp.c_fc.bias'"
                                              r"\]; unexpected tensors \['transformer.extra"):
        GPT.from_pretrained(tmp_path)


@pytest.mark.parametrize("model_type, name, bad, fragment", [
    ("gpt2", "transformer.h.0.ln_1.weight", np.ones(16, np.int64), "dtype int64, not a float"),
    ("gpt2", "transformer.h.0.ln_1.weight", np.ones(16, bool), "dtype bool, not a float"),
    ("gpt_neox", "gpt_neox.layers.0.attention.query_key_value.weight",
     np.zeros((47, 16), np.float32), r"shape \(47, 16\)"),  # does not even reshape by heads
])
def test_from_pretrained_refuses_non_float_and_unshapeable_tensors(tmp_path, model_type, name,
                                                                    bad, fragment):
    from tinygpt.io.safetensors import load_file, save_file

    kw = dict(position_embedding="rope") if model_type == "gpt_neox" else {}
    tiny(**kw).save_pretrained(tmp_path, model_type=model_type)
    weights = dict(load_file(tmp_path / "model.safetensors", mmap=False))
    assert name in weights
    weights[name] = bad
    save_file(weights, tmp_path / "model.safetensors")
    config = json.loads((tmp_path / "config.json").read_text())
    del config["tinygpt"]  # read as a Hugging Face checkpoint
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=fragment):
        GPT.from_pretrained(tmp_path)


def test_from_pretrained_rejects_a_truncated_safetensors_file(tmp_path):
    from tinygpt.io.safetensors import SafetensorsError

    tiny().save_pretrained(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(SafetensorsError, match="model.safetensors"):
        GPT.from_pretrained(tmp_path)


def test_inverse_layer_idx_scaling_divides_each_layers_scores():
    """GPT-2's scale_attn_by_inverse_layer_idx: layer i's scores are (q.k / sqrt(D)) / (i + 1).
    Checked against the same model whose layer i sees queries scaled by 1 / (i + 1) by hand
    (through its c_attn's q rows and bias), which computes the same scores by another route."""
    from tinygpt.io.hf import config_from_hf, config_to_hf

    hf = {"model_type": "gpt2", "n_embd": 16, "n_head": 2, "n_layer": 3, "vocab_size": 11,
          "n_positions": 8, "scale_attn_by_inverse_layer_idx": True,
          "reorder_and_upcast_attn": True}  # the latter only reorders float16 operations
    c = config_from_hf(hf)
    assert c.scale_attn_by_inverse_layer_idx
    assert config_to_hf(c, "gpt2")["scale_attn_by_inverse_layer_idx"] is True
    tg.manual_seed(0)
    scaled = GPT(c)
    plain = GPT(GPTConfig.from_dict({**c.to_dict(), "scale_attn_by_inverse_layer_idx": False}))
    rng = np.random.default_rng(0)  # weights large enough that attention is not uniform
    scaled.load_state_dict({k: rng.normal(0, 0.5, v.shape).astype(v.dtype)
                            for k, v in scaled.state_dict().items()})
    state = {k: v.copy() for k, v in scaled.state_dict().items()}
    for i in range(3):
        for leaf in ("weight", "bias"):
            state[f"transformer.h.{i}.attn.c_attn.{leaf}"][:16] /= i + 1  # the q rows
    plain.load_state_dict(state)
    idx = np.arange(8)[None, :] % 11
    np.testing.assert_allclose(scaled(idx).logits.numpy(), plain(idx).logits.numpy(),
                               rtol=1e-5, atol=1e-5)
    plain.load_state_dict(scaled.state_dict())  # same weights, no layer scaling: differs
    assert not np.allclose(scaled(idx).logits.numpy(), plain(idx).logits.numpy(), atol=1e-3)


@pytest.mark.parametrize("hf, match", [
    ({"model_type": "gpt2", "add_cross_attention": True}, "add_cross_attention=true"),
    ({"model_type": "gpt_neox", "rope_scaling": {"rope_type": "linear", "factor": 2.0}},
     "rope_type 'linear' is not supported"),
    ({"model_type": "opt", "layer_norm_elementwise_affine": False},
     "layer_norm_elementwise_affine=false"),
])
def test_hf_options_outside_the_architectures_are_refused_by_name(hf, match):
    from tinygpt.io.hf import config_from_hf

    with pytest.raises(CheckpointError, match=match):
        config_from_hf(hf)


def test_numpy_scalars_in_a_config_become_python_values(tmp_path):
    c = GPTConfig(vocab_size=np.int64(10), block_size=8, n_layer=1, n_head=1, n_embd=8,
                  bias=np.bool_(False), rope_theta=np.int64(500), rotary_pct=np.float32(0.5),
                  position_embedding="rope")
    assert type(c.vocab_size) is int and type(c.bias) is bool and c.rotary_pct == 0.5
    with warnings.catch_warnings():  # (gpt_neox has MLP biases: transformers would differ)
        warnings.simplefilter("ignore")
        GPT(c).save_pretrained(tmp_path, model_type="gpt_neox")  # JSON needs Python values
    assert GPT.from_pretrained(tmp_path).config.rope_theta == 500
