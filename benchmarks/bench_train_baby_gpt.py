"""nanoGPT's CPU "baby GPT" on Shakespeare characters: tinygpt vs PyTorch, full training runs.

The anchor (nanoGPT's README): 4 layers, 4 heads, 128 wide, context 64, batch 12, 2000
iterations, lr 1e-3 -> 1e-4 (warmup 100, cosine to 2000), beta2 0.99, weight decay 0.1,
grad clip 1.0, dropout 0, no biases reaches a validation loss of about 1.88 nats/char in a
few minutes on a laptop CPU. (tinygpt's ``bias=False`` drops the Linear biases and keeps
LayerNorm's; embeddings are not weight-decayed. The PyTorch model here does the same.)
The settings live in ``examples/baby_gpt.json``, the file that
``tinygpt train --config examples/baby_gpt.json`` reads.

Both sides train the same model (PyTorch's is in ``torch_nanogpt.py``, parameter names equal
to tinygpt's) from the same initial weights (copied from tinygpt), on the same batches (the
same TokenDataset and seeded generator), with the same AdamW groups and the same schedule,
evaluating every 250 steps on the same 20 validation batches. Each runs in its own
process, with the same thread count (``--threads``, default: the number of cores).
Reported: wall time of the training loop (evaluations included, checkpoints and samples
off on both sides) and the final validation loss on 20 batches (as during training) and on
200 batches (less noisy, untimed).

    python benchmarks/bench_train_baby_gpt.py                 # both, one after the other
    python benchmarks/bench_train_baby_gpt.py --repeats 2     # alternate, best of 2 each
    python benchmarks/bench_train_baby_gpt.py --threads 1     # numba, BLAS and torch: 1 thread
    python benchmarks/bench_train_baby_gpt.py --which torch --steps 200
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "examples" / "baby_gpt.json"


def setup(max_steps: int | None):
    """Data, tinygpt model and TrainConfig, built as `tinygpt train --config` builds them."""
    import tinygpt
    from tinygpt.commands.train import DEFAULTS, build_configs, read_config
    from tinygpt.data import prepare_data
    from tinygpt.model import GPT

    settings = {**DEFAULTS, **read_config(str(CONFIG)), "sample_tokens": 0}
    if max_steps is not None:
        settings.update(max_steps=max_steps, lr_decay_steps=max_steps)
    cache = Path(tempfile.gettempdir()) / "tinygpt-bench-baby-data"
    train, val, tok = prepare_data(settings["data"], settings["tokenizer"], cache,
                                   settings["block_size"], settings["val_fraction"])
    model_config, train_config = build_configs(settings, tok.vocab_size)
    tinygpt.manual_seed(train_config.seed)
    return train, val, GPT(model_config), train_config


def run_tinygpt(max_steps: int | None, threads: int) -> dict:
    # tinygpt first, as the `tinygpt` command imports it: before numba (it picks numba's
    # threading layer) and before NumPy loads OpenBLAS (see tinygpt/__init__.py)
    from tinygpt.train import Trainer  # noqa: I001

    import numba

    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))

    train, val, model, config = setup(max_steps)
    trainer = Trainer(model, train, val, config, progress=False)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    final20 = trainer.last_eval["val_loss"]
    config.eval_batches = 200
    final200 = trainer.evaluate()["val_loss"]
    return {"impl": "tinygpt", "threads": numba.get_num_threads(), "steps": config.max_steps,
            "seconds": seconds, "val_loss_20": final20, "val_loss_200": final200,
            "curve": trainer.val_curve}


def run_torch(max_steps: int | None, threads: int) -> dict:
    import numpy as np
    import torch
    from torch_nanogpt import adamw_like_tinygpt, torch_gpt

    torch.set_num_threads(threads)
    train, val, tiny, config = setup(max_steps)
    c = tiny.config
    model = torch_gpt(torch, c.vocab_size, c.block_size, c.n_layer, c.n_head, c.n_embd, c.bias)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                           tiny.state_dict().items()})
    opt = adamw_like_tinygpt(torch, model, config.lr, (config.beta1, config.beta2),
                             config.weight_decay)
    rng = np.random.default_rng(config.seed)

    @torch.no_grad()
    def evaluate(batches):
        model.eval()
        losses = [model(torch.from_numpy(x), torch.from_numpy(y)).item()
                  for x, y in val.eval_batches(batches, config.batch_size)]
        model.train()
        return float(np.mean(losses))

    curve = []
    start = time.perf_counter()
    for step in range(config.max_steps):
        lr = config.lr_at(step)  # the same warmup + cosine formula
        for g in opt.param_groups:
            g["lr"] = lr
        x, y = train.get_batch(config.batch_size, rng)
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        done = step + 1
        if done % config.eval_interval == 0 or done == config.max_steps:
            curve.append((done, evaluate(config.eval_batches)))
    seconds = time.perf_counter() - start
    return {"impl": "torch", "threads": threads, "steps": config.max_steps, "seconds": seconds,
            "val_loss_20": curve[-1][1], "val_loss_200": evaluate(200), "curve": curve}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", choices=("both", "tinygpt", "torch"), default="both")
    parser.add_argument("--steps", type=int, default=None, help="override max_steps (2000)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for numba, NumPy's BLAS and torch alike (default: the "
                             "number of cores)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="with --which both: run tinygpt, torch, tinygpt, torch, ... this "
                             "many times each and report each side's fastest run (a shared "
                             "host drifts; alternating spreads the drift over both sides)")
    args = parser.parse_args()
    if args.which == "both":  # each in a fresh process: two thread pools never share one
        env = dict(os.environ)
        for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(args.threads)
        runs = {"tinygpt": [], "torch": []}
        for _ in range(max(1, args.repeats)):
            for which in runs:
                cmd = [sys.executable, __file__, "--which", which, "--threads",
                       str(args.threads)]
                cmd += ["--steps", str(args.steps)] if args.steps else []
                out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                     env=env).stdout
                runs[which].append(json.loads(out.strip().splitlines()[-1]))
        results = [min(rs, key=lambda r: r["seconds"]) for rs in runs.values()]
        load = os.getloadavg()[0]
        print(f"baby GPT, {results[0]['steps']} steps, load average {load:.1f} on "
              f"{os.cpu_count()} cores")
        for which, rs in runs.items():
            times = ", ".join(f"{r['seconds']:.0f}" for r in rs)
            print(f"{which} wall times, in run order: {times} s")
        print()
        print("| | threads | wall time | val loss (20 batches) | val loss (200 batches) |")
        print("| --- | --- | --- | --- | --- |")
        for r in results:
            print(f"| {r['impl']} | {r['threads']} | {r['seconds']:.0f} s | "
                  f"{r['val_loss_20']:.4f} | {r['val_loss_200']:.4f} |")
        ratio = results[0]["seconds"] / results[1]["seconds"]
        print(f"\ntinygpt / torch wall time: {ratio:.2f}x; val loss difference (200 batches): "
              f"{results[0]['val_loss_200'] - results[1]['val_loss_200']:+.4f}")
        return
    # Never touch numba in the torch process: numba's first use starts its own thread pool
    # (OpenMP unless tinygpt chose workqueue first), and two OpenMP runtimes in one process
    # spin against each other (a torch run took over 10 minutes instead of ~2.5 that way).
    if args.which == "tinygpt":
        result = run_tinygpt(args.steps, args.threads)
    else:
        result = run_torch(args.steps, args.threads)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
