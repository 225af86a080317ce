# %% [markdown]
# # Lesson 1: tensors and autograd, from scalars up
#
# A neural network is a long chain of simple operations, and training it needs one thing:
# the gradient of the loss with respect to every weight. *Automatic differentiation*
# computes all of them in one backward sweep, applying the chain rule once per operation.
#
# In tinygpt every operation does two jobs, written side by side in `tinygpt/tensor.py`:
# the **forward** computes the result, and a small **backward** closure turns the gradient
# of the result into gradients of its inputs. Each result remembers its parents, so the
# computation builds a graph as it runs. `backward()` walks that graph from the output back
# to the inputs.
#
# This lesson builds the idea from a handful of scalars, draws the graph, then moves to
# whole tensors, and finally checks every gradient against finite differences, the
# slow but trustworthy way to differentiate.
#
# Run it as `python lessons/01_autograd.py [--quick] [--out DIR]`, or open it as a notebook
# with jupytext.

# %%
import math

import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
from tinygpt.gradcheck import gradcheck, numerical_grad
from tinygpt.tensor import _make

lesson = setup(1, "tensors and autograd, from scalars up")

# %% [markdown]
# ## A tiny expression
#
# Take `L = (a * b + c) * f`. We mark the inputs we want gradients for with
# `requires_grad=True`. Every operation returns a new `Tensor` whose `_prev` holds its
# parents and `_op` names the operation: that is the graph.

# %%
a = tg.tensor(2.0, requires_grad=True)
b = tg.tensor(-3.0, requires_grad=True)
c = tg.tensor(10.0, requires_grad=True)
f = tg.tensor(-2.0, requires_grad=True)

e = a * b  # -6
d = e + c  # 4
L = d * f  # -8
print("L =", L.item())
print("L was made by", repr(L._op), "from", [p.item() for p in L._prev])

# %% [markdown]
# ## Drawing the graph
#
# We walk `_prev` from `L` to the leaves and place each node in a column by its distance
# from the output. We record the graph *before* calling `backward()`: like PyTorch, tinygpt
# frees the graph during the backward pass (the inputs each op saved are no longer needed).

# %%
names = {id(a): "a", id(b): "b", id(c): "c", id(f): "f", id(e): "e", id(d): "d", id(L): "L"}


def record_graph(root):
    """Nodes, (parent, child) edges and an (x, y) place for every node reachable from root."""
    column, edges, todo = {id(root): 0}, [], [root]
    nodes = {id(root): root}
    while todo:  # breadth-first from the output: a node sits one column left of its child
        node = todo.pop(0)
        for parent in node._prev:
            edges.append((parent, node))
            column[id(parent)] = max(column.get(id(parent), 0), column[id(node)] + 1)
            nodes[id(parent)] = parent
            todo.append(parent)
    rows: dict[int, list[int]] = {}
    for key, col in column.items():
        rows.setdefault(col, []).append(key)
    deepest = max(rows)
    place = {key: (deepest - col, i - (len(keys) - 1) / 2)
             for col, keys in rows.items() for i, key in enumerate(keys)}
    # what to print in each box, read now: backward() will free _op and _prev
    boxes = {key: (node._op if node._prev else "", node.item(), not node._prev)
             for key, node in nodes.items()}
    return boxes, [(id(p), id(c)) for p, c in edges], place


def draw_graph(graph, title, grads=None):
    boxes, edges, place = graph
    fig, ax = plt.subplots(figsize=(9, 3.6))
    for parent, child in edges:
        (x0, y0), (x1, y1) = place[parent], place[child]
        ax.annotate("", xy=(x1 - 0.3, y1), xytext=(x0 + 0.3, y0),
                    arrowprops=dict(arrowstyle="->", color="gray"))
    for key, (op, value, leaf) in boxes.items():
        label = f"{op}\n" if op else ""
        label += f"{names[key]} = {value:g}"
        if grads is not None and key in grads:
            label += f"\ngrad {grads[key]:g}"
        ax.text(*place[key], label, ha="center", va="center", fontsize=10,
                bbox=dict(boxstyle="round", fc="#cfe8ff" if leaf else "#ffe7c2", ec="black"))
    xs = [x for x, _ in place.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(-1.3, 1.3)
    ax.axis("off")
    ax.set_title(title)
    return fig


graph = record_graph(L)
fig = draw_graph(graph, "L = (a*b + c) * f: leaves in blue, operations in orange")
lesson.savefig(fig, "graph")

# %% [markdown]
# ## The backward pass
#
# `L.backward()` starts with dL/dL = 1 and hands each node's gradient to its backward
# closure. For a product `x * y` the closure returns `(g * y, g * x)`; for a sum it
# passes `g` to both sides. By hand, with the chain rule:
#
# - dL/df = d = 4
# - dL/dd = f = -2, and since d = e + c: dL/dc = dL/de = -2
# - since e = a * b: dL/da = dL/de * b = 6 and dL/db = dL/de * a = -4

# %%
L.backward()
by_hand = {"a": 6.0, "b": -4.0, "c": -2.0, "f": 4.0}
for name, leaf in zip("abcf", (a, b, c, f)):
    print(f"dL/d{name}: autograd {float(leaf.grad):+.1f}   by hand {by_hand[name]:+.1f}")
    assert float(leaf.grad) == by_hand[name]
print("e.grad after backward:", e.grad, " (only leaves keep .grad, as in PyTorch)")
print("L._prev after backward:", L._prev, " (the graph was freed)")

grads = {id(t): float(t.grad) for t in (a, b, c, f)}
fig = draw_graph(graph, "after L.backward(): each leaf holds dL/d(leaf)", grads)
lesson.savefig(fig, "graph_with_grads")

notice("every leaf that requires grad got exactly the chain-rule gradient",
       "intermediate results (e, d) do not keep a gradient: it was only passed through",
       "the graph was built by running ordinary Python arithmetic on Tensors")

# %% [markdown]
# ## Gradients accumulate
#
# A second `backward()` on a new graph *adds* to `.grad`: that is how a value used in
# two places receives the sum of both contributions. It is also why training loops call
# `zero_grad()` before each step.

# %%
x = tg.tensor(3.0, requires_grad=True)
y = x * x + x  # x is used twice: dy/dx = 2x + 1 = 7
y.backward()
print("dy/dx =", float(x.grad))
(x * 10).backward()  # a second graph: +10
print("after a second backward:", float(x.grad), " (7 + 10)")

# %% [markdown]
# ## From scalars to tensors
#
# Nothing changes for arrays. One layer `h = tanh(x @ W + b)` has a matrix product and a
# *broadcast* add: `b` has shape (2,) but is added to every row of a (5, 2) matrix. Its
# gradient must therefore be summed over the rows, back to shape (2,). tinygpt does that in
# one place (`unbroadcast` in tensor.py), so every op gets it right.

# %%
tg.manual_seed(0)
x = tg.randn(5, 4, requires_grad=True)
W = tg.randn(4, 2, requires_grad=True)
b = tg.randn(2, requires_grad=True)
h = (x @ W + b).tanh()
loss = (h * h).mean()
loss.backward()
for name, t in (("x", x), ("W", W), ("b", b)):
    print(f"{name}: value shape {t.shape}, grad shape {tuple(t.grad.shape)}")

# %% [markdown]
# ## Checking gradients with finite differences
#
# The derivative is a limit: (f(x + eps) - f(x - eps)) / (2 eps) approaches f'(x) as eps
# shrinks. This *central difference* needs two evaluations per input element, far too
# slow for training, but it uses no calculus at all, so it is the perfect referee for a
# backward closure.
#
# First by hand, for one element of `W`:

# %%
x64, W64, b64 = (t.detach().to(np.float64) for t in (x, W, b))
for t in (x64, W64, b64):
    t.requires_grad_()


def layer_loss(x, W, b):
    h = (x @ W + b).tanh()
    return (h * h).mean()


layer_loss(x64, W64, b64).backward()
eps = 1e-6
W_hi, W_lo = W64.numpy(), W64.numpy()
W_hi[1, 0] += eps
W_lo[1, 0] -= eps
numeric = (layer_loss(x64, tg.tensor(W_hi), b64).item()
           - layer_loss(x64, tg.tensor(W_lo), b64).item()) / (2 * eps)
print(f"dloss/dW[1,0]: autograd {W64.grad[1, 0]:.10f}, finite difference {numeric:.10f}")

# %% [markdown]
# `tinygpt.gradcheck.gradcheck` does this for every element of every input and raises an
# error naming the worst element if they disagree. It wants float64: in float32 the
# rounding error of the difference quotient is as large as the tolerance.

# %%
print("gradcheck passes:", gradcheck(layer_loss, [x64, W64, b64]))

# %% [markdown]
# ## How an op is made, and a bug gradcheck catches
#
# Every op in tensor.py is one call to `_make(result, parents, backward, name)`. Here is
# a cube op written that way, once correctly and once with the classic slip of forgetting
# the factor 3.

# %%
def cube(t):
    a = t.data
    return _make(a**3, (t,), lambda g: (g * 3 * a**2,), "cube")


def cube_with_bug(t):
    a = t.data
    return _make(a**3, (t,), lambda g: (g * a**2,), "cube")  # forgot the 3


z = tg.tensor([0.5, -1.0, 2.0], dtype=np.float64, requires_grad=True)
print("correct cube passes:", gradcheck(cube, [z]))
try:
    gradcheck(cube_with_bug, [z])
except AssertionError as err:
    print("buggy cube caught:", err)

# %% [markdown]
# ## Choosing eps
#
# Too large an eps and the difference quotient is a poor approximation of the slope
# (truncation error, shrinking like eps^2 for the central difference). Too small and
# subtracting two nearly equal numbers loses digits (rounding error, growing like
# machine-epsilon / eps). The sweet spot sits in between, and it sits at much smaller
# errors in float64 than in float32.

# %%
eps_values = np.logspace(-12, -1, lesson.pick(45, 23))
point = 0.7
exact = 1 - math.tanh(point) ** 2  # d/dx tanh(x)
errors = {}
for dtype in (np.float32, np.float64):
    errs = []
    for eps in eps_values:
        t = tg.tensor([point], dtype=dtype)
        num = numerical_grad(lambda t: t.tanh(), [t], eps=eps)[0][0]
        errs.append(abs(num - exact) + 1e-17)
    errors[np.dtype(dtype).name] = np.array(errs)

fig, ax = plt.subplots(figsize=(6.5, 4))
for name, errs in errors.items():
    ax.loglog(eps_values, errs, marker=".", label=name)
ax.axvline(1e-6, color="gray", ls=":", label="eps=1e-6 (gradcheck's default)")
ax.set_xlabel("eps")
ax.set_ylabel("|finite difference - exact derivative|")
ax.set_title("central-difference error of d tanh(x)/dx at x = 0.7")
ax.legend(loc="upper right", fontsize=8)
lesson.savefig(fig, "finite_difference_error")

best = {name: eps_values[np.argmin(errs)] for name, errs in errors.items()}
print("best eps:", {k: f"{v:.0e}" for k, v in best.items()})
print("smallest error:", {k: f"{v.min():.1e}" for k, v in errors.items()})
notice("the error falls like eps^2 from the right, then rises like 1/eps on the left",
       f"float64 gets to {errors['float64'].min():.0e}, float32 only to "
       f"{errors['float32'].min():.0e}: gradcheck wants float64",
       "autograd itself has no eps: it is exact up to rounding, which is why we trust it "
       "once it agrees with the slow check")
