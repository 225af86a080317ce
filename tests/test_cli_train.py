"""`tinygpt train` and `tinygpt sample` as a user runs them (subprocesses, tiny runs)."""

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO

from tinygpt.commands.train import DEFAULTS, OPTIONS, build_configs, read_config
from tinygpt.data import DataError, load_text
from tinygpt.train import TrainConfig

# Tiny models gain nothing from threads, and on a busy machine idle threads spin: one each.
ENV = {**os.environ, "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
       "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
TINY = ["--tokenizer", "char", "--n-layer", "2", "--n-head", "2", "--n-embd", "32",
        "--block-size", "16", "--window-size", "8", "--batch-size", "4", "--eval-batches", "2",
        "--warmup-steps", "2"]


def tinygpt(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "tinygpt", *map(str, args)], env=ENV,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "shakespeare.txt"
    path.write_text(load_text("builtin:shakespeare")[:30_000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_run(text_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    result = tinygpt("train", "--data", text_file, "--out", out, *TINY, "--max-steps", 6,
                     "--eval-interval", 3, "--checkpoint-interval", 3)
    assert result.returncode == 0, result.stderr
    return out, result


def test_train_writes_the_run_folder_and_prints_a_sample(trained_run):
    out, result = trained_run
    assert "done: step 6" in result.stdout and "sample:" in result.stdout
    assert "val loss" in result.stdout and "bits/byte" in result.stdout
    # the suggested next command: no Shakespeare prompt for a corpus of one's own (its
    # characters need not be in that vocabulary), and it runs
    assert result.stdout.rstrip().endswith(f"next: tinygpt sample --ckpt {out}")
    assert tinygpt("sample", "--ckpt", out, "--max-new-tokens", 5).returncode == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for name in ("loss.png", "checkpoint/config.json", "checkpoint/model.safetensors",
                 "checkpoint/optimizer.safetensors", "checkpoint/trainer_state.json",
                 "checkpoint/tokenizer.json", "checkpoint-best/model.safetensors",
                 "data/train.bin", "data/val.bin", "data/meta.json"):
        assert (out / name).exists(), name


def test_sample_streams_a_reproducible_continuation(trained_run):
    out, _ = trained_run
    args = ("sample", "--ckpt", out, "--prompt", "ROMEO:", "--max-new-tokens", 40, "--seed", 1)
    first, again = tinygpt(*args), tinygpt(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == again.stdout
    assert first.stdout.startswith("ROMEO:") and len(first.stdout) == len("ROMEO:") + 40 + 1
    other = tinygpt(*args[:-1], 2)
    assert other.stdout != first.stdout


def test_sample_rejects_bad_input(trained_run, tmp_path):
    out, _ = trained_run
    missing = tinygpt("sample", "--ckpt", tmp_path / "nothing")
    assert missing.returncode == 2 and "no checkpoint here" in missing.stderr
    bad_top_p = tinygpt("sample", "--ckpt", out, "--top-p", 1.5)
    assert bad_top_p.returncode == 2 and "top_p must be in (0, 1]" in bad_top_p.stderr
    assert bad_top_p.stdout == ""
    unknown_char = tinygpt("sample", "--ckpt", out, "--prompt", "\u263a")
    assert unknown_char.returncode == 2 and "not in the vocabulary" in unknown_char.stderr


def test_ctrl_c_saves_a_checkpoint_and_the_run_resumes(text_file, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "tinygpt", "train", "--data", str(text_file), "--out", str(out),
           *TINY, "--max-steps", "100000", "--eval-interval", "1000",
           "--checkpoint-interval", "2"]
    child = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        state = out / "checkpoint" / "trainer_state.json"
        deadline = time.monotonic() + 90
        while not state.exists() and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.2)
        assert state.exists(), "no checkpoint appeared"
        child.send_signal(signal.SIGINT)
        stdout, stderr = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "continue with: tinygpt train --out" in stdout
    step = json.loads(state.read_text())["step"]
    assert step >= 2
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(rows[-1])["step"] == step  # the checkpoint holds the last step done

    resumed = tinygpt("train", "--data", text_file, "--out", out, "--resume",
                      "--max-steps", step + 2)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming at step {step}" in resumed.stdout
    assert f"done: step {step + 2}" in resumed.stdout


def test_resume_with_different_settings_is_refused_naming_them(trained_run):
    out, _ = trained_run
    result = tinygpt("train", "--out", out, "--resume", "--n-embd", 64, "--lr", 0.01)
    assert result.returncode == 2
    assert "n_embd: checkpoint 32, now 64" in result.stderr
    assert "lr: checkpoint 0.002, now 0.01" in result.stderr
    # found before any data is read or a tokenizer trained (the README's promise)
    result = tinygpt("train", "--out", out, "--resume", "--tokenizer", "bpe:300")
    assert result.returncode == 2 and "tokenizer: checkpoint 'char', now 'bpe:300'" in (
        result.stderr)
    assert "tinygpt train:" not in result.stdout and not list((out / "data").glob("*bpe*"))


def test_resume_that_would_train_nothing_is_refused(trained_run):
    out, _ = trained_run
    for steps in (4, 6):  # the run is at step 6
        result = tinygpt("train", "--out", out, "--resume", "--max-steps", steps)
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"already at step 6, and --max-steps is {steps}" in result.stderr
        assert "tinygpt train:" not in result.stdout  # before the data is read
        assert "Traceback" not in result.stderr and "UserWarning" not in result.stderr


def test_sample_refuses_a_tokenizer_bigger_than_the_model(trained_run, tmp_path):
    from tinygpt.tokenizer import BPETokenizer

    out, _ = trained_run
    big = tmp_path / "big.tok"  # 300 ids for a model of 65-ish characters
    BPETokenizer.train(load_text("builtin:shakespeare")[:20_000], 300).save(big)
    result = tinygpt("sample", "--ckpt", out, "--prompt", "RO", "--tokenizer", big)
    assert result.returncode == 2 and "the tokenizer has 300 tokens" in result.stderr
    result = tinygpt("sample", "--ckpt", out, "--prompt", "RO", "--max-new-tokens", -5)
    assert result.returncode == 2 and "max_new_tokens=-5 must be >= 0" in result.stderr


def test_an_existing_run_is_not_overwritten(trained_run):
    out, _ = trained_run
    result = tinygpt("train", "--out", out, *TINY)
    assert result.returncode == 2 and "already holds a run; pass --resume" in result.stderr


@pytest.mark.parametrize("content, message", [
    (None, "no such file or folder"),
    (b"", "the corpus is empty"),
    (b"caf\xe9\n" * 100, "not UTF-8 text (byte 3"),
    (b"too short\n" * 3, "fewer than one window"),
    (gzip.compress(b"to be or not to be\n" * 500)[:60], "damaged or truncated gzip"),
    (b"not gzip at all", "damaged or truncated gzip"),
])
def test_bad_data_gives_a_clear_error_and_leaves_nothing(tmp_path, content, message):
    data = tmp_path / ("corpus.txt.gz" if "gzip" in message else "corpus.txt")
    if content is not None:
        data.write_bytes(content)
    out = tmp_path / "runs" / "run"  # runs/ is made for this run too: it goes as well
    result = tinygpt("train", "--data", data, "--out", out, *TINY)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: ") and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.parent.exists()


def test_a_failed_run_never_removes_a_folder_it_did_not_make(tmp_path, text_file):
    """--out keep/sub/.. is keep itself: the missing keep/sub must not make keep look new
    (a failed run once removed keep and the user's file in it)."""
    keep = tmp_path / "keep"
    keep.mkdir()
    (keep / "user.txt").write_text("precious")
    result = tinygpt("train", "--data", text_file, *TINY, "--block-size", 100_000,
                     "--out", f"{keep}/sub/..")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (keep / "user.txt").read_text() == "precious"


def test_a_text_too_short_for_bpe_and_for_one_window_says_the_window(tmp_path):
    """BPE runs out of pairs on a tiny text; the text is also shorter than one window, and
    that is what the user must fix (a smaller vocabulary would not help)."""
    data = tmp_path / "short.txt"
    data.write_text("short text\n")
    result = tinygpt("train", "--data", data, "--out", tmp_path / "run", "--tokenizer",
                     "bpe:300", "--block-size", "16")
    assert result.returncode == 2
    assert "the training split has 11 bytes, fewer than one window" in result.stderr
    # long enough for a window, too short for the merges: the BPE error, with the flag to use
    data.write_text("ab\n" * 100)
    result = tinygpt("train", "--data", data, "--out", tmp_path / "run", "--tokenizer",
                     "bpe:300", "--block-size", "16")
    assert result.returncode == 2 and "a smaller N in 'bpe:N'" in result.stderr


def test_bad_settings_are_named(tmp_path, text_file):
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"n_layer": 2, "learning_rate": 0.1}))
    result = tinygpt("train", "--data", text_file, "--config", config, "--out", tmp_path / "a")
    assert result.returncode == 2 and "unknown setting(s) ['learning_rate']" in result.stderr
    result = tinygpt("train", "--data", text_file, "--out", tmp_path / "b", *TINY,
                     "--n-head", 3)
    assert result.returncode == 2 and "n_embd" in result.stderr and "n_head=3" in result.stderr
    result = tinygpt("train", "--data", text_file, "--out", tmp_path / "c", *TINY,
                     "--attention", "global,sparse")
    assert result.returncode == 2 and "'sparse'" in result.stderr
    result = tinygpt("train", "--data", text_file, "--out", tmp_path / "d", *TINY,
                     "--tokenizer", "no-such-file")
    assert result.returncode == 2 and "not 'char', 'bpe:N'" in result.stderr
    assert not any((tmp_path / d).exists() for d in "abcd")
    # bad model settings fail before the data is read (a corpus that does not exist)
    result = tinygpt("train", "--data", tmp_path / "missing.txt", "--out", tmp_path / "e",
                     *TINY, "--n-head", 3)
    assert result.returncode == 2 and "n_head=3" in result.stderr


@pytest.mark.parametrize("settings, named", [
    ({"beta1": "0.9"}, "beta1"), ({"dropout": "0.1"}, "dropout"),
    ({"data": None}, "data=None"), ({"tokenizer": 5}, "tokenizer=5"),
    ({"val_fraction": "0.1"}, "val_fraction"), ({"bias": "false"}, "bias"),
    ({"n_inner": 3.5}, "n_inner"), ({"lr": 1e999}, "lr"), ({"attention": ["global", 5]}, "5"),
    ({"sample_prompt": 5}, "sample_prompt"), ({"rope_theta": 0}, "rope_theta"),
])
def test_config_values_of_the_wrong_type_are_named(tmp_path, text_file, settings, named):
    config = tmp_path / "run.json"
    config.write_text(json.dumps(settings))  # 1e999 is written as Infinity
    out = tmp_path / "run"
    flags = ([] if "data" in settings else ["--data", text_file]) + (
        TINY[2:] if "tokenizer" in settings else TINY)  # flags would win over the file
    result = tinygpt("train", "--config", config, "--out", out, *flags)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert named in result.stderr and not out.exists()


def test_a_run_folder_setting_of_the_wrong_type_is_named():
    with pytest.raises(ValueError, match="out=5: must be a string"):
        build_configs({**DEFAULTS, "out": 5}, vocab_size=10)


def test_a_config_file_that_is_not_utf8_is_named(tmp_path, text_file):
    config = tmp_path / "run.json"
    config.write_bytes(b'{"lr": 0.001, "data": "caf\xe9"}')
    result = tinygpt("train", "--data", text_file, "--config", config, "--out", tmp_path / "r")
    assert result.returncode == 2 and "run.json: not UTF-8" in result.stderr


def test_resume_from_a_damaged_checkpoint_is_an_error_not_a_traceback(trained_run, tmp_path):
    out, _ = trained_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "checkpoint" / "trainer_state.json").write_text("{}")
    result = tinygpt("train", "--out", copy, "--resume", "--max-steps", "100")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trainer_state.json" in result.stderr or "damaged" in result.stderr, result.stderr
    # cut off mid-file: the weights are intact, so sampling works, and says so in a plain
    # line, not as a Python warning with its source line
    (copy / "checkpoint" / "trainer_state.json").write_text('{"step": ')
    result = tinygpt("sample", "--ckpt", copy, "--max-new-tokens", 5)
    assert result.returncode == 0
    assert result.stderr.startswith("warning: ") and "training state is ignored" in result.stderr
    assert "UserWarning" not in result.stderr


def test_a_run_without_a_last_checkpoint_is_not_overwritten(trained_run, tmp_path):
    out, _ = trained_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "checkpoint")  # killed before its first checkpoint/last
    result = tinygpt("train", "--out", copy, *TINY)
    assert result.returncode == 2 and "stopped before its first checkpoint" in result.stderr


def test_a_bad_kernel_choice_fails_before_any_work(tmp_path, text_file):
    env = {**ENV, "TINYGPT_KERNELS": "bogus"}
    result = subprocess.run([sys.executable, "-m", "tinygpt", "train", "--data", str(text_file),
                             "--out", str(tmp_path / "run"), *TINY], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "TINYGPT_KERNELS='bogus'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_help_lists_every_flag_with_its_default():
    result = tinygpt("train", "--help")
    text = " ".join(result.stdout.split())
    for name, _, default, _ in OPTIONS:
        assert "--" + name.replace("_", "-") in text
        if default is not None:
            assert f"(default: {default})" in text, name
    assert "--resume" in text and "--config" in text


def test_config_files_json_and_toml(tmp_path):
    baby = read_config(str(REPO / "examples" / "baby_gpt.json"))
    assert baby["tokenizer"] == "char" and baby["max_steps"] == 2000 and baby["beta2"] == 0.99
    toml = tmp_path / "run.toml"
    toml.write_text('tokenizer = "bpe:300"\nn_layer = 2\nattention = "local"\nlr = 3e-3\n')
    if sys.version_info >= (3, 11):
        assert read_config(str(toml)) == {"tokenizer": "bpe:300", "n_layer": 2,
                                          "attention": "local", "lr": 3e-3}
    with pytest.raises(DataError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{n_layer: 2}")
        read_config(str(tmp_path / "bad.json"))
    marked = tmp_path / "notepad.json"  # Windows Notepad starts UTF-8 files with a BOM
    marked.write_bytes(b"\xef\xbb\xbf" + b'{"n_layer": 2}')
    assert read_config(str(marked)) == {"n_layer": 2}


@pytest.mark.skipif(sys.version_info < (3, 11), reason="TOML needs tomllib (Python 3.11+)")
def test_the_default_toml_example_is_the_defaults():
    example = read_config(str(REPO / "examples" / "shakespeare_default.toml"))
    # None: computed (min_lr: lr / 10, what TrainConfig() holds)
    defaults = {**TrainConfig().to_dict(), **{k: v for k, v in DEFAULTS.items() if v is not None}}
    assert {k: defaults[k] for k in example} == example
    assert set(DEFAULTS) - {"out", "device"} <= set(example)


def test_more_user_mistakes_are_one_line_errors(trained_run, tmp_path, text_file):
    out, _ = trained_run
    result = tinygpt("sample", "--ckpt", out, "--tokenizer", tmp_path)  # a folder
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    afile = tmp_path / "afile"
    afile.write_text("x")
    result = tinygpt("train", "--data", text_file, "--out", afile, *TINY)
    assert result.returncode == 2 and "exists and is not a folder" in result.stderr
    result = tinygpt("train", "--data", text_file, "--out", tmp_path / "r", *TINY,
                     "--max-step", "3")  # an abbreviation of --max-steps: a typo, refused
    assert result.returncode == 2 and "unrecognized arguments: --max-step" in result.stderr
    assert "Traceback" not in result.stderr
    # named by the subcommand, with its own usage (its flags), not the top-level one
    assert "tinygpt train: error: unrecognized" in result.stderr
    assert "usage: tinygpt train" in result.stderr


def test_a_diverging_run_ends_with_its_message_not_numpy_warnings(tmp_path, text_file):
    result = tinygpt("train", "--data", text_file, "--out", tmp_path / "r", *TINY,
                     "--lr", "1e30", "--min-lr", "0", "--warmup-steps", "0", "--grad-clip", "0",
                     "--max-steps", "20")
    assert result.returncode == 1 and "became" in result.stderr
    assert "RuntimeWarning" not in result.stderr, result.stderr


def test_out_pointing_at_a_checkpoint_folder_is_refused(trained_run):
    # it trained a new run inside the checkpoint, and later resumes went back to its step
    out, _ = trained_run
    result = tinygpt("train", "--out", out / "checkpoint", "--resume", "--max-steps", 9)
    assert result.returncode == 2
    assert f"--out {out / 'checkpoint'} is a checkpoint folder" in result.stderr
    assert f"(here: {out})" in result.stderr and not (out / "checkpoint" / "data").exists()


def test_a_relative_data_path_resumes_from_another_folder(text_file, tmp_path):
    project, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    project.mkdir()
    elsewhere.mkdir()
    shutil.copy(text_file, project / "input.txt")
    (elsewhere / "input.txt").write_text("another text " * 3000)  # must not be taken for it

    def run(cwd, *args):
        return subprocess.run([sys.executable, "-m", "tinygpt", "train", *map(str, args)],
                              env=ENV, cwd=cwd, capture_output=True, text=True, timeout=120)

    out = tmp_path / "run"
    first = run(project, "--data", "input.txt", "--out", out, *TINY, "--max-steps", 2,
                "--eval-interval", 2, "--checkpoint-interval", 2)
    assert first.returncode == 0, first.stderr
    state = json.loads((out / "checkpoint" / "trainer_state.json").read_text())
    assert state["run_info"]["data"] == str((project / "input.txt").resolve())
    again = run(elsewhere, "--out", out, "--resume", "--max-steps", 3)
    assert again.returncode == 0 and "done: step 3" in again.stdout, again.stderr
    wrong = run(elsewhere, "--data", "input.txt", "--out", out, "--resume", "--max-steps", 4)
    assert wrong.returncode == 2 and "data: checkpoint" in wrong.stderr


def test_a_corpus_edited_between_sessions_is_refused_on_resume(text_file, tmp_path):
    data = tmp_path / "input.txt"
    text = text_file.read_text(encoding="utf-8")
    data.write_text(text, encoding="utf-8")
    out = tmp_path / "run"
    args = ("--out", out, *TINY, "--eval-interval", 2, "--checkpoint-interval", 2)
    assert tinygpt("train", "--data", data, *args, "--max-steps", 2).returncode == 0
    data.write_text(text + text[::-1], encoding="utf-8")  # the same characters, more text
    result = tinygpt("train", "--out", out, "--resume", "--max-steps", 4)
    assert result.returncode == 2, result.stdout
    assert "the training data changed since the checkpoint" in result.stderr


def test_a_path_with_spaces_is_quoted_in_the_suggested_commands(text_file, tmp_path):
    out = tmp_path / "my run"
    result = tinygpt("train", "--data", text_file, "--out", out, *TINY, "--max-steps", 2,
                     "--eval-interval", 2, "--checkpoint-interval", 2)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith(f"next: tinygpt sample --ckpt '{out}'")


def test_lr_alone_sets_min_lr_to_a_tenth(tmp_path, text_file):
    # --lr 1e-4 was refused: the fixed default min_lr 2e-4 exceeded it
    _, train = build_configs({**DEFAULTS, "lr": 1e-4}, vocab_size=65)
    assert train.min_lr == pytest.approx(1e-5) and TrainConfig().min_lr == pytest.approx(2e-4)
    result = tinygpt("train", "--data", text_file, "--out", tmp_path / "r", *TINY,
                     "--lr", "1e-4", "--max-steps", 1)
    assert result.returncode == 0, result.stderr
    assert "lr 0.0001 -> 1e-05" in result.stdout


def test_a_checkpoint_that_cannot_be_written_is_one_error_line(text_file, tmp_path, monkeypatch,
                                                               capsys):
    # a full disk ended in a traceback; now: the file, the reason, and how to go on
    import errno

    from tinygpt import cli
    from tinygpt import train as train_module

    def full_disk(self, kind="last"):
        raise OSError(errno.ENOSPC, "No space left on device",
                      str(self.out_dir / "checkpoint.tmp" / "optimizer.safetensors"))

    monkeypatch.setattr(train_module.Trainer, "save_checkpoint", full_disk)
    out = tmp_path / "run"
    code = cli.main(["train", "--data", str(text_file), "--out", str(out), *TINY,
                     "--max-steps", "2", "--eval-interval", "10"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "optimizer.safetensors: No space left on device (at step" in err
    assert f"tinygpt train --out {out} --resume" in err
