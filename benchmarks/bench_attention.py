"""Attention forward + backward: tinygpt's numba kernels, its blockwise array code, the NumPy
reference and torch SDPA.

For each sequence length T, a global causal layer and a local one (window 128), with
B=1, H=4, D=64 in float32, this prints the best wall time and CPU time of a
forward+backward pass and its peak memory. Each measurement runs in a fresh child
process with the same thread count for NumPy's BLAS, numba and torch, and glibc told to
return large blocks to the OS at once (MALLOC_MMAP_THRESHOLD_), so "MiB" is the rise of
the process's resident-memory high-water mark during one pass (Linux /proc; it includes
the gradients of q, k, v).

    python benchmarks/bench_attention.py                      # T = 256 ... 4096, 1 thread
    python benchmarks/bench_attention.py --threads 2 --lengths 1024 4096

"blockwise" is kernels/blockwise.py on NumPy: the array code the CuPy backend runs (query
blocks, chunks of keys, an online softmax), here to show its memory and scaling on CPU.
torch is optional (its column is skipped without it); it gets an explicit boolean mask
for the local window, since SDPA has no window option.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

IMPLEMENTATIONS = ("tinygpt", "blockwise", "reference", "torch")
MODES = {"global": None, "local": 128}


def _vm_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(run, repeat: int) -> dict:
    """Peak memory of one run (after a warm-up run), then the best of ``repeat`` timings:
    wall clock, and the process's CPU time (all threads), which other load on a shared
    machine disturbs far less."""
    import gc

    run()  # warm-up: JIT cache load, BLAS buffers, torch's first-call setup
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the resident-memory high-water mark (VmHWM) to now
    before = _vm_kib("VmRSS")
    run()
    peak_mib = (_vm_kib("VmHWM") - before) / 1024
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"ms": 1000 * min(wall), "cpu_ms": 1000 * min(cpu), "peak_mib": peak_mib}


def child(impl: str, mode: str, T: int, threads: int, repeat: int) -> dict:
    """Build inputs and measure one implementation (runs in its own process)."""
    import numpy as np

    window = MODES[mode]
    rng = np.random.default_rng(0)
    q, k, v, dout = (rng.standard_normal((1, 4, T, 64)).astype(np.float32) for _ in range(4))
    if impl == "torch":
        import torch

        torch.set_num_threads(threads)
        F = torch.nn.functional
        qt, kt, vt = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
        dout_t = torch.tensor(dout)
        if window is None:
            kwargs = {"is_causal": True}
        else:
            from tinygpt.kernels.reference import allowed_keys

            kwargs = {"attn_mask": torch.tensor(allowed_keys(T, T, True, window, np))}

        def run():
            qt.grad = kt.grad = vt.grad = None
            F.scaled_dot_product_attention(qt, kt, vt, **kwargs).backward(dout_t)

    else:
        from tinygpt.kernels import blockwise, cpu, reference

        kernels = {"tinygpt": cpu, "blockwise": blockwise, "reference": reference}[impl]

        def run():
            out, lse, _ = kernels.attention_forward(q, k, v, True, window)
            kernels.attention_backward(q, k, v, out, lse, dout, True, window)

    return _measure(run, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, metavar=("IMPL", "MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        impl, mode, T = args.child
        print(json.dumps(child(impl, mode, int(T), args.threads, args.repeat)))
        return

    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        env[var] = str(args.threads)
    header = f"{'T':>5} {'layer':>6} " + " ".join(
        f"{name + ' ms':>13} {'cpu ms':>7} {'MiB':>5}" for name in IMPLEMENTATIONS)
    print(f"attention fwd+bwd, B=1 H=4 D=64 float32, {args.threads} thread(s), "
          f"best of {args.repeat}")
    print(header)
    for mode in MODES:
        for T in args.lengths:
            cells = []
            for impl in IMPLEMENTATIONS:
                cmd = [sys.executable, __file__, "--child", impl, mode, str(T),
                       "--threads", str(args.threads), "--repeat", str(args.repeat)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                if proc.returncode != 0:
                    reason = proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"
                    print(f"  ({impl} T={T} {mode}: {reason})", file=sys.stderr)
                    cells.append(f"{'-':>13} {'-':>7} {'-':>5}")
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                cells.append(f"{r['ms']:13.1f} {r['cpu_ms']:7.1f} {r['peak_mib']:5.0f}")
            print(f"{T:5d} {mode:>6} " + " ".join(cells), flush=True)


if __name__ == "__main__":
    main()
