"""One training step (forward + backward + clip + AdamW), tinygpt vs PyTorch eager on CPU.

The same GPT (nanoGPT's architecture and names: learned positions, pre-LayerNorm,
tanh-GELU, tied head, biases), the same initial weights (tinygpt's, copied into torch), the
same batches, the same thread count. Reported: median step time of each, their ratio, the
largest difference between the two loss sequences, and tinygpt's model FLOP/s next to
NumPy's own float32 matmul FLOP/s on this machine (the best of a measurement at the start
and one inside each tinygpt worker after its steps: this host's speed drifts).

Each side runs in its own process, tinygpt and torch in turn (torch first in every other
round), ``--rounds`` times (default 2), and the fastest of its medians counts; each round's
own ratio is printed too (the two processes of a round run back to back, so a round's
ratio sees the least of the host's drift). In
one process the two frameworks' thread pools fight: torch's OpenMP threads keep spinning
after each op while numba's and OpenBLAS's want the same cores (config a measured torch
2066 ms per step that way, 67 ms alone).

    python benchmarks/bench_train_step.py [--config a|b|both|overhead] [--steps 20] [--threads 2]
                                          [--rounds 2] [--cold]

"1st step s" is the first tinygpt process's first step, numba's kernels loaded from its
on-disk cache (compiled there by an earlier run). ``--cold`` measures what a fresh install
pays instead: tinygpt's first step in a process with an empty numba cache (every kernel
compiles), then in a second process that loads the cache the first one wrote
(what every later run pays).

Config a: 4 layers, 4 heads, 128 wide, context 64, batch 12, vocab 65 (nanoGPT's baby GPT).
Config b: 6 layers, 6 heads, 384 wide, context 256, batch 16, vocab 65.
Config overhead: config a's 4 layers at 16 wide, context 4, batch 1: per-op overhead only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "a": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, batch=12, vocab=65),
    "b": dict(n_layer=6, n_head=6, n_embd=384, block_size=256, batch=16, vocab=65),
    # config a's layers at 16 wide on 4 tokens: the arithmetic is negligible, so the step
    # time is each framework's per-op overhead (Python, dispatch, autograd bookkeeping)
    "overhead": dict(n_layer=4, n_head=4, n_embd=16, block_size=4, batch=1, vocab=65),
}


def matmul_flops(n=768, repeats=10):
    """NumPy's float32 matmul rate on this machine (the ceiling for a NumPy framework)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    a @ a
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def model_config(name: str):
    from tinygpt.model import GPTConfig

    cfg = CONFIGS[name]
    return GPTConfig(vocab_size=cfg["vocab"], block_size=cfg["block_size"],
                     n_layer=cfg["n_layer"], n_head=cfg["n_head"], n_embd=cfg["n_embd"])


def worker(impl: str, name: str, steps: int, threads: int) -> dict:
    """Time `steps` training steps of one framework; runs in its own process."""
    # tinygpt first, as the `tinygpt` command imports it: before NumPy loads OpenBLAS
    import tinygpt as tg  # noqa: I001

    import numpy as np
    from tinygpt import optim
    from tinygpt.model import GPT

    cfg = CONFIGS[name]
    tg.manual_seed(0)
    model = GPT(model_config(name))
    rng = np.random.default_rng(0)
    B, T = cfg["batch"], cfg["block_size"]
    batches = [rng.integers(0, cfg["vocab"], size=(2, B, T)) for _ in range(steps + 3)]
    if impl == "tinygpt":
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
        opt = optim.AdamW(model.optimizer_groups(0.1), lr=1e-3, betas=(0.9, 0.99))

        def step(xy):
            loss = model(xy[0], targets=xy[1]).loss
            opt.zero_grad()
            loss.backward()
            optim.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            return loss.item()
    else:
        import torch
        from torch_nanogpt import adamw_like_tinygpt, torch_gpt

        torch.set_num_threads(threads)
        tmodel = torch_gpt(torch, cfg["vocab"], T, cfg["n_layer"], cfg["n_head"], cfg["n_embd"])
        tmodel.load_state_dict({k: torch.tensor(np.asarray(v))
                                for k, v in model.state_dict().items()})
        topt = adamw_like_tinygpt(torch, tmodel, lr=1e-3, betas=(0.9, 0.99), weight_decay=0.1)

        def step(xy):
            loss = tmodel(torch.tensor(xy[0]), torch.tensor(xy[1]))
            topt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), 1.0)
            topt.step()
            return loss.item()

    times, losses = [], []
    for xy in batches:
        t0 = time.perf_counter()
        losses.append(step(xy))
        times.append(time.perf_counter() - t0)
    # the first step includes numba's JIT (or loading its on-disk cache); two more warm up
    result = {"median": statistics.median(times[3:]), "cold": times[0], "losses": losses}
    if impl == "tinygpt":  # the matmul ceiling again, in this process, right after the steps
        result["matmul_flops"] = matmul_flops()
    return result


def compare(name: str, steps: int, threads: int, peak: float, rounds: int = 2) -> dict:
    from tinygpt.model import GPT

    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    runs = {"tinygpt": [], "torch": []}
    for i in range(rounds):
        # torch first in every other round: drift within a round must not favour one side
        for impl in (("tinygpt", "torch") if i % 2 == 0 else ("torch", "tinygpt")):
            cmd = [sys.executable, __file__, "--worker", impl, "--config", name,
                   "--steps", str(steps), "--threads", str(threads)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            runs[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {impl: min(r["median"] for r in rs) for impl, rs in runs.items()}
    # this host's speed drifts (neighbours on the VM): the best matmul rate seen is the ceiling
    peak = max([peak] + [r["matmul_flops"] for r in runs["tinygpt"]])
    cfg = CONFIGS[name]
    B, T, C, L = cfg["batch"], cfg["block_size"], cfg["n_embd"], cfg["n_layer"]
    n_params = GPT.count_parameters(model_config(name))  # counted, nothing allocated
    # PaLM's estimate: 6 N per token for the weights + 6 L T C for attention scores (causal half)
    flops = (6 * n_params + 6 * L * T * C) * B * T
    gap = max(abs(a - b) for a, b in zip(runs["tinygpt"][0]["losses"],
                                         runs["torch"][0]["losses"]))
    pairs = [t["median"] / p["median"] for t, p in zip(runs["tinygpt"], runs["torch"])]
    return dict(best=best, cold=runs["tinygpt"][0]["cold"], params=n_params, pairs=pairs,
                flops=flops / best["tinygpt"], torch_flops=flops / best["torch"], gap=gap,
                peak=peak)


def cold_start(name: str, threads: int) -> None:
    """First-step times of tinygpt with an empty numba cache, then with the one it left."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="tinygpt-numba-cache-") as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, OPENBLAS_NUM_THREADS=str(threads))
        cmd = [sys.executable, __file__, "--worker", "tinygpt", "--config", name,
               "--steps", "3", "--threads", str(threads)]
        runs = []
        for _ in range(2):  # empty cache (compiles and writes it), then the cache it wrote
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"config {name}: first step {runs[0]['cold']:.1f} s with an empty numba cache "
          f"(compiling), {runs[1]['cold']:.2f} s loading the cache it wrote; later steps "
          f"{1e3 * runs[1]['median']:.1f} ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", choices=["a", "b", "both", "overhead"], default="both")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--rounds", type=int, default=2,
                    help="tinygpt/torch process pairs per config (default 2)")
    ap.add_argument("--cold", action="store_true",
                    help="tinygpt's first step with an empty numba cache, then a warm one")
    ap.add_argument("--worker", choices=["tinygpt", "torch"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.worker:
        print(json.dumps(worker(args.worker, args.config, args.steps, args.threads)))
        return
    names = ["a", "b"] if args.config == "both" else [args.config]
    if args.cold:
        for name in names:
            cold_start(name, args.threads)
        return
    peak = matmul_flops()
    print(f"threads {args.threads}; NumPy float32 matmul (768^3) at start: {peak / 1e9:.1f} "
          f"GFLOP/s; load average {os.getloadavg()[0]:.1f}")
    print(f"{'config':7s} {'params':>8s} {'tinygpt ms':>11s} {'torch ms':>9s} {'ratio':>6s} "
          f"{'tinygpt GFLOP/s':>16s} {'% of matmul':>12s} {'1st step s':>11s}")
    for name in names:
        r = compare(name, args.steps, args.threads, peak, args.rounds)
        ratio = r["best"]["tinygpt"] / r["best"]["torch"]
        print(f"{name:7s} {r['params'] / 1e6:7.2f}M {1e3 * r['best']['tinygpt']:11.1f} "
              f"{1e3 * r['best']['torch']:9.1f} {ratio:6.2f} {r['flops'] / 1e9:16.1f} "
              f"{100 * r['flops'] / r['peak']:11.0f}% {r['cold']:11.2f}")
        print(f"        (same losses step by step: max |difference| {r['gap']:.2e}; "
              f"torch {r['torch_flops'] / 1e9:.1f} GFLOP/s = "
              f"{100 * r['torch_flops'] / r['peak']:.0f}%; matmul ceiling: best of start and "
              f"tinygpt workers {r['peak'] / 1e9:.1f} GFLOP/s)")
        faster = sum(x < 1 for x in r["pairs"])
        print(f"        (each round's ratio: {', '.join(f'{x:.2f}' for x in r['pairs'])}; "
              f"tinygpt faster in {faster} of {len(r['pairs'])})")
    print("ratio = tinygpt step time / torch step time (< 1 means tinygpt is faster)")


if __name__ == "__main__":
    main()
