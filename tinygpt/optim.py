"""Optimizers (SGD, AdamW), gradient clipping and the warmup + cosine learning-rate schedule.

The math follows torch.optim exactly (same defaults, same order of operations), so a
model trained here and in PyTorch from the same start ends in the same place. Optimizer
state is plain arrays and numbers: ``state_dict()`` / ``load_state_dict()`` give an exact
resume and never need pickle.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from tinygpt import backend
from tinygpt.kernels import get_kernels
from tinygpt.tensor import Tensor


class Optimizer:
    """Holds parameter groups (dicts with "params" and per-group options) and per-param state."""

    def __init__(self, params, defaults: dict):
        if isinstance(params, Tensor):  # list(tensor) would give its rows, never updated
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Tensors or "
                            f"of parameter groups, got one Tensor: pass [tensor]")
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = dict(defaults)
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}  # id(param) -> state
        seen: set[int] = set()
        for group in groups:
            unknown = set(group) - set(defaults) - {"params"}
            if unknown:
                raise ValueError(f"{type(self).__name__}: unknown parameter-group option(s) "
                                 f"{sorted(unknown)}; known: {sorted(defaults)}")
            members = group["params"]  # one Tensor is a group of one, as in torch
            g = {**defaults, **group,
                 "params": [members] if isinstance(members, Tensor) else list(members)}
            for p in g["params"]:
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: params must be Tensors, "
                                    f"got {type(p).__name__}")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears in more than "
                                     f"one group")
                seen.add(id(p))
            self.param_groups.append(g)

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def _indexed(self):
        """(index, param, group) in a stable order, used to name state in state_dict."""
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, p, group
                i += 1

    def state_dict(self) -> dict:
        """{"state": {index: {name: array or number}}, "param_groups": [options + indices]}."""
        state, groups, i = {}, [], 0
        for group in self.param_groups:
            idx = []
            for p in group["params"]:
                if id(p) in self.state:
                    state[i] = dict(self.state[id(p)])
                idx.append(i)
                i += 1
            groups.append({**{k: v for k, v in group.items() if k != "params"}, "params": idx})
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(g["params"]) != len(own["params"]) for g, own in zip(groups, self.param_groups)
        ):
            raise ValueError("load_state_dict: the saved parameter groups "
                             f"{[len(g['params']) for g in groups]} do not match this optimizer's "
                             f"{[len(g['params']) for g in self.param_groups]}")
        # everything is checked and built first: a bad entry leaves the optimizer as it was
        new_state = {}
        saved_state = {int(k): v for k, v in state_dict["state"].items()}
        for i, p, _ in self._indexed():
            if i in saved_state:
                s = {}
                for k, v in saved_state[i].items():
                    if hasattr(v, "shape") and getattr(v, "ndim", 0) > 0:
                        if tuple(v.shape) != p.shape:
                            raise ValueError(f"load_state_dict: state {k!r} of parameter {i} has "
                                             f"shape {tuple(v.shape)}, parameter has {p.shape}")
                        v = backend.xp.array(v, dtype=p.dtype)
                    s[k] = v
                new_state[id(p)] = s
        for saved, own in zip(groups, self.param_groups):
            own.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, dampening, Nesterov, weight decay."""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False):
        if lr < 0 or momentum < 0 or weight_decay < 0:
            raise ValueError(f"SGD: lr, momentum and weight_decay must be >= 0, got "
                             f"{lr}, {momentum}, {weight_decay}")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def step(self) -> None:
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if wd:
                    g = g + wd * p.data
                if mom:
                    state = self.state.setdefault(id(p), {})
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.copy()
                    else:
                        buf *= mom
                        buf += (1 - group["dampening"]) * g
                    g = g + mom * buf if group["nesterov"] else buf
                p.data -= lr * g


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW.

    Each step, per parameter: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    p -= lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps). One fused kernel pass per tensor.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        if lr < 0 or eps < 0 or weight_decay < 0:
            raise ValueError(f"AdamW: lr, eps and weight_decay must be >= 0, got "
                             f"{lr}, {eps}, {weight_decay}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"AdamW: betas must be in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay))

    def step(self) -> None:
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                K, xp = get_kernels(p.data), backend.array_module(p.data)  # where p lives
                state = self.state.get(id(p))
                if state is None:
                    state = self.state[id(p)] = {
                        "step": 0,
                        "exp_avg": xp.zeros_like(p.data),
                        "exp_avg_sq": xp.zeros_like(p.data),
                    }
                state["step"] += 1
                K.adamw_step(p.data, p.grad, state["exp_avg"], state["exp_avg_sq"],
                             state["step"], group["lr"], beta1, beta2, group["eps"],
                             group["weight_decay"])


def clip_grad_norm_(params: Iterable[Tensor] | Tensor, max_norm: float) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``.

    Returns the norm before clipping (like torch), so training can log it. A NaN norm makes
    every gradient NaN, as torch does (a NaN factor scales them all).
    """
    if isinstance(params, Tensor):  # one tensor, as torch accepts (not its rows)
        params = [params]
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return 0.0
    K = get_kernels(grads[0])
    total = math.sqrt(sum(K.sum_of_squares(g) for g in grads))  # float64 sums
    coef = max_norm / (total + 1e-6)
    if coef < 1.0 or math.isnan(coef):
        for g in grads:
            g *= g.dtype.type(coef)
    return total


def warmup_cosine_lr(step: int, max_lr: float, warmup_steps: int, max_steps: int,
                     min_lr: float = 0.0) -> float:
    """Learning rate at ``step`` (0-based): linear warmup, then cosine decay to ``min_lr``.

    Warmup rises as max_lr * (step + 1) / warmup_steps, reaching max_lr on the last warmup
    step; the cosine then falls from max_lr at ``warmup_steps`` to min_lr at ``max_steps``
    and stays there.
    """
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


class WarmupCosineLR:
    """Sets each group's lr from :func:`warmup_cosine_lr`, scaled by its initial lr.

    Call ``step()`` once per optimizer step, before ``optimizer.step()``.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, max_steps: int,
                 min_lr_ratio: float = 0.1):
        if warmup_steps < 0 or max_steps < 1 or warmup_steps > max_steps:
            raise ValueError(f"WarmupCosineLR: need 0 <= warmup_steps <= max_steps and "
                             f"max_steps >= 1, got {warmup_steps}, {max_steps}")
        self.optimizer, self.warmup_steps, self.max_steps = optimizer, warmup_steps, max_steps
        self.min_lr_ratio = min_lr_ratio
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.last_step = -1

    def step(self) -> float:
        self.last_step += 1
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = warmup_cosine_lr(self.last_step, base, self.warmup_steps, self.max_steps,
                                       base * self.min_lr_ratio)
        return self.optimizer.param_groups[0]["lr"]

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.last_step, self.base_lrs = int(state["last_step"]), list(state["base_lrs"])
