# %% [markdown]
# # Lesson 2: modules, a tiny MLP, and the optimizer
#
# Lesson 1 gave us gradients. To *learn*, we need three more pieces, all with PyTorch's
# names so what you learn here transfers:
#
# 1. **Modules** (`tinygpt/nn.py`): objects that own their weights (`Parameter`s) and
#    their sub-modules. Assigning one to an attribute registers it, so `parameters()`
#    finds every weight by a dotted name.
# 2. **A loss**: `F.cross_entropy(logits, targets)`, the negative log-probability of the
#    right answer, averaged.
# 3. **An optimizer** (`tinygpt/optim.py`): it reads each parameter's `.grad` and updates
#    the weights. We compare plain SGD with AdamW, the optimizer GPTs are trained with.
#
# The task is small enough to see: classify 2-D points of two interleaved spirals.

# %%
import matplotlib.pyplot as plt
import numpy as np
from _common import notice, setup

import tinygpt as tg
import tinygpt.functional as F
from tinygpt import nn, optim

lesson = setup(2, "modules, a tiny MLP, the optimizer")

# %% [markdown]
# ## The data: two spirals
#
# No straight line separates them, so a linear model fails and a hidden layer is needed.

# %%
rng = np.random.default_rng(0)
n_per_class = lesson.pick(200, 100)
t = np.sqrt(rng.random(n_per_class)) * 3 * np.pi  # angle along the spiral
arms = [np.stack([t * np.cos(t + k * np.pi), t * np.sin(t + k * np.pi)], 1) for k in (0, 1)]
X = np.concatenate(arms) / (3 * np.pi) + rng.normal(0, 0.03, (2 * n_per_class, 2))
y = np.repeat([0, 1], n_per_class)
X = X.astype(np.float32)
print("inputs", X.shape, "labels", y.shape, "classes", np.bincount(y))

# %% [markdown]
# ## A module of our own
#
# A module subclasses `nn.Module`, calls `super().__init__()`, assigns its layers, and
# defines `forward`. `nn.Linear(in, out)` holds a weight of shape (out, in) and a bias,
# exactly like `torch.nn.Linear`.

# %%
class MLP(nn.Module):
    """Two hidden layers of tanh units, then one logit per class."""

    def __init__(self, hidden: int = 32, classes: int = 2):
        super().__init__()
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.head = nn.Linear(hidden, classes)

    def forward(self, x):
        x = self.fc1(x).tanh()  # [N, 2] -> [N, hidden]
        x = self.fc2(x).tanh()  # [N, hidden] -> [N, hidden]
        return self.head(x)  # [N, hidden] -> [N, classes]


tg.manual_seed(0)
model = MLP()
print(model)
for name, p in model.named_parameters():
    print(f"  {name:12s} {str(p.shape):10s} {p.numel():5d} numbers")
print("parameters in total:", model.num_parameters())

# %% [markdown]
# `nn.Sequential` builds the same kind of network without a class, and `state_dict()`
# maps every dotted name to its array: this is what a checkpoint stores.

# %%
seq = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 2))
print(list(seq.state_dict()))

# %% [markdown]
# ## One training step, by hand
#
# Forward, loss, backward, then move every weight a little against its gradient. This is
# plain gradient descent, and `optim.SGD` does exactly the same thing.

# %%
inputs, targets = tg.tensor(X), tg.tensor(y)
lr = 0.5
loss = F.cross_entropy(model(inputs), targets)
print(f"loss before: {loss.item():.4f}  (a coin flip is ln 2 = {np.log(2):.4f})")
model.zero_grad()
loss.backward()
before = {name: p.numpy() for name, p in model.named_parameters()}
for p in model.parameters():
    p.data -= lr * p.grad
print(f"loss after one step: {F.cross_entropy(model(inputs), targets).item():.4f}")

# the same step with optim.SGD, from the same start, gives the same weights
twin = MLP()
twin.load_state_dict(before)
sgd = optim.SGD(twin.parameters(), lr=lr)
twin.zero_grad()
F.cross_entropy(twin(inputs), targets).backward()
sgd.step()
same = all(np.allclose(p.numpy(), q.numpy()) for p, q in zip(model.parameters(),
                                                             twin.parameters()))
print("optim.SGD made the same update:", same)

# %% [markdown]
# ## SGD against AdamW
#
# SGD moves every weight by `lr * grad`. Adam keeps, per weight, a running mean of the
# gradient (momentum) and of its square, and divides one by the square root of the other:
# each weight takes steps of about `lr` no matter how large or small its gradients are.
# AdamW adds *decoupled* weight decay, shrinking the weights a little every step.
#
# We train two copies from the same initial weights and record the loss.

# %%
steps = lesson.pick(600, 250)


def train(make_optimizer, seed=1):
    tg.manual_seed(seed)
    net = MLP()
    opt = make_optimizer(net.parameters())
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(net(inputs), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return net, losses


runs = {
    "SGD lr=0.5": train(lambda ps: optim.SGD(ps, lr=0.5)),
    "SGD lr=0.5, momentum 0.9": train(lambda ps: optim.SGD(ps, lr=0.5, momentum=0.9)),
    "AdamW lr=0.01": train(lambda ps: optim.AdamW(ps, lr=0.01, weight_decay=0.01)),
}

fig, ax = plt.subplots(figsize=(6.5, 4))
for label, (_, losses) in runs.items():
    ax.plot(losses, label=label)
ax.set_yscale("log")
ax.set_xlabel("step")
ax.set_ylabel("cross-entropy (log scale)")
ax.set_title("the same MLP, the same data, three optimizers")
ax.legend()
lesson.savefig(fig, "optimizers")

for label, (net, losses) in runs.items():
    with tg.no_grad():
        acc = (net(inputs).numpy().argmax(1) == y).mean()
    below = next((i for i, v in enumerate(losses) if v < 0.1), None)
    reached = f"loss < 0.1 at step {below}" if below is not None else "never below 0.1"
    print(f"{label:26s} final loss {losses[-1]:.4f}   accuracy {acc:5.1%}   {reached}")

# %% [markdown]
# ## What the network learned
#
# Evaluating the trained network on a grid shows its decision boundary. Under `no_grad()`
# no graph is recorded: inference needs no backward.

# %%
net = runs["AdamW lr=0.01"][0]
grid = np.linspace(-1.2, 1.2, lesson.pick(200, 80), dtype=np.float32)
gx, gy = np.meshgrid(grid, grid)
with tg.no_grad():
    logits = net(tg.tensor(np.stack([gx.ravel(), gy.ravel()], 1)))
    prob = F.softmax(logits, -1).numpy()[:, 1].reshape(gx.shape)

fig, ax = plt.subplots(figsize=(5, 5))
ax.contourf(gx, gy, prob, levels=20, cmap="RdBu_r", alpha=0.6)
ax.contour(gx, gy, prob, levels=[0.5], colors="black")
ax.scatter(X[:, 0], X[:, 1], c=y, cmap="RdBu_r", s=8, edgecolors="k", linewidths=0.3)
ax.set_title("P(class 1) learned by the MLP (AdamW); black: the 0.5 boundary")
ax.set_aspect("equal")
lesson.savefig(fig, "decision_boundary")

notice("one hand-written step and optim.SGD's step are the same arithmetic",
       "plain SGD creeps along a plateau (the loss of a half-right guess) for a long time; "
       "momentum and AdamW build up speed along it and leave it",
       "a curved boundary: two tanh layers bend the plane, which no linear model can do")
