"""Autograd engine: every op against finite differences (float64) and against torch."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinygpt as tg
from tinygpt.gradcheck import gradcheck

rng = np.random.default_rng(0)
W423 = rng.standard_normal((4, 2, 3))  # fixed weights used inside op lambdas
W34 = rng.standard_normal((3, 4))


def t64(*shape, positive=False, requires_grad=True):
    a = rng.standard_normal(shape)
    if positive:
        a = np.abs(a) + 0.5
    return tg.tensor(a, requires_grad=requires_grad)


# name -> (function of tensors, input shapes, positive inputs?)
OPS = {
    "add_broadcast": (lambda a, b: a + b, [(3, 4), (4,)], False),
    "add_scalar_left": (lambda a: 2.5 + a, [(3,)], False),
    "sub_broadcast": (lambda a, b: a - b, [(2, 1, 4), (3, 1)], False),
    "rsub": (lambda a: 1.0 - a, [(3, 2)], False),
    "mul_broadcast": (lambda a, b: a * b, [(2, 3, 4), (1, 4)], False),
    "div": (lambda a, b: a / b, [(3, 4), (3, 4)], True),
    "rdiv": (lambda a: 2.0 / a, [(5,)], True),
    "pow_scalar": (lambda a: a**3, [(3, 4)], False),
    "pow_frac": (lambda a: a**0.5, [(3, 4)], True),
    "pow_tensor": (lambda a, b: a**b, [(3, 4), (4,)], True),
    "neg": (lambda a: -a, [(3,)], False),
    "matmul_2d": (lambda a, b: a @ b, [(3, 4), (4, 5)], False),
    "matmul_batched_broadcast": (lambda a, b: a @ b, [(2, 3, 4), (4, 2)], False),
    "matmul_batch_bcast2": (lambda a, b: a @ b, [(2, 1, 3, 4), (3, 4, 2)], False),
    "matmul_vec_right": (lambda a, b: a @ b, [(3, 4), (4,)], False),
    "matmul_vec_left": (lambda a, b: a @ b, [(4,), (4, 2)], False),
    "matmul_dot": (lambda a, b: a @ b, [(4,), (4,)], False),
    "exp": (lambda a: a.exp(), [(3, 4)], False),
    "log": (lambda a: a.log(), [(3, 4)], True),
    "sqrt": (lambda a: a.sqrt(), [(3, 4)], True),
    "tanh": (lambda a: a.tanh(), [(3, 4)], False),
    "sigmoid": (lambda a: a.sigmoid(), [(3, 4)], False),
    "relu": (lambda a: a.relu(), [(3, 4)], False),
    "abs": (lambda a: a.abs(), [(3, 4)], False),
    "sum_all": (lambda a: a.sum(), [(3, 4)], False),
    "sum_axis": (lambda a: a.sum(axis=1), [(2, 3, 4)], False),
    "sum_axes_keep": (lambda a: a.sum(axis=(0, 2), keepdims=True), [(2, 3, 4)], False),
    "mean_axis": (lambda a: a.mean(axis=-1), [(2, 3, 4)], False),
    "mean_dim_torchname": (lambda a: a.mean(dim=0, keepdim=True), [(2, 3)], False),
    "max_axis": (lambda a: a.max(axis=1), [(3, 5)], False),
    "max_all": (lambda a: a.max(), [(3, 5)], False),
    "min_axis_keep": (lambda a: a.min(axis=0, keepdims=True), [(3, 5)], False),
    # torch's max(dim=): (values, indices), the gradient to the index returned
    "max_dim_values": (lambda a: a.max(dim=1).values * 2, [(3, 5)], False),
    "min_dim_keep": (lambda a: a.min(dim=0, keepdim=True)[0] * 2, [(3, 5)], False),
    "amax_dims": (lambda a: a.amax(dim=(0, 2)), [(2, 3, 4)], False),
    "sum_empty_dims": (lambda a: a.sum(dim=()) * 2, [(2, 3)], False),
    "var_axis": (lambda a: a.var(axis=-1), [(3, 5)], False),
    "var_all_biased": (lambda a: a.var(correction=0), [(3, 5)], False),
    "reshape": (lambda a: a.reshape(6, 2) * tg.tensor(np.arange(12.0).reshape(6, 2)),
                [(3, 4)], False),
    "view_minus1": (lambda a: a.view(-1, 3).sum(axis=0), [(2, 6)], False),
    "transpose": (lambda a: a.transpose(0, 2) @ tg.tensor(np.ones((2, 3))), [(2, 3, 4)], False),
    "permute": (lambda a: a.permute(2, 0, 1) * tg.tensor(W423),
                [(2, 3, 4)], False),
    "T": (lambda a: a.T @ a, [(3, 2)], False),
    "getitem_int_slice": (lambda a: a[1, 1:3], [(3, 4)], False),
    "getitem_neg_step": (lambda a: a[::-2, None], [(5, 2)], False),
    "getitem_int_array_repeat": (lambda a: a[np.array([0, 2, 0, 0])], [(3, 4)], False),
    "getitem_bool_mask": (lambda a: a[np.array([True, False, True])], [(3, 4)], False),
    "getitem_tensor_index": (lambda a: a[tg.tensor([[1, 1], [0, 2]])], [(3, 2)], False),
    "getitem_advanced_pair": (lambda a: a[np.array([0, 1, 1]), np.array([2, 0, 2])],
                              [(3, 4)], False),
    "unsqueeze_squeeze": (lambda a: a.unsqueeze(1).squeeze(1) * 2, [(3, 4)], False),
    "squeeze_all": (lambda a: a.squeeze() * 3, [(1, 3, 1)], False),
    "expand": (lambda a: a.expand(3, 4) * tg.tensor(W34),
               [(1, 4)], False),
    "cat": (lambda a, b: tg.cat([a, b, a], dim=1), [(2, 3), (2, 1)], False),
    "stack": (lambda a, b: tg.stack([a, b], dim=1), [(2, 3), (2, 3)], False),
    "split": (lambda a: a.split(2, dim=1)[1] * 3, [(2, 5)], False),
    # torch's defaults: dim 0; a list gives each piece's size
    "split_sizes": (lambda a: tg.cat([p * (i + 1) for i, p in enumerate(a.split([1, 0, 3]))]),
                    [(4, 2)], False),
    "chunk": (lambda a: a.chunk(3)[2] * 3, [(5, 2)], False),
    "masked_fill": (lambda a: a.masked_fill(np.array([[True, False, False]]), -1.5),
                    [(2, 3)], False),
    "where": (lambda a, b: tg.where(np.array([True, False, True]), a, b), [(2, 3), (3,)], False),
    "tril": (lambda a: tg.tril(a), [(2, 3, 3)], False),
    "triu_offset": (lambda a: a.triu(1), [(4, 4)], False),
    "to_float64": (lambda a: a.to(np.float64) * 2, [(3,)], False),
    "softmax_method": (lambda a: a.softmax(-1) * tg.tensor(np.arange(4.0)), [(3, 4)], False),
    "deep_chain": (lambda a: ((a * 2).tanh() + a).sum(axis=0).exp(), [(3, 2)], False),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradcheck_against_finite_differences(name):
    fn, shapes, positive = OPS[name]
    inputs = [t64(*s, positive=positive) for s in shapes]
    assert gradcheck(fn, inputs)


@pytest.mark.parametrize("name", sorted(OPS))
def test_gradients_match_torch(name):
    torch = pytest.importorskip("torch")
    fn, shapes, positive = OPS[name]
    inputs = [t64(*s, positive=positive) for s in shapes]
    out = fn(*inputs)
    upstream = rng.standard_normal(out.shape)
    out.backward(upstream)
    # Run the same lambda on torch tensors through a tiny adapter that maps our names.
    tin = [torch.tensor(x.numpy(), requires_grad=True) for x in inputs]
    tout = _torch_eval(name, tin, torch)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    tout.backward(torch.tensor(upstream))
    for x, tx in zip(inputs, tin):
        np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-9, atol=1e-12)


def _torch_eval(name, t, torch):
    """The torch spelling of each entry in OPS (kept side by side with the tinygpt one)."""
    a = t[0]
    b = t[1] if len(t) > 1 else None
    T = torch.tensor
    spelled = {
        "add_broadcast": lambda: a + b,
        "add_scalar_left": lambda: 2.5 + a,
        "sub_broadcast": lambda: a - b,
        "rsub": lambda: 1.0 - a,
        "mul_broadcast": lambda: a * b,
        "div": lambda: a / b,
        "rdiv": lambda: 2.0 / a,
        "pow_scalar": lambda: a**3,
        "pow_frac": lambda: a**0.5,
        "pow_tensor": lambda: a**b,
        "neg": lambda: -a,
        "matmul_2d": lambda: a @ b,
        "matmul_batched_broadcast": lambda: a @ b,
        "matmul_batch_bcast2": lambda: a @ b,
        "matmul_vec_right": lambda: a @ b,
        "matmul_vec_left": lambda: a @ b,
        "matmul_dot": lambda: a @ b,
        "exp": lambda: a.exp(),
        "log": lambda: a.log(),
        "sqrt": lambda: a.sqrt(),
        "tanh": lambda: a.tanh(),
        "sigmoid": lambda: a.sigmoid(),
        "relu": lambda: a.relu(),
        "abs": lambda: a.abs(),
        "sum_all": lambda: a.sum(),
        "sum_axis": lambda: a.sum(dim=1),
        "sum_axes_keep": lambda: a.sum(dim=(0, 2), keepdim=True),
        "mean_axis": lambda: a.mean(dim=-1),
        "mean_dim_torchname": lambda: a.mean(dim=0, keepdim=True),
        "max_axis": lambda: a.amax(dim=1),
        "max_all": lambda: a.amax(),
        "min_axis_keep": lambda: a.amin(dim=0, keepdim=True),
        "max_dim_values": lambda: a.max(dim=1).values * 2,
        "min_dim_keep": lambda: a.min(dim=0, keepdim=True)[0] * 2,
        "amax_dims": lambda: a.amax(dim=(0, 2)),
        "sum_empty_dims": lambda: a.sum(dim=()) * 2,
        "var_axis": lambda: a.var(dim=-1),
        "var_all_biased": lambda: a.var(correction=0),
        "reshape": lambda: a.reshape(6, 2) * T(np.arange(12.0).reshape(6, 2)),
        "view_minus1": lambda: a.view(-1, 3).sum(dim=0),
        "transpose": lambda: a.transpose(0, 2) @ T(np.ones((2, 3))),
        "permute": lambda: a.permute(2, 0, 1) * T(W423),
        "T": lambda: a.T @ a,
        "getitem_int_slice": lambda: a[1, 1:3],
        "getitem_neg_step": lambda: a.flip(0)[::2, None],
        "getitem_int_array_repeat": lambda: a[T([0, 2, 0, 0])],
        "getitem_bool_mask": lambda: a[T([True, False, True])],
        "getitem_tensor_index": lambda: a[T([[1, 1], [0, 2]])],
        "getitem_advanced_pair": lambda: a[T([0, 1, 1]), T([2, 0, 2])],
        "unsqueeze_squeeze": lambda: a.unsqueeze(1).squeeze(1) * 2,
        "squeeze_all": lambda: a.squeeze() * 3,
        "expand": lambda: a.expand(3, 4) * T(W34),
        "cat": lambda: torch.cat([a, b, a], dim=1),
        "stack": lambda: torch.stack([a, b], dim=1),
        "split": lambda: a.split(2, dim=1)[1] * 3,
        "split_sizes": lambda: torch.cat([p * (i + 1) for i, p in enumerate(a.split([1, 0, 3]))]),
        "chunk": lambda: a.chunk(3)[2] * 3,
        "masked_fill": lambda: a.masked_fill(T([[True, False, False]]), -1.5),
        "where": lambda: torch.where(T([True, False, True]), a, b),
        "tril": lambda: torch.tril(a),
        "triu_offset": lambda: torch.triu(a, 1),
        "to_float64": lambda: a.to(torch.float64) * 2,
        "softmax_method": lambda: a.softmax(-1) * T(np.arange(4.0)),
        "deep_chain": lambda: ((a * 2).tanh() + a).sum(dim=0).exp(),
    }[name]
    return spelled()


def test_max_ties_share_gradient_like_torch_amax():
    x = tg.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_gradient_accumulates_across_backward_calls():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad, [3 + 2, 3 + 4])


def test_reused_node_gets_summed_gradient():
    x = tg.tensor([2.0], requires_grad=True)
    y = x * x
    z = y + y * y  # y used twice
    z.backward(np.ones(1, dtype=np.float32))
    # dz/dx = (1 + 2y) * 2x = (1 + 8) * 4
    np.testing.assert_allclose(x.grad, [36.0])


def test_leaf_grads_do_not_alias():
    a = tg.tensor([1.0, 2.0], requires_grad=True)
    b = tg.tensor([1.0, 2.0], requires_grad=True)
    (a + b).sum().backward()
    a.grad *= 10  # the optimizer and clipping scale grads in place
    np.testing.assert_allclose(b.grad, [1.0, 1.0])


def test_split_chunks_fill_one_gradient_buffer():
    # q, k, v = qkv.split(C): the three slice gradients land in one buffer (SliceGrad)
    rng = np.random.default_rng(0)
    x = tg.tensor(rng.standard_normal((2, 3, 12)), requires_grad=True)
    q, k, v = x.split(4, dim=2)
    w = rng.standard_normal((2, 3, 4))
    ((q * k) + v * v * w).sum().backward()
    xs = x.data
    want = np.concatenate([xs[..., 4:8], xs[..., :4], 2 * xs[..., 8:] * w], axis=2)
    np.testing.assert_allclose(x.grad, want)
    assert x.grad.base is None  # the leaf owns its gradient


def test_max_and_min_with_dim_return_values_and_indices_like_torch():
    x = tg.tensor(np.array([[1.0, 5.0, 5.0], [7.0, 0.0, 3.0]]), requires_grad=True)
    values, indices = x.max(dim=1)
    assert values.numpy().tolist() == [5.0, 7.0] and indices.numpy().tolist() == [1, 0]
    assert indices.dtype == np.int64 and x.max(dim=1).indices is not None
    values.sum().backward()
    assert x.grad.tolist() == [[0, 1, 0], [1, 0, 0]]  # the tie: the first index, as torch
    low = x.min(dim=-1, keepdim=True)
    assert low.values.shape == (2, 1) and low.indices.numpy().tolist() == [[0], [1]]
    assert x.max(axis=1).numpy().tolist() == [5.0, 7.0]  # NumPy's spelling: the values
    assert x.max().item() == 7.0
    assert x.argmax(1).numpy().tolist() == [1, 0] and x.argmax().item() == 3
    assert x.argmin(dim=0, keepdim=True).shape == (1, 3)
    with pytest.raises(TypeError, match="dim must be one int"):
        x.max(dim=(0, 1))
    with pytest.raises(IndexError, match="max: dim 2 is out of range"):
        x.max(dim=2)


def test_in_place_arithmetic_writes_into_the_tensor_as_torch():
    w = tg.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    same = w
    with pytest.raises(RuntimeError, match=r"cannot be changed in place \(-=\)"):
        w -= 1.0  # a leaf that requires grad, while gradients are recorded
    with tg.no_grad():
        w -= np.array([0.5, 0.25, 0.0])  # float64 operand: written in w's float32
        w *= 2
    assert same is w and w.dtype == np.float32 and w.numpy().tolist() == [1.0, 1.5, 2.0]
    lin = tg.nn.Linear(2, 2)
    with tg.no_grad():  # a manual SGD step keeps the Parameters (they were replaced)
        for p in lin.parameters():
            p -= 0.1 * p.grad if p.grad is not None else 0.0
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    with pytest.raises(TypeError, match="cannot assign Tensor as parameter 'weight'"):
        lin.weight = lin.weight * 2  # would drop it from parameters() and state_dict()
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    y += x  # inside a graph, not a leaf: a new node, gradients stay right
    y.sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    n = tg.tensor([1, 2])
    with pytest.raises(TypeError):
        n /= 2  # an int tensor cannot hold the float result, as torch


def test_int_matmul_float_takes_the_float_dtype_on_either_side():
    w = tg.tensor(np.ones((3, 2), dtype=np.float32), requires_grad=True)
    for out in (tg.tensor([[1, 2, 3]]) @ w, w.T @ tg.tensor([1, 2, 3])):
        assert out.dtype == np.float32
        out.sum().backward()
    assert w.grad.dtype == np.float32


def test_cat_names_an_out_of_range_dim_and_refuses_0d():
    a = tg.zeros((2, 3))
    with pytest.raises(IndexError, match="cat: dim 2 is out of range"):
        tg.cat([a, a], dim=2)
    with pytest.raises(ValueError, match="0-d tensor cannot be joined"):
        tg.cat([tg.tensor(1.0), tg.tensor(2.0)])
    assert tg.cat([a, a], dim=-1).shape == (2, 6)


def test_tensor_copies_its_data_like_torch_and_Tensor_wraps_it():
    a = np.zeros(3, dtype=np.float32)
    t, wrapped = tg.tensor(a), tg.Tensor(a)
    from_tensor = tg.tensor(wrapped)
    a[0] = 5
    assert t.numpy()[0] == 0 and from_tensor.numpy()[0] == 0  # copies, as torch.tensor
    assert wrapped.numpy()[0] == 5  # Tensor(array) shares it (what the ops use internally)
    f64 = np.zeros(2)
    t64 = tg.tensor(f64, requires_grad=True)
    f64[1] = 1
    assert t64.dtype == np.float64 and t64.numpy()[1] == 0


def test_split_and_chunk_shapes_and_errors_like_torch():
    x = tg.zeros((2, 12))
    shapes = [(2, 5), (2, 5), (2, 2)]
    assert [p.shape for p in x.split(5, dim=1)] == [p.shape for p in x.split(5, -1)] == shapes
    assert [p.shape for p in x.split([3, 0, 9], dim=1)] == [(2, 3), (2, 0), (2, 9)]
    assert [p.shape for p in x.chunk(5, dim=1)] == [(2, 3)] * 4  # ceil(12 / 5) = 3 each
    assert [p.shape for p in tg.zeros(0).split(2)] == [(0,)]  # one empty piece, as torch
    assert [p.shape for p in tg.zeros(0).chunk(3)] == [(0,)]
    with pytest.raises(ValueError, match=r"sizes \[3, 4\] must be non-negative and add up to 12"):
        x.split([3, 4], dim=1)
    with pytest.raises(ValueError, match="split_size must be positive, got 0"):
        x.split(0)
    with pytest.raises(ValueError, match="chunks must be positive, got 0"):
        x.chunk(0)
    with pytest.raises(IndexError, match="dim 2 is out of range"):
        x.split(1, dim=2)


@pytest.mark.parametrize("extra", ["array", "slice"])
@pytest.mark.parametrize("order", ["shared first", "shared last"])
def test_in_place_accumulation_never_writes_into_shared_gradients(extra, order):
    # s = x + y hands one array to both x and y; x then gets a second contribution (a full
    # array, or a slice's). Adding it into the shared array would change y's gradient too.
    rng = np.random.default_rng(1)
    data = rng.standard_normal((4, 5))
    w = rng.standard_normal((4, 5))
    x = tg.tensor(data, requires_grad=True)
    y = tg.tensor(data.copy(), requires_grad=True)
    shared = ((x + y) * w).sum()  # ds/dx = ds/dy = w, one array object for both
    other = (x * 3).sum() if extra == "array" else (x[1:3] * 3).sum()
    u = shared + other if order == "shared first" else other + shared
    u.backward()
    np.testing.assert_allclose(y.grad, w, rtol=1e-6)
    dx = w + (3 if extra == "array" else np.pad(np.full((2, 5), 3.0), ((1, 1), (0, 0))))
    np.testing.assert_allclose(x.grad, dx, rtol=1e-6)
    x.grad *= 0  # the leaves' gradients are separate arrays
    np.testing.assert_allclose(y.grad, w, rtol=1e-6)


@pytest.mark.parametrize("pg_kind", ["array", "slice"])
def test_accumulate_adds_in_place_only_into_its_own_buffers(pg_kind):
    # the rule behind the engine's in-place adds, checked directly: an array a backward
    # returned (here shared by a and b, as a + b does) is never written to; a buffer the
    # engine allocated itself (listed in `owned`) is added into in place
    from tinygpt.tensor import SliceGrad, _accumulate

    a = tg.tensor(np.zeros((3, 4)), requires_grad=True)
    b = tg.tensor(np.zeros((3, 4)), requires_grad=True)
    shared = np.arange(12, dtype=np.float32).reshape(3, 4)
    grads, owned = {id(a): shared, id(b): shared}, set()
    ones = np.ones((3, 4), np.float32)
    pg = ones if pg_kind == "array" else SliceGrad((3, 4), (slice(0, 1),), ones[:1])
    added = ones if pg_kind == "array" else np.pad(ones[:1], ((0, 2), (0, 0)))
    _accumulate(grads, owned, a, pg)
    np.testing.assert_array_equal(shared, np.arange(12).reshape(3, 4))  # untouched
    assert grads[id(b)] is shared
    total = grads[id(a)]
    np.testing.assert_array_equal(total, shared + added)
    assert id(total) in owned  # a fresh buffer: the next contribution goes in place
    _accumulate(grads, owned, a, pg)
    assert grads[id(a)] is total
    np.testing.assert_array_equal(total, shared + 2 * added)


@pytest.mark.parametrize("split", [False, True])
def test_backward_does_not_write_into_the_given_gradient(split):
    x = tg.tensor(np.ones((2, 3)), requires_grad=True)
    z = x * 2
    out = z + z if not split else z[0:1] + z[0:1]  # z (or its slice) gets `gradient` twice
    gradient = np.ones(out.shape, dtype=np.float32)
    out.backward(gradient)
    np.testing.assert_array_equal(gradient, np.ones(out.shape))
    want = np.full((2, 3), 4.0)
    if split:
        want[1] = 0
    np.testing.assert_allclose(x.grad, want)


def test_deep_graph_has_no_recursion_limit():
    x = tg.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0])


def test_no_grad_and_detach():
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    with tg.no_grad():
        y = x * 2
    assert not y.requires_grad
    z = (x * 2).detach()
    assert not z.requires_grad and z.is_leaf

    @tg.no_grad()
    def f(t):
        return t * 3

    assert not f(x).requires_grad
    assert tg.is_grad_enabled()


def test_default_dtypes():
    assert tg.tensor([1.0, 2.0]).dtype == np.float32
    assert tg.tensor([1, 2]).dtype == np.int64
    assert tg.tensor(np.zeros(2)).dtype == np.float64  # arrays keep their dtype
    assert (tg.tensor([1.0]) * 0.5).dtype == np.float32  # Python scalars do not upcast
    assert tg.randn(2, 3).dtype == np.float32
    assert tg.arange(5).dtype == np.int64


def test_seeded_factories_are_deterministic():
    tg.manual_seed(123)
    a = tg.randn(4, 5).numpy()
    r = tg.rand(3).numpy()
    tg.manual_seed(123)
    np.testing.assert_array_equal(a, tg.randn(4, 5).numpy())
    np.testing.assert_array_equal(r, tg.rand(3).numpy())
    tg.manual_seed(124)
    assert not np.array_equal(a, tg.randn(4, 5).numpy())
    state = tg.get_rng_state()
    x = tg.randn(3).numpy()
    tg.set_rng_state(state)
    np.testing.assert_array_equal(x, tg.randn(3).numpy())


def test_factories_shapes():
    assert tg.zeros(2, 3).shape == (2, 3)
    assert tg.ones((4,)).shape == (4,)
    assert tg.full((2, 2), 7.0).numpy().tolist() == [[7.0, 7.0], [7.0, 7.0]]
    np.testing.assert_array_equal(tg.arange(1, 7, 2).numpy(), [1, 3, 5])
    assert tg.randint(0, 5, (10,)).numpy().max() < 5


# ---------------------------------------------------------------------- errors


def test_matmul_shape_error_names_shapes():
    with pytest.raises(ValueError, match=r"matmul: shapes \(2, 3\) and \(4, 5\) do not align"):
        tg.randn(2, 3) @ tg.randn(4, 5)


def test_matmul_batch_broadcast_error():
    with pytest.raises(ValueError, match="do not broadcast"):
        tg.randn(2, 3, 4) @ tg.randn(3, 4, 5)


def test_backward_on_non_scalar_needs_gradient():
    x = tg.randn(2, 3, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"non-scalar output of shape \(2, 3\)"):
        (x * 2).backward()


def test_backward_without_requires_grad():
    with pytest.raises(RuntimeError, match="does not require grad"):
        (tg.randn(3) * 2).sum().backward()


def test_backward_twice_through_freed_graph():
    x = tg.randn(3, requires_grad=True)
    y = (x * 2).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="already freed"):
        y.backward()


def test_dtype_mixup_is_refused():
    a = tg.tensor(np.zeros(3, dtype=np.float32))
    b = tg.tensor(np.zeros(3, dtype=np.float64))
    with pytest.raises(TypeError, match="dtype mismatch: float32 and float64"):
        a + b


def test_int_tensor_cannot_require_grad():
    with pytest.raises(TypeError, match="floating-point"):
        tg.tensor([1, 2], requires_grad=True)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"shape \(2, 3\) \(6 elements\) into \(4, 2\)"):
        tg.randn(2, 3).reshape(4, 2)


def test_backward_gradient_shape_checked():
    x = tg.randn(2, requires_grad=True)
    with pytest.raises(ValueError, match=r"gradient shape \(3,\)"):
        (x * 1).backward(np.ones(3))


# ---------------------------------------------------------------------- properties

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_broadcast_gradients_sum_back_to_input_shape(data):
    shape = data.draw(shapes)
    # a broadcast-compatible partner: drop leading dims and set some sides to 1
    n_drop = data.draw(st.integers(0, len(shape) - 1))
    other = tuple(1 if data.draw(st.booleans()) else s for s in shape[n_drop:])
    a = tg.tensor(np.random.default_rng(1).standard_normal(shape), requires_grad=True)
    b = tg.tensor(np.random.default_rng(2).standard_normal(other), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == shape and b.grad.shape == other
    # d/db sum(a*b) = sum of a over the broadcast axes
    expected = np.broadcast_to(a.numpy(), np.broadcast_shapes(shape, other))
    extra = len(expected.shape) - len(other)
    expected = expected.sum(axis=tuple(range(extra)))
    expected = expected.sum(axis=tuple(i for i, s in enumerate(other) if s == 1), keepdims=True)
    np.testing.assert_allclose(b.grad, expected.reshape(other), rtol=1e-10, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.lists(st.integers(0, 5), min_size=1, max_size=12))
def test_getitem_scatter_adds_repeated_indices(n, raw_idx):
    idx = np.array([i % n for i in raw_idx])
    x = tg.tensor(np.zeros((n, 2)), requires_grad=True)
    w = np.random.default_rng(3).standard_normal((len(idx), 2))
    (x[idx] * tg.tensor(w)).sum().backward()
    expected = np.zeros((n, 2))
    for row, i in enumerate(idx):
        expected[i] += w[row]
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12, atol=1e-12)


def test_truth_value_like_torch():
    assert bool(tg.tensor([2.0])) and not bool(tg.tensor(0.0))
    assert (1.0 if tg.tensor([3.0]) < 0 else 2.0) == 2.0  # a comparison in an if
    with pytest.raises(RuntimeError, match="2 elements is ambiguous"):
        bool(tg.tensor([0.0, 0.0]))
    with pytest.raises(RuntimeError, match="0 elements is ambiguous"):
        bool(tg.tensor(np.zeros(0, np.float32)))


@pytest.mark.parametrize("data", [None, "abc", [1 + 2j], [tg.tensor(1.0), tg.tensor(2.0)]])
def test_tensor_of_non_numbers_is_refused(data):
    with pytest.raises(TypeError, match="tensor"):
        tg.tensor(data)


def test_edge_values_match_torch():
    torch = pytest.importorskip("torch")
    assert np.isnan(tg.tensor(np.zeros(0, np.float32)).mean().item())
    assert np.isnan(torch.zeros(0).mean().item())
    x = tg.tensor([0.0, 2.0], requires_grad=True)
    (x**0).sum().backward()  # d/dx x**0 = 0, also at 0
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])
    assert tg.tensor([1.0, 2.0]).transpose(0, -1).shape == (2,)  # 1-d: itself, as in torch
    with pytest.raises(IndexError, match="dimension 1 is out of range"):
        tg.tensor([1.0, 2.0]).transpose(0, 1)


def test_integer_and_bool_tensors_meet_floats_and_numbers_like_torch():
    """int + float32 is float32 whichever side the float is on (NumPy alone makes float64),
    bool tensors count True as 1, and an int tensor meets a Python float as float32."""
    ints, floats = tg.tensor([1, 2]), tg.tensor([1.0, 2.0])
    assert (ints + floats).dtype == (floats + ints).dtype == np.float32
    assert tg.where(np.array([True, False]), ints, floats).dtype == np.float32
    x = tg.tensor([1.0, 2.0], requires_grad=True)
    (ints * x).sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.tolist() == [1.0, 2.0]
    for result in (ints + 0.5, ints / 2, ints ** 0.5, ints / ints):
        assert result.dtype == np.float32
    assert (ints / 2).tolist() == [0.5, 1.0] and (ints * 2).dtype == ints.dtype
    assert (floats ** np.float64(2)).dtype == np.float32  # a NumPy scalar is a number too
    assert tg.cat([ints, floats]).dtype == tg.cat([floats, ints]).dtype == np.float32
    with pytest.raises(TypeError, match="cat: dtype mismatch"):  # as + refuses it
        tg.cat([floats, tg.tensor(np.ones(2))])
    for name in ("exp", "log", "sqrt", "tanh", "sigmoid"):  # of ints: float32 as in torch
        got = getattr(ints, name)()
        assert got.dtype == np.float32, name
        np.testing.assert_allclose(got.numpy(), getattr(floats, name)().numpy())
    flags = tg.tensor([True, False])
    assert (flags + 2).tolist() == [3, 2] and (flags * 3).tolist() == [3, 0]
    assert (2 - flags).tolist() == [1, 2] and (ints + flags).tolist() == [2, 2]


def test_relu_of_minus_infinity_is_zero_and_of_nan_is_nan():
    x = tg.tensor([-np.inf, -1.0, 0.0, 2.0, np.inf, np.nan], requires_grad=True)
    y = x.relu()
    np.testing.assert_array_equal(y.numpy(), [0.0, 0.0, 0.0, 2.0, np.inf, np.nan])
    assert not np.signbit(y.numpy()[:5]).any()
    y.sum().backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0, 1.0, 1.0, 1.0]  # torch's, NaN's included


def test_out_of_range_dims_are_index_errors_not_wrapped():
    t = tg.tensor(np.ones((2, 3)))
    with pytest.raises(IndexError, match="unsqueeze: dim 5"):
        t.unsqueeze(5)
    with pytest.raises(IndexError, match="squeeze: dim 4"):
        t.squeeze(4)
    assert t.unsqueeze(-3).shape == (1, 2, 3) and t.unsqueeze(2).shape == (2, 3, 1)
    assert t.unsqueeze(0).squeeze(-3).shape == (2, 3)
