"""Generation speed with the KV cache: tinygpt vs Hugging Face transformers (eager, CPU).

A GPT-2-small-shaped model (124M parameters, random weights, the same weights in both),
batch 1, greedy decoding of N new tokens after a short prompt. Both run in this process
with the same number of threads; we report tokens/s and the ratio.

    python benchmarks/bench_generate.py [--new-tokens 128] [--prompt 16] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--prompt", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--preset", default="gpt2")
    args = ap.parse_args()

    import numpy as np
    import torch
    import transformers

    import tinygpt as tg
    from tinygpt.model import GPT, GPTConfig

    torch.set_num_threads(args.threads)
    tg.manual_seed(0)
    ours = GPT(GPTConfig.from_preset(args.preset))
    with tempfile.TemporaryDirectory() as d:
        ours.save_pretrained(d, model_type="gpt2")
        hf = transformers.AutoModelForCausalLM.from_pretrained(
            d, attn_implementation="eager").eval()
    ids = np.random.default_rng(0).integers(0, 50257, size=(1, args.prompt))

    def run_ours():
        return ours.generate(ids, args.new_tokens, do_sample=False)

    def run_hf():
        with torch.no_grad():
            return hf.generate(torch.tensor(ids), max_new_tokens=args.new_tokens,
                               min_new_tokens=args.new_tokens, do_sample=False,
                               pad_token_id=0).numpy()

    results = {}
    outputs = {}
    for name, fn in (("tinygpt", run_ours), ("transformers", run_hf)):
        fn()  # warm-up: JIT compile, allocator, caches
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            outputs[name] = fn()
            best = min(best, time.perf_counter() - t0)
        results[name] = args.new_tokens / best
    same = np.array_equal(outputs["tinygpt"], outputs["transformers"])
    print(f"model {args.preset} ({ours.num_parameters() / 1e6:.1f}M params), batch 1, prompt "
          f"{args.prompt}, {args.new_tokens} new tokens, greedy, {args.threads} threads")
    for name, tps in results.items():
        print(f"  {name:13s} {tps:7.1f} tokens/s")
    print(f"  ratio tinygpt/transformers: {results['tinygpt'] / results['transformers']:.2f}x "
          f"(>1 is faster); identical tokens: {same}")


if __name__ == "__main__":
    main()
