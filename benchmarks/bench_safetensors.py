"""Save/load a GPT-2-small-sized state dict with tinygpt.io and with the `safetensors` package.

    python benchmarks/bench_safetensors.py [--params-m 124] [--repeat 3]

Times are best-of-N wall seconds on this machine; the page cache is warm after the first
write, so load numbers measure mapping/copying, not the disk.
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from tinygpt.io import load_file, save_file


def gpt2_like_state(params_m: float) -> dict[str, np.ndarray]:
    """float32 tensors shaped like GPT-2 small (n_embd 768), scaled to about params_m million."""
    rng = np.random.default_rng(0)
    d, state, total = 768, {}, 0
    state["wte.weight"] = rng.standard_normal((50257, d), dtype=np.float32)
    total += state["wte.weight"].size
    i = 0
    while total < params_m * 1e6:
        for name, shape in [("attn.c_attn.weight", (d, 3 * d)), ("attn.c_proj.weight", (d, d)),
                            ("mlp.c_fc.weight", (d, 4 * d)), ("mlp.c_proj.weight", (4 * d, d)),
                            ("ln_1.weight", (d,)), ("ln_2.weight", (d,))]:
            state[f"h.{i}.{name}"] = rng.standard_normal(shape, dtype=np.float32)
            total += state[f"h.{i}.{name}"].size
        i += 1
    return state


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--params-m", type=float, default=124)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    state = gpt2_like_state(args.params_m)
    n = sum(a.size for a in state.values())
    print(f"{len(state)} tensors, {n / 1e6:.1f}M float32 params, {n * 4 / 1e6:.0f} MB")
    import safetensors.numpy as ref

    with tempfile.TemporaryDirectory(dir=".") as folder:
        ours, theirs = Path(folder) / "ours.safetensors", Path(folder) / "theirs.safetensors"
        rows = [
            ("save  tinygpt.io.save_file (atomic, fsync)", lambda: save_file(state, ours)),
            ("save  safetensors.numpy.save_file", lambda: ref.save_file(state, theirs)),
            ("load  tinygpt.io.load_file mmap=True", lambda: load_file(ours)),
            ("load  tinygpt.io.load_file mmap=False", lambda: load_file(ours, mmap=False)),
            ("load  safetensors.numpy.load_file", lambda: ref.load_file(theirs)),
            ("load+sum tinygpt.io mmap=True",
             lambda: sum(float(a.sum()) for a in load_file(ours).values())),
            ("load+sum safetensors.numpy",
             lambda: sum(float(a.sum()) for a in ref.load_file(theirs).values())),
        ]
        for label, fn in rows:
            print(f"{label:45s} {best(fn, args.repeat):7.3f} s")
        assert ours.read_bytes() == theirs.read_bytes(), "files differ"
        print("files are byte-identical")


if __name__ == "__main__":
    main()
