"""Tokenizer speed, side by side with the Rust tokenizers (a benchmark, not a test).

    python benchmarks/bench_tokenizer.py                  # everything (~6 minutes)
    python benchmarks/bench_tokenizer.py --skip-readable  # without the slow readable trainer

Encode: GPT-2's ranks on tinyshakespeare, one thread, ours vs tiktoken, cut by GPT-2's split
pattern and again by GPT-4's (cl100k's; its own ranks are a download). Train: vocab 2048 on
tinyshakespeare, ours (numba) vs Hugging Face tokenizers' BpeTrainer vs our readable trainer.
Times are the best of a few runs in this process; ratios are taken between numbers of the
same run. The cold numbers (numba compiling from scratch) come from a child process with
an empty NUMBA_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("TINYGPT_SHARED_DATA", REPO.parent / "shared" / "data"))

from tinygpt.tokenizer import BPETokenizer, bpe  # noqa: E402
from tinygpt.tokenizer.patterns import GPT2_PATTERN, PATTERNS  # noqa: E402
from tinygpt.tokenizer.split import gpt2_split  # noqa: E402

VOCAB_SIZE = 2048


def best_of(fn, repeat: int) -> float:
    """Smallest wall time of ``repeat`` calls (the least disturbed by other processes)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_encode(text: str, repeat: int, pattern: str = "gpt2") -> None:
    import tiktoken

    path = DATA / "gpt2.tiktoken"
    start = time.perf_counter()
    ours = BPETokenizer.from_tiktoken(path, pattern=pattern)
    first_ids = ours.encode(text)
    first_call = time.perf_counter() - start
    reference = tiktoken.Encoding(
        f"gpt2-ranks-{pattern}-split",
        pat_str=PATTERNS[pattern],
        mergeable_ranks=ours.mergeable_ranks,
        special_tokens=ours.special_tokens,
    )
    assert first_ids == reference.encode_ordinary(text), "ids differ from tiktoken"

    def encode_fresh_cache():
        ours._cache.clear()
        ours.encode(text)

    t_tiktoken = best_of(lambda: reference.encode_ordinary(text), repeat)
    t_fresh = best_of(encode_fresh_cache, repeat)
    t_warm = best_of(lambda: ours.encode(text), repeat)
    t_split = best_of(lambda: ours._split.findall(text), repeat)
    t_scan = best_of(lambda: ours._split_text(text), repeat)
    mb = len(text.encode("utf-8")) / 1e6
    print(f"\nencode: GPT-2 ranks, {pattern.upper()} split pattern, tinyshakespeare ({mb:.2f} MB, "
          f"{len(first_ids):,} tokens)")
    print(f"  tiktoken encode_ordinary      {t_tiktoken:7.3f} s  {mb / t_tiktoken:6.2f} MB/s")
    print(
        f"  ours, empty chunk cache       {t_fresh:7.3f} s  {mb / t_fresh:6.2f} MB/s"
        f"  = {t_tiktoken / t_fresh:.2f}x tiktoken"
    )
    print(
        f"  ours, warm chunk cache        {t_warm:7.3f} s  {mb / t_warm:6.2f} MB/s"
        f"  = {t_tiktoken / t_warm:.2f}x tiktoken"
    )
    print(f"  (the pre-split alone: the regex {t_split:.3f} s, our {pattern.upper()} scan "
          f"{t_scan:.3f} s)")
    print(f"  ours, first call (load ranks, build tables, numba cache load): {first_call:.3f} s")


def bench_train(text: str, repeat: int, readable: bool) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    lines = text.splitlines(keepends=True)

    def hf_train(inputs):
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        trainer = trainers.BpeTrainer(
            vocab_size=VOCAB_SIZE,
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(inputs, trainer=trainer)
        assert tok.get_vocab_size() == VOCAB_SIZE

    BPETokenizer.train(text[:10_000], 300)  # numba: load the compiled trainer from its cache
    t_ours = best_of(lambda: BPETokenizer.train(text, VOCAB_SIZE), repeat)
    t_split = best_of(lambda: bpe.count_chunks(text, GPT2_PATTERN, gpt2_split), repeat)
    t_hf_lines = best_of(lambda: hf_train(lines), repeat)
    t_hf_text = best_of(lambda: hf_train([text]), repeat)
    print(f"\ntrain: vocab {VOCAB_SIZE} ({VOCAB_SIZE - 256} merges) on tinyshakespeare")
    print(
        f"  ours (numba trainer)          {t_ours:7.3f} s  (split + count chunks: {t_split:.3f} s)"
    )
    for name, t_hf in (("text by lines", t_hf_lines), ("one string   ", t_hf_text)):
        ratio = t_ours / t_hf
        print(f"  HF tokenizers, {name}  {t_hf:7.3f} s  ours takes {ratio:.2f}x its time")
    print(f"  (HF tokenizers may use all {os.cpu_count()} CPUs; ours runs on one)")
    if readable:
        start = time.perf_counter()
        slow = BPETokenizer.train(text, VOCAB_SIZE, fast=False)
        t_readable = time.perf_counter() - start
        same = slow.mergeable_ranks == BPETokenizer.train(text, VOCAB_SIZE).mergeable_ranks
        print(
            f"  ours, readable Python trainer {t_readable:7.3f} s  = {t_readable / t_ours:.0f}x "
            f"the numba trainer's time (same merges: {same})"
        )


COLD = """
import time
t = time.perf_counter()
from tinygpt.tokenizer import BPETokenizer
text = open({path!r}, encoding="utf-8").read()
tok = BPETokenizer.train(text[:10_000], 300)
t_train = time.perf_counter() - t
t = time.perf_counter()
tok.encode(text[:10_000])
print(f"{{t_train:.1f}} {{time.perf_counter() - t:.1f}}")
"""


def bench_cold() -> None:
    with tempfile.TemporaryDirectory() as cache_dir:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        code = COLD.format(path=str(DATA / "tinyshakespeare.txt"))
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True
        )
    if out.returncode != 0:
        print(f"\ncold start failed:\n{out.stderr}")
        return
    t_train, t_encode = out.stdout.split()
    print("\ncold start (numba compiles from scratch, empty NUMBA_CACHE_DIR)")
    print(f"  import + first train call     {t_train} s")
    print(f"  first encode call             {t_encode} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (best kept)")
    parser.add_argument("--skip-readable", action="store_true", help="skip the readable trainer")
    args = parser.parse_args()
    text = (DATA / "tinyshakespeare.txt").read_text(encoding="utf-8")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs")
    bench_encode(text, args.repeat, "gpt2")
    bench_encode(text, args.repeat, "gpt4")
    bench_train(text, max(1, args.repeat // 2), readable=not args.skip_readable)
    bench_cold()


if __name__ == "__main__":
    main()
