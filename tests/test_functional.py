"""tinygpt.functional through autograd: finite differences, torch, and bad input."""

import re

import numpy as np
import pytest

import tinygpt as tg
import tinygpt.functional as F
from tinygpt.gradcheck import gradcheck

rng = np.random.default_rng(0)


def t64(*shape, scale=1.0):
    return tg.tensor(rng.standard_normal(shape) * scale, requires_grad=True)


TARGETS = np.array([1, 0, -100, 4, 2, 3])
W_LN = rng.standard_normal(5)
WEIGHTS = rng.standard_normal((2, 3, 4))

CASES = {
    "softmax": (lambda x: F.softmax(x, -1) * tg.tensor(WEIGHTS), [(2, 3, 4)]),
    "softmax_dim0": (lambda x: F.softmax(x, 0) * tg.tensor(WEIGHTS), [(2, 3, 4)]),
    "log_softmax": (lambda x: F.log_softmax(x, -1) * tg.tensor(WEIGHTS), [(2, 3, 4)]),
    "cross_entropy_ignore": (lambda x: F.cross_entropy(x, TARGETS), [(6, 5)]),
    "cross_entropy_3d": (lambda x: F.cross_entropy(x, TARGETS.reshape(2, 3)), [(2, 3, 5)]),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh"), [(3, 4)]),
    "gelu_exact": (lambda x: F.gelu(x), [(3, 4)]),
    "relu": (lambda x: F.relu(x), [(3, 4)]),
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (5,), w, b) * tg.tensor(W_LN),
                   [(2, 3, 5), (5,), (5,)]),
    "layer_norm_no_affine": (lambda x: F.layer_norm(x, 5) * tg.tensor(W_LN), [(4, 5)]),
    # over the last two dims, as torch allows (flattened into one for the kernels)
    "layer_norm_2d": (lambda x, w, b: F.layer_norm(x, (3, 4), w, b) * tg.tensor(WEIGHTS),
                      [(2, 3, 4), (3, 4), (3, 4)]),
    "linear": (lambda x, w, b: F.linear(x, w, b), [(2, 3, 4), (5, 4), (5,)]),
    "linear_nobias": (lambda x, w: F.linear(x, w), [(3, 4), (2, 4)]),
    "embedding": (lambda w: F.embedding(np.array([[0, 2, 2], [1, 0, 2]]), w), [(3, 4)]),
    "attention_causal": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
                         [(1, 2, 5, 3), (1, 2, 5, 3), (1, 2, 5, 3)]),
    "attention_local": (lambda q, k, v: F.scaled_dot_product_attention(q, k, v, window=2),
                        [(2, 1, 6, 3), (2, 1, 6, 3), (2, 1, 6, 3)]),
    "attention_cache_scale": (
        lambda q, k, v: F.scaled_dot_product_attention(q, k, v, scale=1.0),
        [(1, 2, 2, 3), (1, 2, 5, 3), (1, 2, 5, 3)]),
    "rope_neox": (lambda x: F.rope(x, *_cos_sin(4, 2)), [(1, 2, 4, 6)]),
    "rope_gptj": (lambda x: F.rope(x, *_cos_sin(4, 3), style="gptj"), [(2, 4, 6)]),
}


def _cos_sin(T, half):
    ang = np.arange(T)[:, None] * (10000.0 ** (-np.arange(half) / half))[None, :]
    return np.cos(ang), np.sin(ang)


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name, kernels, monkeypatch):
    monkeypatch.setenv("TINYGPT_KERNELS", kernels)
    if kernels == "numba":
        pytest.importorskip("tinygpt.kernels.cpu")
    fn, shapes = CASES[name]
    assert gradcheck(fn, [t64(*s) for s in shapes])


def test_against_torch():
    torch = pytest.importorskip("torch")
    tF = torch.nn.functional
    x = rng.standard_normal((4, 7)) * 30  # large logits: stability matters
    tx = torch.tensor(x)
    # float64; atol covers entries near 0 (e.g. log p of the max logit, about -1e-7), whose
    # relative error depends on summation order (numba and torch sum in different orders).
    # log p = x - logsumexp(x) cancels: its error is absolute, a few ulps of |x| (up to ~100
    # here, ulp 1.4e-14), whatever the size of the result
    np.testing.assert_allclose(F.softmax(tg.tensor(x)).numpy(), tx.softmax(-1).numpy(),
                               rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(F.log_softmax(tg.tensor(x)).numpy(),
                               tx.log_softmax(-1).numpy(), rtol=1e-12,
                               atol=4 * np.spacing(np.abs(x).max()))
    t = np.array([1, -100, 6, 0])
    np.testing.assert_allclose(F.cross_entropy(tg.tensor(x), t).item(),
                               tF.cross_entropy(tx, torch.tensor(t)).item(), rtol=1e-12)
    np.testing.assert_allclose(F.gelu(tg.tensor(x / 30)).numpy(), tF.gelu(tx / 30).numpy(),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(F.gelu(tg.tensor(x / 30), "tanh").numpy(),
                               tF.gelu(tx / 30, approximate="tanh").numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.layer_norm(tg.tensor(x), 7).numpy(),
                               tF.layer_norm(tx, (7,)).numpy(), rtol=1e-9, atol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    x = tg.tensor(np.array([[1e4, 0.0, -1e4]], dtype=np.float32), requires_grad=True)
    loss = F.cross_entropy(x, np.array([1]))
    assert np.isfinite(loss.item()) and abs(loss.item() - 1e4) < 1
    loss.backward()
    assert np.all(np.isfinite(x.grad))


def test_dropout_train_eval_and_seed():
    x = tg.ones(1000)
    tg.manual_seed(0)
    a = F.dropout(x, 0.3).numpy()
    tg.manual_seed(0)
    b = F.dropout(x, 0.3).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a[a != 0], 1 / 0.7, rtol=1e-6)  # survivors scaled by 1/(1-p)
    assert 0.2 < (a == 0).mean() < 0.4
    assert F.dropout(x, 0.3, training=False) is x


def test_attention_return_weights_rows_sum_to_one_and_respect_window():
    q = tg.randn(1, 1, 6, 4)
    out, w = F.scaled_dot_product_attention(q, q, q, window=3, return_weights=True)
    w = w.numpy()[0, 0]
    np.testing.assert_allclose(w.sum(-1), 1, rtol=1e-5)
    i, j = np.indices(w.shape)
    assert np.all(w[(j > i) | (j <= i - 3)] == 0)


# ---------------------------------------------------------------------- bad input


def test_cross_entropy_shape_error():
    with pytest.raises(ValueError, match=r"logits of shape \(4, 5\) need targets of shape \(4,\)"):
        F.cross_entropy(tg.randn(4, 5), np.zeros(3, dtype=np.int64))


def test_cross_entropy_float_targets():
    with pytest.raises(TypeError, match="targets must be integers"):
        F.cross_entropy(tg.randn(4, 5), np.zeros(4))


def test_cross_entropy_target_out_of_range():
    with pytest.raises(IndexError, match="7"):
        F.cross_entropy(tg.randn(2, 5), np.array([1, 7]))


def test_linear_shape_error():
    with pytest.raises(ValueError, match=r"input of shape \(2, 3\) does not match weight"):
        F.linear(tg.randn(2, 3), tg.randn(4, 5))


def test_layer_norm_shape_error():
    with pytest.raises(ValueError, match="normalized_shape"):
        F.layer_norm(tg.randn(2, 3), 4)
    for bad in [(3, 2), (), (1, 2, 3)]:  # not the trailing dims, none, more dims than x has
        with pytest.raises(ValueError, match=re.escape(f"normalized_shape {bad} must equal")):
            F.layer_norm(tg.randn(2, 3), bad)
    with pytest.raises(ValueError, match=r"weight of shape \(6,\) does not match"):
        F.layer_norm(tg.randn(2, 3), (2, 3), tg.ones(6))


def test_layer_norm_over_several_dims_matches_torch():
    torch = pytest.importorskip("torch")
    x, w, b, g = (rng.standard_normal(s).astype(np.float32)
                  for s in [(2, 5, 3, 4), (3, 4), (3, 4), (2, 5, 3, 4)])
    ln = tg.nn.LayerNorm((3, 4))
    assert ln.normalized_shape == (3, 4) and ln.weight.shape == (3, 4)
    ln.weight.data[...], ln.bias.data[...] = w, b
    X = tg.tensor(x, requires_grad=True)
    (ln(X) * tg.tensor(g)).sum().backward()
    tln = torch.nn.LayerNorm((3, 4))
    with torch.no_grad():
        tln.weight.copy_(torch.tensor(w))
        tln.bias.copy_(torch.tensor(b))
    tx = torch.tensor(x, requires_grad=True)
    ty = tln(tx)
    (ty * torch.tensor(g)).sum().backward()
    # float32, 12 features per row: a few ulps of the outputs (~4)
    np.testing.assert_allclose(ln(X).numpy(), ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    for ours, theirs in [(X.grad, tx.grad), (ln.weight.grad, tln.weight.grad),
                         (ln.bias.grad, tln.bias.grad)]:
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-4, atol=1e-5)


def test_embedding_out_of_range():
    with pytest.raises(IndexError, match="id 9 is out of range for a table of 3 rows"):
        F.embedding(np.array([0, 9]), tg.randn(3, 2))


def test_attention_bad_shapes():
    with pytest.raises(ValueError, match=r"q must be \(B, H, T, D\)"):
        F.scaled_dot_product_attention(tg.randn(2, 3, 4), tg.randn(2, 3, 4), tg.randn(2, 3, 4))
    with pytest.raises(ValueError, match="window"):
        x = tg.randn(1, 1, 2, 2)
        F.scaled_dot_product_attention(x, x, x, causal=False, window=2)


def test_gelu_bad_mode():
    with pytest.raises(ValueError, match="approximate"):
        F.gelu(tg.randn(2), approximate="fast")


def test_integer_and_mixed_dtypes_are_refused_not_cast():
    logits = tg.tensor([[1, 2, 3]])
    with pytest.raises(TypeError, match="logits must be floating point"):
        F.cross_entropy(logits, [0])
    with pytest.raises(TypeError, match="x must be floating point"):
        F.rope(tg.tensor(np.ones((1, 2, 4), np.int64)), np.ones((2, 2)), np.ones((2, 2)))
    q = tg.tensor(np.ones((1, 1, 3, 2), np.float32))
    k = tg.tensor(np.ones((1, 1, 3, 2), np.float64))
    with pytest.raises(TypeError, match="one floating dtype"):
        F.scaled_dot_product_attention(q, k, k)


def test_attention_window_and_mask_are_checked():
    q = tg.tensor(np.ones((2, 1, 3, 2), np.float32))
    with pytest.raises(ValueError, match="window must be a positive number of keys, got 2.5"):
        F.scaled_dot_product_attention(q, q, q, window=2.5)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 4\) does not broadcast"):
        F.scaled_dot_product_attention(q, q, q, mask=np.ones((3, 4), dtype=bool))
    out = F.scaled_dot_product_attention(q, q, q, mask=np.ones((2, 1, 1, 3), dtype=bool))
    assert out.shape == (2, 1, 3, 2)


def test_out_of_range_softmax_dim_is_a_clear_error_and_0d_input_works_as_torch():
    t = tg.tensor(np.ones((2, 3)))
    with pytest.raises(IndexError, match="softmax: dim 5 is out of range"):
        F.softmax(t, 5)
    with pytest.raises(IndexError, match="log_softmax: dim 1 is out of range for a 0-d"):
        F.log_softmax(tg.tensor(1.0), 1)
    assert F.softmax(t, -2).shape == (2, 3)
    x = tg.tensor(2.5, requires_grad=True)  # one element: probability 1, log-probability 0
    y = F.softmax(x, 0)
    assert y.shape == () and y.item() == 1.0 and F.log_softmax(x, -1).item() == 0.0
    y.backward()
    assert x.grad.shape == () and x.grad == 0


def test_attention_causal_must_be_a_bool_not_torchs_attn_mask():
    q = tg.randn(1, 1, 3, 2)
    with pytest.raises(TypeError, match=r"causal must be True or False, got ndarray \(a "
                                        r"padding mask goes in mask=\)"):
        F.scaled_dot_product_attention(q, q, q, np.ones((1, 1, 3, 3), dtype=bool))


def test_linear_promotes_int_input_and_names_bad_weight_shapes():
    w = tg.tensor(np.ones((2, 3), dtype=np.float32), requires_grad=True)
    out = F.linear(tg.tensor([[1, 2, 3]]), w)  # int64 input: float32, as x @ w.T
    assert out.dtype == np.float32 and out.numpy().tolist() == [[6.0, 6.0]]
    out.sum().backward()
    assert w.grad.dtype == np.float32
    with pytest.raises(ValueError, match=r"got shapes \(2, 3\) and \(3,\)"):
        F.linear(tg.randn(2, 3), tg.randn(3))


@pytest.mark.parametrize("kernels", ["numpy", "numba"])
def test_layer_norm_refuses_a_weight_or_bias_of_another_shape(kernels, monkeypatch):
    """The numba kernels index weight and bias by feature: a wrong shape read outside the
    array (garbage in the output) before it was checked."""
    monkeypatch.setenv("TINYGPT_KERNELS", kernels)
    x = tg.tensor(np.array([[0.0, 1.0, 2.0]], np.float32))
    for shape in [(2,), (4,), (1,), (3, 1)]:
        p = tg.tensor(np.ones(shape, np.float32))
        with pytest.raises(ValueError, match=rf"weight of shape {re.escape(str(shape))}"):
            F.layer_norm(x, 3, p)
        with pytest.raises(ValueError, match="bias of shape"):
            F.layer_norm(x, 3, None, p)
