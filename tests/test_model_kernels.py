"""The whole model gives the same loss and gradients with the reference and numba kernels."""

import numpy as np
import pytest

import tinygpt as tg
from tinygpt.model import GPT, GPTConfig

pytest.importorskip("numba")


def _loss_and_grads(monkeypatch, kernels, config, dtype):
    monkeypatch.setenv("TINYGPT_KERNELS", kernels)
    tg.manual_seed(0)
    model = GPT(config)
    for p in model.parameters():
        p.data = p.data.astype(dtype)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, config.vocab_size, size=(3, 21))  # T not a multiple of any block
    out = model(idx, labels=idx)
    out.loss.backward()
    return out.loss.item(), {n: p.grad.copy() for n, p in model.named_parameters()}


CONFIGS = {
    "gpt2_style": GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32,
                            dropout=0.0),
    "local_rope_neox": GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=2, n_embd=32,
                                 attention_layers=["local", "global"], window_size=5,
                                 position_embedding="rope", rotary_pct=0.5,
                                 parallel_residual=True, activation="gelu"),
    "gptj_style": GPTConfig(vocab_size=61, block_size=32, n_layer=2, n_head=4, n_embd=32,
                            position_embedding="rope", rotary_dim=4, rotary_style="gptj",
                            parallel_residual=True, shared_layer_norm=True,
                            tie_word_embeddings=False, lm_head_bias=True),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_loss_and_gradients_agree(name, dtype, monkeypatch):
    ref_loss, ref_grads = _loss_and_grads(monkeypatch, "numpy", CONFIGS[name], dtype)
    loss, grads = _loss_and_grads(monkeypatch, "numba", CONFIGS[name], dtype)
    # float32: kernels sum in different orders, so agreement is to a few ulps of the
    # largest gradient entry; float64 shows the math itself is the same.
    rtol = 1e-5 if dtype == np.float32 else 1e-11
    assert loss == pytest.approx(ref_loss, rel=rtol)
    for n, g in ref_grads.items():
        scale = np.abs(g).max() + 1e-30
        assert np.abs(grads[n] - g).max() / scale < 10 * rtol, n
