"""One training step (forward + backward + clip + AdamW), tinygpt vs PyTorch eager on CPU.

The same GPT (nanoGPT's architecture and names: learned positions, pre-LayerNorm,
tanh-GELU, tied head), the same initial weights (copied from tinygpt into torch), the same
batches, the same thread count. Reported: median step time of each, their ratio, and
tinygpt's model FLOP/s next to NumPy's own float32 matmul FLOP/s on this machine.

    python benchmarks/bench_train_step.py [--config a|b|both] [--steps 20] [--threads 2]

Config a: 4 layers, 4 heads, 128 wide, context 64, batch 12, vocab 65 (nanoGPT's baby GPT).
Config b: 6 layers, 6 heads, 384 wide, context 256, batch 16, vocab 65.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

CONFIGS = {
    "a": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12, vocab=65),
    "b": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=16, vocab=65),
}


def torch_gpt(torch, cfg):
    """nanoGPT's model in plain PyTorch (eager), parameter names equal to tinygpt's."""
    nn, F = torch.nn, torch.nn.functional
    C, H = cfg["n_embd"], cfg["n_head"]

    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_attn, self.c_proj = nn.Linear(C, 3 * C), nn.Linear(C, C)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.c_fc, self.c_proj = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

        def forward(self, x):
            return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.attn = nn.LayerNorm(C), Attn()
            self.ln_2, self.mlp = nn.LayerNorm(C), MLP()

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(cfg["vocab"], C), wpe=nn.Embedding(cfg["block_size"], C),
                h=nn.ModuleList(Block() for _ in range(cfg["n_layer"])), ln_f=nn.LayerNorm(C)))

        def forward(self, idx, targets):
            T = idx.shape[1]
            x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(T))
            for b in self.transformer.h:
                x = b(x)
            logits = F.linear(self.transformer.ln_f(x), self.transformer.wte.weight)
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    return GPT()


def matmul_flops(np, n=768, repeats=10):
    """NumPy's float32 matmul rate on this machine (the ceiling for a NumPy framework)."""
    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def run(name, cfg, steps, threads):
    import numpy as np
    import torch

    import tinygpt as tg
    from tinygpt import optim
    from tinygpt.model import GPT, GPTConfig

    torch.set_num_threads(threads)
    tg.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=cfg["vocab"], block_size=cfg["block_size"],
                          n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"]))
    tmodel = torch_gpt(torch, cfg)
    own = model.state_dict()
    with torch.no_grad():
        for k, p in tmodel.state_dict().items():
            p.copy_(torch.tensor(np.asarray(own[k])))
    opt = optim.AdamW(model.optimizer_groups(0.1), lr=1e-3, betas=(0.9, 0.99))
    decay = [p for n, p in tmodel.named_parameters() if p.dim() >= 2 and "wte" not in n
             and "wpe" not in n]
    no_decay = [p for n, p in tmodel.named_parameters() if not (p.dim() >= 2 and "wte" not in n
                                                               and "wpe" not in n)]
    topt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                              {"params": no_decay, "weight_decay": 0.0}], lr=1e-3,
                             betas=(0.9, 0.99))
    rng = np.random.default_rng(0)
    B, T = cfg["batch"], cfg["block_size"]
    batches = [rng.integers(0, cfg["vocab"], size=(2, B, T)) for _ in range(steps + 3)]

    def ours_step(xy):
        loss = model(xy[0], targets=xy[1]).loss
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    def torch_step(xy):
        loss = tmodel(torch.tensor(xy[0]), torch.tensor(xy[1]))
        topt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 1.0)
        topt.step()
        return loss.item()

    t0 = time.perf_counter()
    ours_step(batches[0])
    cold = time.perf_counter() - t0  # includes numba JIT (or loading its on-disk cache)
    torch_step(batches[0])
    times = {"tinygpt": [], "torch": []}
    losses = {"tinygpt": [], "torch": []}
    for xy in batches[1:3]:  # warm-up
        ours_step(xy)
        torch_step(xy)
    for xy in batches[3:]:  # interleaved, so machine noise hits both alike
        for label, fn in (("tinygpt", ours_step), ("torch", torch_step)):
            t0 = time.perf_counter()
            losses[label].append(fn(xy))
            times[label].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    n_params = model.num_parameters()
    C, L = cfg["n_embd"], cfg["n_layer"]
    # PaLM's estimate: 6 N per token for the weights + 6 L T C for attention scores (causal half)
    flops = (6 * n_params + 6 * L * T * C) * B * T
    return dict(name=name, cfg=cfg, med=med, cold=cold, flops_per_s=flops / med["tinygpt"],
                torch_flops_per_s=flops / med["torch"], params=n_params,
                loss_gap=max(abs(a - b) for a, b in zip(losses["tinygpt"], losses["torch"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=["a", "b", "both"], default="both")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    import numba
    import numpy as np

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    names = ["a", "b"] if args.config == "both" else [args.config]
    peak = matmul_flops(np)
    print(f"threads {args.threads}; NumPy float32 matmul (768^3): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'config':7s} {'params':>8s} {'tinygpt ms':>11s} {'torch ms':>9s} {'ratio':>6s} "
          f"{'tinygpt GFLOP/s':>16s} {'% of matmul':>12s} {'cold 1st step s':>16s}")
    for name in names:
        r = run(name, CONFIGS[name], args.steps, args.threads)
        ratio = r["med"]["tinygpt"] / r["med"]["torch"]
        print(f"{name:7s} {r['params'] / 1e6:7.2f}M {1e3 * r['med']['tinygpt']:11.1f} "
              f"{1e3 * r['med']['torch']:9.1f} {ratio:6.2f} {r['flops_per_s'] / 1e9:16.1f} "
              f"{100 * r['flops_per_s'] / peak:11.0f}% {r['cold']:16.2f}")
        print(f"        (same losses step by step: max |difference| {r['loss_gap']:.2e}; "
              f"torch {r['torch_flops_per_s'] / 1e9:.1f} GFLOP/s)")
    print("ratio = tinygpt step time / torch step time (< 1 means tinygpt is faster)")
    assert math.isfinite(peak)


if __name__ == "__main__":
    main()
