"""nn.Module bookkeeping, and optimizers that match torch.optim step for step."""

import math

import numpy as np
import pytest

import tinygpt as tg
import tinygpt.functional as F
from tinygpt import nn, optim


class MLP(nn.Module):
    def __init__(self, dtype=np.float32):
        super().__init__()
        self.fc1 = nn.Linear(3, 16, dtype=dtype)
        self.ln = nn.LayerNorm(16, dtype=dtype)
        self.fc2 = nn.Linear(16, 2, dtype=dtype)
        self.drop = nn.Dropout(0.1)

    def forward(self, x):
        return self.fc2(self.drop(F.gelu(self.ln(self.fc1(x)), "tanh")))


# ---------------------------------------------------------------------- Module


def test_named_parameters_and_state_dict():
    m = MLP()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "ln.weight", "ln.bias", "fc2.weight", "fc2.bias"]
    assert m.num_parameters() == 3 * 16 + 16 + 16 + 16 + 16 * 2 + 2
    sd = m.state_dict()
    assert list(sd) == names and sd["fc1.weight"].shape == (16, 3)


def test_load_state_dict_roundtrip_and_errors():
    tg.manual_seed(0)
    a, b = MLP(), MLP()
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    for (_, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    sd = dict(a.state_dict())
    sd.pop("ln.bias")
    sd["extra.weight"] = np.zeros(2)
    with pytest.raises(KeyError, match=r"missing keys: \['ln.bias'\].*unexpected keys: "
                                       r"\['extra.weight'\]"):
        b.load_state_dict(sd)
    missing, unexpected = b.load_state_dict(sd, strict=False)
    assert missing == ["ln.bias"] and unexpected == ["extra.weight"]
    bad = dict(a.state_dict())
    bad["fc1.weight"] = np.zeros((3, 16))
    with pytest.raises(ValueError, match=r"'fc1.weight': checkpoint has \(3, 16\), model has "
                                         r"\(16, 3\)"):
        b.load_state_dict(bad)


def test_train_eval_zero_grad_repr():
    m = MLP()
    assert m.training and m.drop.training
    m.eval()
    assert not m.training and not m.drop.training
    x = tg.randn(4, 3)
    np.testing.assert_array_equal(m(x).numpy(), m(x).numpy())  # no dropout in eval
    m(x).sum().backward()
    assert m.fc1.weight.grad is not None
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    text = repr(m)
    assert "(fc1): Linear(in_features=3, out_features=16, bias=True)" in text
    assert "(drop): Dropout(p=0.1)" in text


def test_module_list_sequential_and_tied_parameters():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert seq(tg.randn(5, 2)).shape == (5, 1)
    ml = nn.ModuleList([nn.Linear(2, 2, bias=False) for _ in range(3)])
    assert len(ml) == 3 and ml[1] is list(ml)[1]
    ml[2].weight = ml[0].weight  # tie
    assert len(list(ml.parameters())) == 2
    assert len(ml.state_dict()) == 3  # tied weights are listed under each name, like torch


def test_module_without_super_init_is_a_clear_error():
    class Bad(nn.Module):
        def __init__(self):
            self.w = nn.Parameter(np.zeros(2))

    with pytest.raises(RuntimeError, match="must call super"):
        Bad()


def test_gpt2_style_init():
    tg.manual_seed(0)
    p = nn.Parameter(np.zeros((200, 200), dtype=np.float32))
    nn.init_normal_(p, std=0.02)
    assert abs(p.numpy().std() - 0.02) < 0.001 and abs(p.numpy().mean()) < 0.001


# ---------------------------------------------------------------------- optimizers vs torch


def _train_pair(torch, opt_name, dtype, steps=20, clip=None):
    """Train the same MLP in tinygpt and torch from the same init; return both param lists."""
    tg.manual_seed(0)
    m = MLP(dtype=dtype)
    m.drop.p = 0.0
    tm = torch.nn.Sequential(
        torch.nn.Linear(3, 16), torch.nn.LayerNorm(16), torch.nn.GELU(approximate="tanh"),
        torch.nn.Linear(16, 2),
    ).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for tp, p in zip(tm.parameters(), m.parameters()):
            tp.copy_(torch.tensor(p.numpy()))
    decay = [m.fc1.weight, m.fc2.weight]
    no_decay = [m.fc1.bias, m.ln.weight, m.ln.bias, m.fc2.bias]
    tparams = list(tm.parameters())
    tdecay, tno = [tparams[0], tparams[4]], [tparams[1], tparams[2], tparams[3], tparams[5]]
    if opt_name == "adamw":
        opt = optim.AdamW([{"params": decay, "weight_decay": 0.1},
                           {"params": no_decay, "weight_decay": 0.0, "lr": 3e-3}],
                          lr=1e-2, betas=(0.9, 0.95))
        topt = torch.optim.AdamW([{"params": tdecay, "weight_decay": 0.1},
                                  {"params": tno, "weight_decay": 0.0, "lr": 3e-3}],
                                 lr=1e-2, betas=(0.9, 0.95))
    else:
        opt = optim.SGD(m.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True)
        topt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3,
                               nesterov=True)
    rng = np.random.default_rng(1)
    norms = []
    for _ in range(steps):
        x = rng.standard_normal((8, 3)).astype(dtype)
        y = np.sin(x[:, :2]).astype(dtype)
        opt.zero_grad()
        loss = ((m(tg.tensor(x)) - tg.tensor(y)) ** 2).mean()
        loss.backward()
        topt.zero_grad()
        tloss = ((tm(torch.tensor(x)) - torch.tensor(y)) ** 2).mean()
        tloss.backward()
        if clip is not None:
            norms.append((optim.clip_grad_norm_(m.parameters(), clip),
                          float(torch.nn.utils.clip_grad_norm_(tm.parameters(), clip))))
        opt.step()
        topt.step()
    return [p.numpy() for p in m.parameters()], [p.detach().numpy() for p in tparams], norms


@pytest.mark.parametrize("opt_name", ["adamw", "sgd"])
def test_optimizer_matches_torch_float32(opt_name):
    torch = pytest.importorskip("torch")
    ours, theirs, _ = _train_pair(torch, opt_name, np.float32)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_adamw_matches_torch_float64_tightly():
    torch = pytest.importorskip("torch")
    ours, theirs, _ = _train_pair(torch, "adamw", np.float64)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-10)


def test_clip_grad_norm_matches_torch():
    torch = pytest.importorskip("torch")
    ours, theirs, norms = _train_pair(torch, "adamw", np.float64, steps=10, clip=0.05)
    for ours_norm, torch_norm in norms:
        assert ours_norm == pytest.approx(torch_norm, rel=1e-9)
    assert any(n > 0.05 for n, _ in norms)  # clipping actually happened
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, atol=1e-12, rtol=1e-10)


def test_clip_grad_norm_scales_to_max_norm():
    p = nn.Parameter(np.zeros(4))
    p.grad = np.array([3.0, 4.0, 0.0, 0.0])
    total = optim.clip_grad_norm_([p], 1.0)
    assert total == pytest.approx(5.0)
    assert np.linalg.norm(p.grad) == pytest.approx(1.0, rel=1e-5)


def test_optimizer_state_dict_gives_exact_resume():
    def run(steps, resume_at=None):
        tg.manual_seed(0)
        m = MLP()
        m.drop.p = 0.0
        opt = optim.AdamW(m.parameters(), lr=1e-2)
        sched = optim.WarmupCosineLR(opt, warmup_steps=3, max_steps=10)
        rng = np.random.default_rng(0)
        for step in range(steps):
            if step == resume_at:  # rebuild everything from saved state
                saved_model = {k: v.copy() for k, v in m.state_dict().items()}
                saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
                m = MLP()
                m.load_state_dict(saved_model)
                m.drop.p = 0.0
                opt = optim.AdamW(m.parameters(), lr=1e-2)
                opt.load_state_dict(saved_opt)
                sched = optim.WarmupCosineLR(opt, warmup_steps=3, max_steps=10)
                sched.load_state_dict(saved_sched)
            x = tg.tensor(rng.standard_normal((4, 3)).astype(np.float32))
            opt.zero_grad()
            sched.step()
            (m(x) ** 2).mean().backward()
            opt.step()
        return [p.numpy() for p in m.parameters()]

    for a, b in zip(run(8), run(8, resume_at=4)):
        np.testing.assert_array_equal(a, b)


def test_warmup_cosine_schedule_shape():
    lrs = [optim.warmup_cosine_lr(s, 1.0, 10, 110, 0.1) for s in range(120)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))
    assert lrs[110] == lrs[119] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))


def test_optimizer_bad_input():
    p = nn.Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.AdamW([])
    with pytest.raises(ValueError, match="betas"):
        optim.AdamW([p], betas=(0.9, 1.5))
    with pytest.raises(ValueError, match=r"unknown parameter-group option\(s\) \['momentum'\]"):
        optim.AdamW([{"params": [p], "momentum": 0.9}])
    with pytest.raises(ValueError, match="more than one group"):
        optim.AdamW([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.WarmupCosineLR(optim.SGD([p]), warmup_steps=5, max_steps=2)


def test_readme_mlp_example_fits_a_toy_function():
    """The 10-line example in the README, kept in sync by hand: the loss must fall a lot."""
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(1, 32), nn.Tanh(), nn.Linear(32, 1))
    opt = optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    x = tg.tensor(np.linspace(-3, 3, 64, dtype=np.float32)[:, None])
    y = tg.tensor(np.sin(x.numpy()))
    first = None
    for _ in range(300):
        loss = ((model(x) - y) ** 2).mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02 < first


def test_one_tensor_for_an_optimizer_or_clip_is_not_read_as_its_rows():
    """list(tensor) gives its rows, which never get a .grad: an optimizer built that way,
    or clip_grad_norm_ given one tensor, silently did nothing."""
    w = tg.tensor(np.ones((3, 2)), requires_grad=True)
    w.grad = np.ones((3, 2))
    with pytest.raises(TypeError, match="got one Tensor"):
        optim.AdamW(w, lr=0.1)
    optim.AdamW([{"params": w}], lr=0.1, weight_decay=0.0).step()  # a group of one, as torch
    np.testing.assert_allclose(w.numpy(), 0.9, rtol=1e-6)
    v = tg.tensor(np.zeros(2), requires_grad=True)
    v.grad = np.array([30.0, 40.0])
    assert optim.clip_grad_norm_(v, 1.0) == pytest.approx(50.0)
    np.testing.assert_allclose(v.grad, [0.6, 0.8], rtol=1e-5)


def test_clip_grad_norm_with_a_nan_gradient_makes_every_gradient_nan_like_torch():
    ps = [tg.tensor(np.zeros(2), requires_grad=True) for _ in range(2)]
    ps[0].grad, ps[1].grad = np.array([np.nan, 1.0]), np.array([2.0, 3.0])
    assert math.isnan(optim.clip_grad_norm_(ps, 1.0))
    assert all(np.isnan(p.grad).all() for p in ps)


def test_kernels_follow_where_the_arrays_live(monkeypatch):
    # a model made before set_device("cuda") keeps NumPy arrays: every op and the optimizer
    # must take the CPU kernels for them (CuPy's refuse host arrays); get_kernels() alone
    # follows the device (here it would import the CuPy kernels, absent on this machine)
    from tinygpt import backend, kernels
    from tinygpt.model import GPT, GPTConfig

    tg.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16,
                          attention_layers=["global", "local"], window_size=4,
                          position_embedding="rope"))
    opt = optim.AdamW(model.parameters(), lr=1e-2)
    monkeypatch.setattr(backend, "device", "cuda")
    chosen = kernels.get_kernels(np.zeros(1)).__name__
    assert chosen in ("tinygpt.kernels.cpu", "tinygpt.kernels.reference")  # TINYGPT_KERNELS
    idx = np.arange(16).reshape(2, 8) % 11
    loss = model(idx, targets=idx).loss
    loss.backward()
    optim.clip_grad_norm_(model.parameters(), 0.5)
    opt.step()
    assert np.isfinite(loss.item())
