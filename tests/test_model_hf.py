"""The GPT family against Hugging Face transformers: same checkpoint in, same numbers out.

Each case builds a tiny random HF model offline, saves it with ``save_pretrained``
(config.json + model.safetensors) and loads it with ``GPT.from_pretrained``. Weights are
redrawn with std 0.3 (HF's init is 0.02, which makes every logit nearly equal and a
comparison toothless), and layer norms/biases are perturbed so none is trivially 1 or 0.
"""

import copy
import json
import random
import warnings
import zlib

import numpy as np
import pytest

from tinygpt.model import GPT

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

V = 97


def _hf_configs():
    T = transformers
    common = dict(bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return {
        "gpt2": T.GPT2Config(vocab_size=V, n_positions=40, n_embd=32, n_layer=2, n_head=4,
                             **common),
        # Stanford CRFM's GPT-2 runs: layer i's scores also divided by i + 1
        "gpt2_inverse_layer_idx": T.GPT2Config(
            vocab_size=V, n_positions=40, n_embd=32, n_layer=3, n_head=4,
            scale_attn_by_inverse_layer_idx=True, **common),
        "gpt_neo": T.GPTNeoConfig(vocab_size=V, max_position_embeddings=40, hidden_size=32,
                                  num_layers=3, num_heads=4, window_size=4,
                                  attention_types=[[["global", "local", "local"], 1]], **common),
        "gpt_neox_parallel": T.GPTNeoXConfig(
            vocab_size=V, max_position_embeddings=40, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64, rotary_pct=0.5,
            use_parallel_residual=True, **common),
        "gpt_neox_serial": T.GPTNeoXConfig(
            vocab_size=V, max_position_embeddings=40, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, intermediate_size=64, rotary_pct=0.25, rotary_emb_base=500,
            use_parallel_residual=False, hidden_act="gelu_fast", **common),
        "gptj": T.GPTJConfig(vocab_size=V, n_positions=40, n_embd=32, n_layer=2, n_head=4,
                             rotary_dim=4, **common),
        # tied embeddings: the head shares wte's weight but keeps its own bias
        "gptj_tied": T.GPTJConfig(vocab_size=V, n_positions=40, n_embd=32, n_layer=2,
                                  n_head=4, rotary_dim=8, tie_word_embeddings=True, **common),
        "opt_post_ln_proj": T.OPTConfig(
            vocab_size=V, max_position_embeddings=40, hidden_size=32, num_hidden_layers=2,
            num_attention_heads=4, ffn_dim=64, word_embed_proj_dim=16,
            do_layer_norm_before=False, **common),
        "opt_pre_ln": T.OPTConfig(vocab_size=V, max_position_embeddings=40, hidden_size=32,
                                  num_hidden_layers=2, num_attention_heads=4, ffn_dim=48,
                                  **common),
    }


FAMILIES = sorted(_hf_configs())


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (HF model in eval mode, local checkpoint directory)."""
    out = {}
    for name, cfg in _hf_configs().items():
        # crc32, not hash(): str hashes change per process, which drew new weights each run
        torch.manual_seed(zlib.crc32(name.encode()) % 1000)
        model = transformers.AutoModelForCausalLM.from_config(
            cfg, attn_implementation="eager").eval()
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n.endswith("bias") or "norm" in n or ".ln" in n:
                    p.add_(torch.randn_like(p) * 0.2)
                else:
                    p.normal_(0.0, 0.3)
        path = tmp_path_factory.mktemp(name)
        model.save_pretrained(path)
        out[name] = (model, path)
    return out


def _ids(B=2, T=12, seed=0):
    return np.random.default_rng(seed).integers(1, V, size=(B, T))


@pytest.mark.parametrize("name", FAMILIES)
def test_logits_loss_and_attentions_match_hf(name, checkpoints):
    hf, path = checkpoints[name]
    ours = GPT.from_pretrained(path)
    ids = _ids()
    with torch.no_grad():
        ref = hf(torch.tensor(ids), labels=torch.tensor(ids), output_attentions=True)
    out = ours(ids, labels=ids, output_attentions=True)
    assert np.abs(ref.logits.numpy()).max() > 1.0  # the comparison has teeth
    np.testing.assert_allclose(out.logits.numpy(), ref.logits.numpy(), atol=1e-4, rtol=1e-4)
    assert out.loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)
    # nanoGPT-style targets give the same loss as HF labels
    targets = np.concatenate([ids[:, 1:], np.full((2, 1), -100)], axis=1)
    assert ours(ids, targets=targets).loss.item() == pytest.approx(ref.loss.item(), rel=1e-5)
    assert len(out.attentions) == len(ref.attentions)
    # How far can two correct float32 implementations drift apart? As far as HF's own
    # float32 is from its float64 run. For GPT-Neo (no 1/sqrt(d) on the scores) that
    # measured up to 1.4e-5 over 30 seeds, so a fixed 1e-5 failed on some CPUs.
    with torch.no_grad():
        ref64 = copy.deepcopy(hf).double()(torch.tensor(ids), output_attentions=True)
    hf_drift = max(float((b - c).abs().max()) for b, c in zip(ref.attentions, ref64.attentions))
    for a, b in zip(out.attentions, ref.attentions):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=max(1e-5, 2 * hf_drift))


def test_float64_gpt2_equals_hf_to_rounding(checkpoints):
    """In float64 the two implementations agree to ~1e-15: same math, not just close.

    Only GPT-2: HF's GPT-Neo/J attention, rotary tables and OPT's softmax run in float32
    even in a float64 model, so there float64 cannot be tighter than float32."""
    hf, path = checkpoints["gpt2"]
    ours = GPT.from_pretrained(path)
    for p in ours.parameters():
        p.data = p.data.astype(np.float64)
    ids = _ids()
    with torch.no_grad():
        ref = copy.deepcopy(hf).double()(torch.tensor(ids), output_attentions=True)
    out = ours(ids, output_attentions=True)
    assert out.logits.dtype == np.float64
    np.testing.assert_allclose(out.logits.numpy(), ref.logits.numpy(), atol=1e-11, rtol=0)
    for a, b in zip(out.attentions, ref.attentions):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", FAMILIES)
def test_greedy_generation_matches_hf_generate(name, checkpoints):
    hf, path = checkpoints[name]
    ours = GPT.from_pretrained(path)
    ids = _ids(B=1, T=5, seed=1)
    with torch.no_grad():
        ref = hf.generate(torch.tensor(ids), max_new_tokens=20, do_sample=False,
                          eos_token_id=None, pad_token_id=0)
    got = ours.generate(ids, max_new_tokens=20, do_sample=False)
    np.testing.assert_array_equal(got, ref.numpy())


@pytest.mark.parametrize("name", FAMILIES)
def test_cached_decoding_equals_full_forward(name, checkpoints):
    ours = GPT.from_pretrained(checkpoints[name][1])
    ids = _ids(B=2, T=14, seed=2)
    full = ours(ids).logits.numpy()
    out = ours(ids[:, :6], cache=True)
    steps = [out.logits.numpy()]
    for t in range(6, 14):
        out = ours(ids[:, t:t + 1], cache=out.cache)
        steps.append(out.logits.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, atol=2e-5, rtol=1e-5)


def test_cached_attention_maps_span_every_position_like_hf(checkpoints):
    """A local layer's cache keeps only its window of keys, but its attention maps still
    cover every position so far (zeros outside the window), as the global layers' and
    transformers' do."""
    hf, path = checkpoints["gpt_neo"]  # window 4: the cache of its local layers is trimmed
    ours = GPT.from_pretrained(path)
    ids = _ids(B=2, T=10, seed=6)
    with torch.no_grad():
        past = hf(torch.tensor(ids[:, :7]), use_cache=True).past_key_values
        ref = hf(torch.tensor(ids[:, 7:]), past_key_values=past, output_attentions=True)
    out = ours(ids[:, 7:], cache=ours(ids[:, :7], cache=True).cache, output_attentions=True)
    assert [tuple(a.shape) for a in out.attentions] == [(2, 4, 3, 10)] * 3
    for a, b in zip(out.attentions, ref.attentions):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "opt_pre_ln", "gpt_neox_parallel"])
def test_a_tied_config_with_a_different_stored_head_loads_it_untied(name, tmp_path):
    """config.json says tied (or omits the key, whose default is tied for GPT-2, GPT-Neo and
    OPT), yet the file stores a head unlike the embeddings: transformers keeps the stored
    head, and so must we (tying would silently drop it), with a warning. A stored head equal
    to the embeddings is tied quietly."""
    cfg = _hf_configs()[name]
    cfg.tie_word_embeddings = False
    torch.manual_seed(3)
    hf = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.3)
    ids = _ids(seed=7)

    def saved_as_tied(model, d):
        model.save_pretrained(d)
        c = json.loads((d / "config.json").read_text())
        c["tie_word_embeddings"] = True
        (d / "config.json").write_text(json.dumps(c))
        return d

    with torch.no_grad():
        ref = hf(torch.tensor(ids)).logits.numpy()  # the untied model's own logits
    with pytest.warns(UserWarning, match="stores a different"):
        ours = GPT.from_pretrained(saved_as_tied(hf, tmp_path / "different"))
    assert not ours.config.tie_word_embeddings
    np.testing.assert_allclose(ours(ids).logits.numpy(), ref, atol=1e-4, rtol=1e-4)

    with torch.no_grad():  # the same head as the embeddings: tied, and no warning
        hf.get_output_embeddings().weight.copy_(hf.get_input_embeddings().weight)
        ref = hf(torch.tensor(ids)).logits.numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ours = GPT.from_pretrained(saved_as_tied(hf, tmp_path / "same"))
    assert ours.config.tie_word_embeddings
    np.testing.assert_allclose(ours(ids).logits.numpy(), ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", FAMILIES)
def test_left_padded_batch_equals_unpadded_runs(name, checkpoints):
    ours = GPT.from_pretrained(checkpoints[name][1])
    a, b = _ids(B=1, T=10, seed=3), _ids(B=1, T=6, seed=4)
    batch = np.concatenate([a, np.concatenate([np.zeros((1, 4), int), b], axis=1)])
    mask = np.array([[1] * 10, [0] * 4 + [1] * 6])
    out = ours(batch, attention_mask=mask).logits.numpy()
    np.testing.assert_allclose(out[0], ours(a).logits.numpy()[0], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(out[1, 4:], ours(b).logits.numpy()[0], atol=2e-5, rtol=1e-5)
    # and generation from the padded batch continues each row as it would alone
    gen = ours.generate(batch, 5, do_sample=False, attention_mask=mask)
    np.testing.assert_array_equal(gen[1, 10:], ours.generate(b, 5, do_sample=False)[0, 6:])


@pytest.mark.parametrize("name", ["gpt2", "opt_pre_ln"])
def test_padded_generation_with_penalty_eos_and_pad_matches_hf_generate(name, checkpoints):
    # transformers 5 leaves left padding out of the repetition penalty, fills finished rows
    # with pad_token_id and takes a list of eos ids: a padded batch must give its tokens
    hf, path = checkpoints[name]
    ours = GPT.from_pretrained(path)
    a, b = _ids(B=1, T=8, seed=11), _ids(B=1, T=5, seed=12)
    # padded with the token the row would choose next: penalising the padding changes it
    pad = int(ours.generate(b, 1, do_sample=False, repetition_penalty=1.5)[0, -1])
    batch = np.concatenate([a, np.concatenate([np.full((1, 3), pad), b], axis=1)])
    mask = np.array([[1] * 8, [0] * 3 + [1] * 5])
    free = ours.generate(batch, 12, do_sample=False, attention_mask=mask,
                         repetition_penalty=1.5)
    eos = [int(free[0, 10]), int(free[1, 9])]  # tokens the rows produce: both rows stop
    with torch.no_grad():
        ref = hf.generate(torch.tensor(batch), attention_mask=torch.tensor(mask),
                          max_new_tokens=12, do_sample=False, repetition_penalty=1.5,
                          eos_token_id=eos, pad_token_id=3).numpy()
    got = ours.generate(batch, 12, do_sample=False, attention_mask=mask,
                        repetition_penalty=1.5, eos_token_id=eos, pad_token_id=3)
    np.testing.assert_array_equal(got, ref)
    assert (got[:, 8:] == 3).any()  # a row finished early and was padded


@pytest.mark.parametrize("name", ["gpt2", "gpt_neox_serial", "gptj"])
def test_parameter_gradients_match_torch(name, checkpoints):
    hf, path = checkpoints[name]
    ours = GPT.from_pretrained(path)
    ids = _ids(B=2, T=10, seed=5)
    hf.zero_grad()
    hf(torch.tensor(ids), labels=torch.tensor(ids)).loss.backward()
    ours(ids, labels=ids).loss.backward()
    from tinygpt.io.hf import state_dict_to_hf

    # map our gradients to HF names with the same code that maps weights
    grads = {n: p.grad for n, p in ours.named_parameters()}
    ours_grads = state_dict_to_hf(grads, ours.config, name.split("_serial")[0])
    hf_grads = {n: p.grad.numpy() for n, p in hf.named_parameters() if p.grad is not None}
    # transformers 5 names NeoX's head lm_head in memory but embed_out in its files
    if "embed_out.weight" in ours_grads:
        hf_grads["embed_out.weight"] = hf_grads.pop("lm_head.weight")
    assert set(ours_grads) <= set(hf_grads)
    for n, g in ours_grads.items():
        ref = hf_grads[n]
        scale = np.abs(ref).max() + 1e-12
        assert np.abs(g - ref).max() / scale < 1e-4, n


@pytest.mark.parametrize("name", FAMILIES)
def test_save_pretrained_loads_back_in_transformers(name, checkpoints, tmp_path):
    hf, path = checkpoints[name]
    ours = GPT.from_pretrained(path)
    ours.save_pretrained(tmp_path)
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = _ids(seed=6)
    with torch.no_grad():
        ref = back(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours(ids).logits.numpy(), ref, atol=1e-4, rtol=1e-4)
    again = GPT.from_pretrained(tmp_path)
    np.testing.assert_array_equal(again(ids).logits.numpy(), ours(ids).logits.numpy())


@pytest.mark.parametrize("variant", [dict(activation_function="relu"),
                                     dict(scale_attn_weights=False)])
def test_save_pretrained_keeps_the_family_it_was_loaded_as(variant, tmp_path):
    """A GPT-2 with relu or unscaled scores has OPT's or GPT-Neo's look, but only GPT-2
    reproduces it (OPT's positions are offset, GPT-Neo has no q/k/v bias): the saved
    config must stay gpt2 and keep the token ids, so transformers gives the same logits."""
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=40, n_embd=32, n_layer=2,
                                  n_head=4, bos_token_id=3, eos_token_id=4, pad_token_id=5,
                                  **variant)
    _round_trip(_random_hf(cfg, tmp_path), tmp_path, seed=7)
    saved = json.loads((tmp_path / "ours" / "config.json").read_text())
    assert saved["model_type"] == "gpt2"
    assert (saved["bos_token_id"], saved["eos_token_id"], saved["pad_token_id"]) == (3, 4, 5)


def _round_trip(hf, tmp_path, seed: int) -> None:
    """hf saved in tmp_path/hf -> tinygpt -> tmp_path/ours -> transformers: the same logits."""
    ours = GPT.from_pretrained(tmp_path / "hf")
    ours.save_pretrained(tmp_path / "ours")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    ids = _ids(seed=seed)
    with torch.no_grad():
        want = hf(torch.tensor(ids)).logits.numpy()
        np.testing.assert_allclose(back(torch.tensor(ids)).logits.numpy(), want, atol=1e-4)
    np.testing.assert_allclose(ours(ids).logits.numpy(), want, atol=1e-4, rtol=1e-4)


def _random_hf(cfg, tmp_path, name="hf"):
    torch.manual_seed(0)
    hf = transformers.AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.normal_(0.0, 0.3)
    hf.save_pretrained(tmp_path / name)
    return hf


def test_hf_fields_edited_after_tinygpt_saved_win_over_the_stale_entry(tmp_path):
    """transformers keeps our "tinygpt" entry when it saves a config again: a change made
    on its side (here layer_norm_epsilon, and a resized vocabulary) must not be ignored."""
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=2,
                                  n_head=4)
    _random_hf(cfg, tmp_path)
    GPT.from_pretrained(tmp_path / "hf").save_pretrained(tmp_path / "ours")
    back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ours").eval()
    back.config.layer_norm_epsilon = 0.5
    back.resize_token_embeddings(V + 3)
    back.save_pretrained(tmp_path / "edited")
    assert "tinygpt" in json.loads((tmp_path / "edited" / "config.json").read_text())
    with pytest.warns(UserWarning, match="Hugging Face fields were changed"):
        ours = GPT.from_pretrained(tmp_path / "edited")
    assert ours.config.layer_norm_eps == 0.5 and ours.config.vocab_size == V + 3
    ids = _ids(seed=8)
    with torch.no_grad():
        want = transformers.AutoModelForCausalLM.from_pretrained(
            tmp_path / "edited").eval()(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(ours(ids).logits.numpy(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("hidden, pct", [(44, 0.7), (49, 0.1), (47, 0.13)])
def test_neox_rotary_widths_that_round_badly_save_and_reload(hidden, pct, tmp_path):
    """int(head_dim * R / head_dim) can be R - 1: the saved factor must read back as R,
    in tinygpt and in transformers."""
    cfg = transformers.GPTNeoXConfig(vocab_size=V, max_position_embeddings=32,
                                     hidden_size=hidden, num_hidden_layers=2,
                                     num_attention_heads=1, intermediate_size=64,
                                     rotary_pct=pct)
    _round_trip(_random_hf(cfg, tmp_path), tmp_path, seed=9)


@pytest.mark.parametrize("act", ["gelu_python", "gelu_python_tanh", "gelu_accurate"])
def test_python_spellings_of_gelu_load(act, tmp_path):
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=32, n_embd=32, n_layer=2,
                                  n_head=4, activation_function=act)
    hf = _random_hf(cfg, tmp_path)
    ids = _ids(seed=10)
    with torch.no_grad():
        want = hf(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(GPT.from_pretrained(tmp_path / "hf")(ids).logits.numpy(), want,
                               atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rope", [{"type": "linear", "factor": 4.0},
                                  {"rope_type": "dynamic", "factor": 2.0}, "linear"])
def test_neox_scaled_rope_in_either_spelling_is_refused(rope):
    from tinygpt.io.hf import CheckpointError, config_from_hf

    hf = dict(model_type="gpt_neox", vocab_size=V, hidden_size=32, num_hidden_layers=2,
              num_attention_heads=4, intermediate_size=64, rope_scaling=rope)
    with pytest.raises(CheckpointError, match="rope"):
        config_from_hf(hf)


def test_preset_parameter_counts_equal_transformers():
    """Count-only path vs transformers' own model on the meta device (no memory used)."""
    T = transformers
    hf_cfgs = {
        "gpt2": T.GPT2Config(),
        "gpt2-xl": T.GPT2Config(n_embd=1600, n_layer=48, n_head=25),
        "gpt-neo-125M": T.GPTNeoConfig(hidden_size=768, num_layers=12, num_heads=12,
                                       attention_types=[[["global", "local"], 6]]),
        "gpt-neo-2.7B": T.GPTNeoConfig(hidden_size=2560, num_layers=32, num_heads=20,
                                       attention_types=[[["global", "local"], 16]]),
        "pythia-160m": T.GPTNeoXConfig(vocab_size=50304, hidden_size=768,
                                       num_hidden_layers=12, num_attention_heads=12,
                                       intermediate_size=3072),
        "gpt-j-6B": T.GPTJConfig(),
        "opt-125m": T.OPTConfig(),
        "opt-350m": T.OPTConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                ffn_dim=4096, word_embed_proj_dim=512,
                                do_layer_norm_before=False),
    }
    for name, cfg in hf_cfgs.items():
        with torch.device("meta"):
            m = T.AutoModelForCausalLM.from_config(cfg)
        expected = sum(p.numel() for p in m.parameters())
        assert GPT.count_parameters(_preset(name)) == expected, name


def _preset(name):
    from tinygpt.model import GPTConfig

    return GPTConfig.from_preset(name)


def test_published_parameter_counts():
    published = {"gpt2": 124_439_808, "gpt2-medium": 354_823_168, "gpt2-large": 774_030_080,
                 "gpt2-xl": 1_557_611_200, "gpt-neo-125M": 125_198_592,
                 "gpt-neo-1.3B": 1_315_575_808, "gpt-neo-2.7B": 2_651_307_520,
                 "pythia-160m": 162_322_944, "gpt-j-6B": 6_050_882_784,
                 "opt-125m": 125_239_296, "opt-350m": 331_196_416}
    for name, n in published.items():
        assert GPT.count_parameters(_preset(name)) == n, name


# ---------------------------------------------------------------------- sampling vs HF


def test_sampling_filters_match_hf_logits_processors():
    from transformers.generation.logits_process import (
        RepetitionPenaltyLogitsProcessor,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    from tinygpt.model import apply_repetition_penalty, top_k_filter, top_p_filter

    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 50)) * 3
    seen = rng.integers(0, 50, size=(3, 7))
    t_logits, t_seen = torch.tensor(logits), torch.tensor(seen)
    ours = apply_repetition_penalty(logits, seen, 1.3)
    ref = RepetitionPenaltyLogitsProcessor(1.3)(t_seen, t_logits.clone()).numpy()
    np.testing.assert_allclose(ours, ref)
    ours = top_k_filter(logits / 0.7, 5)
    ref = TopKLogitsWarper(5)(t_seen, TemperatureLogitsWarper(0.7)(t_seen, t_logits.clone()))
    np.testing.assert_allclose(ours, ref.numpy())
    for p in (0.05, 0.5, 0.9, 0.999):
        ours = top_p_filter(logits, p)
        ref = TopPLogitsWarper(p)(t_seen, t_logits.clone()).numpy()
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))
    # ties at the cut: HF keeps the later of equal logits (it sorts ascending, drops the front)
    ties = rng.integers(-2, 3, size=(200, 6)).astype(np.float64)
    ties[rng.random(ties.shape) < 0.1] = -np.inf
    for p in (0.3, 0.6, 0.9):
        ours = top_p_filter(ties, p)
        ref = TopPLogitsWarper(p)(torch.zeros((200, 1), dtype=torch.long),
                                  torch.tensor(ties)).numpy()
        np.testing.assert_array_equal(np.isinf(ours), np.isinf(ref))


def test_config_json_carries_hf_fields(checkpoints, tmp_path):
    ours = GPT.from_pretrained(checkpoints["gpt_neo"][1])
    ours.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["model_type"] == "gpt_neo" and cfg["window_size"] == 4
    assert cfg["tinygpt"]["attention_layers"] == ["global", "local", "local"]


def _random_config(family: str, r: random.Random):
    """A random tiny config of ``family`` over the options tinygpt supports."""
    T = transformers
    H = r.randint(1, 4)
    D = r.choice([4, 6, 8, 12, 16])
    common = dict(vocab_size=r.randint(5, 120), bos_token_id=0, eos_token_id=0,
                  pad_token_id=0, tie_word_embeddings=r.random() < 0.5)
    L = r.randint(1, 3)
    act = r.choice(["gelu", "gelu_new", "relu", "gelu_fast", "gelu_pytorch_tanh"])
    eps = r.choice([1e-5, 1e-3, 0.05])
    n_inner = r.choice([None, r.randint(4, 64)])
    if family == "gpt2":
        return T.GPT2Config(n_positions=r.randint(8, 40), n_embd=H * D, n_layer=L, n_head=H,
                            n_inner=n_inner, activation_function=act, layer_norm_epsilon=eps,
                            scale_attn_weights=r.random() < 0.7,
                            scale_attn_by_inverse_layer_idx=r.random() < 0.4, **common)
    if family == "gpt_neo":
        pattern = [r.choice(["global", "local"]) for _ in range(L)]
        return T.GPTNeoConfig(max_position_embeddings=r.randint(8, 40), hidden_size=H * D,
                              num_layers=L, num_heads=H, attention_types=[[pattern, 1]],
                              window_size=r.choice([1, 3, 7, 256]), intermediate_size=n_inner,
                              activation_function=act, layer_norm_epsilon=eps, **common)
    if family == "gpt_neox":
        pct = r.choice([p for p in (0.25, 0.5, 0.75, 1.0) if int(D * p) % 2 == 0
                        and int(D * p) >= 2])
        return T.GPTNeoXConfig(max_position_embeddings=r.randint(8, 40), hidden_size=H * D,
                               num_hidden_layers=L, num_attention_heads=H,
                               intermediate_size=r.randint(4, 64), hidden_act=act,
                               layer_norm_eps=eps, rotary_pct=pct,
                               rotary_emb_base=r.choice([10000, 500]),
                               use_parallel_residual=r.random() < 0.5,
                               attention_bias=r.random() < 0.7, **common)
    if family == "gptj":
        return T.GPTJConfig(n_positions=r.randint(8, 40), n_embd=H * D, n_layer=L, n_head=H,
                            rotary_dim=r.choice(range(2, D + 1, 2)), n_inner=n_inner,
                            activation_function=act, layer_norm_epsilon=eps, **common)
    before = r.random() < 0.6
    return T.OPTConfig(max_position_embeddings=r.randint(8, 40), hidden_size=H * D,
                       num_hidden_layers=L, num_attention_heads=H, ffn_dim=r.randint(4, 64),
                       word_embed_proj_dim=r.choice([H * D, 8]) if before else H * D,
                       do_layer_norm_before=before, enable_bias=r.random() < 0.8,
                       activation_function=act, **common)


@pytest.mark.parametrize("family", ["gpt2", "gpt_neo", "gpt_neox", "gptj", "opt"])
def test_random_configs_match_transformers(family, tmp_path):
    """Beyond the fixed cases: four random configs a family (a seeded draw over the options
    tinygpt supports), logits and a save_pretrained round trip through transformers."""
    r = random.Random(zlib.crc32(family.encode()))
    for i in range(4):
        cfg = _random_config(family, r)
        hf = _random_hf(cfg, tmp_path, f"hf{i}")
        ours = GPT.from_pretrained(tmp_path / f"hf{i}")
        positions = ours.config.block_size
        ids = np.random.default_rng(i).integers(0, cfg.vocab_size, size=(2, min(12, positions)))
        with torch.no_grad():
            want = hf(torch.tensor(ids)).logits.numpy()
        np.testing.assert_allclose(ours(ids).logits.numpy(), want, atol=2e-4, rtol=2e-4,
                                   err_msg=str(cfg.to_dict()))
        ours.save_pretrained(tmp_path / f"ours{i}")
        back = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / f"ours{i}").eval()
        with torch.no_grad():
            np.testing.assert_allclose(back(torch.tensor(ids)).logits.numpy(), want,
                                       atol=2e-4, rtol=2e-4, err_msg=str(cfg.to_dict()))
