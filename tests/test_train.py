"""tinygpt.train: the loop, exact resume, atomic checkpoints, the NaN guard, sampling."""

import json
import math

import numpy as np
import pytest

import tinygpt
from tinygpt import train as train_module
from tinygpt.data import TokenDataset, load_text
from tinygpt.model import GPT, GPTConfig
from tinygpt.tokenizer import CharTokenizer
from tinygpt.train import (
    CheckpointMismatch,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    find_checkpoint,
    generate_text,
    load_checkpoint,
)

BLOCK = 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads (a busy machine makes idle ones spin)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    yield
    numba.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus():
    text = load_text("builtin:shakespeare")[:60_000]
    tok = CharTokenizer.train(text)
    ids = np.array(tok.encode(text), dtype=np.uint16)
    n = int(len(ids) * 0.9)
    return (TokenDataset(ids[:n], BLOCK, num_bytes=n),
            TokenDataset(ids[n:], BLOCK, num_bytes=len(ids) - n), tok)


def tiny_model(vocab_size, seed=0, **overrides):
    tinygpt.manual_seed(seed)
    config = dict(vocab_size=vocab_size, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32,
                  attention_layers=["global", "local"], window_size=8,
                  position_embedding="rope", dropout=0.1)
    return GPT(GPTConfig(**{**config, **overrides}))


def config(**overrides):
    base = dict(batch_size=4, max_steps=8, lr=3e-3, min_lr=3e-4, warmup_steps=2,
                eval_interval=3, eval_batches=2, checkpoint_interval=100, sample_tokens=0)
    return TrainConfig(**{**base, **overrides})


def params(model):
    return {name: p.data.copy() for name, p in model.named_parameters()}


def metric_rows(out_dir):
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


# -- the loop -----------------------------------------------------------------------------


def test_thirty_steps_lower_the_loss_and_write_the_run_folder(corpus, tmp_path):
    train, val, tok = corpus
    model = tiny_model(tok.vocab_size)
    trainer = Trainer(model, train, val, config(max_steps=30, eval_interval=10,
                                                checkpoint_interval=10, sample_tokens=20),
                      tokenizer=tok, out_dir=tmp_path, progress=False)
    before = trainer.evaluate()["val_loss"]
    summary = trainer.fit()
    assert summary["step"] == 30 and not summary["interrupted"]
    assert summary["val_loss"] < before - 0.3  # 4.2 (uniform over 65 chars) -> about 3.4
    rows = metric_rows(tmp_path)
    assert [r["step"] for r in rows] == list(range(1, 31))
    assert np.mean([r["train_loss"] for r in rows[-5:]]) < np.mean(
        [r["train_loss"] for r in rows[:5]]) - 0.3
    evals = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in evals] == [10, 20, 30]
    assert {"lr", "grad_norm", "tokens_per_s", "elapsed", "val_bpb", "sample"} <= set(evals[-1])
    # bits per byte: nats/token -> bits/token, and here one token is one byte
    assert evals[-1]["val_bpb"] == pytest.approx(evals[-1]["val_loss"] / math.log(2))
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "checkpoint" / "model.safetensors").exists()
    assert (tmp_path / "checkpoint-best" / "model.safetensors").exists()


def test_schedule_warms_up_then_decays_to_min_lr(corpus):
    train, val, tok = corpus
    rows = []
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=10, warmup_steps=4),
            progress=False, callback=lambda t, row: rows.append(row)).fit()
    lrs = [r["lr"] for r in rows]
    assert lrs[:4] == pytest.approx([3e-3 * k / 4 for k in (1, 2, 3, 4)])
    assert lrs[4] == pytest.approx(3e-3)  # the cosine starts at the peak
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))
    assert lrs[-1] > 3e-4 and config().lr_at(10) == pytest.approx(3e-4)


def test_grad_accumulation_matches_one_big_batch(corpus):
    # the sampler draws the same windows for one batch of 8 as for two batches of 4, so the
    # accumulated gradient is the big batch's, up to the order of float sums
    train, val, tok = corpus

    def first_step(batch_size, grad_accum):
        trainer = Trainer(tiny_model(tok.vocab_size, dropout=0.0), train, val,
                          config(batch_size=batch_size, grad_accum=grad_accum), progress=False)
        params = list(trainer.model.parameters())
        grads = []
        trainer.optimizer.step = lambda: grads.extend(p.grad.copy() for p in params)
        row = trainer.train_step()
        return row, grads

    big, big_grads = first_step(8, 1)
    accum, accum_grads = first_step(4, 2)
    assert accum["train_loss"] == pytest.approx(big["train_loss"], rel=1e-6)
    assert accum["grad_norm"] == pytest.approx(big["grad_norm"], rel=1e-5)
    for g_accum, g_big in zip(accum_grads, big_grads, strict=True):
        np.testing.assert_allclose(g_accum, g_big, rtol=1e-4, atol=1e-7)


def test_weight_decay_groups(corpus):
    train, val, tok = corpus
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, config(weight_decay=0.1),
                      progress=False)
    decay, no_decay = trainer.optimizer.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"])
    assert trainer.model.transformer.wte.weight in no_decay["params"]


# -- exact resume -------------------------------------------------------------------------


def test_resume_gives_bit_identical_parameters_and_losses(corpus, tmp_path):
    train, val, tok = corpus
    cfg = dict(max_steps=8, grad_accum=2, eval_interval=3, checkpoint_interval=2)
    straight = Trainer(tiny_model(tok.vocab_size), train, val, config(**cfg), tokenizer=tok,
                       out_dir=tmp_path / "straight", progress=False)
    straight.fit()

    def stop_at_5(trainer, row):
        if row["step"] == 5:
            trainer.stop()

    first = Trainer(tiny_model(tok.vocab_size), train, val, config(**cfg), tokenizer=tok,
                    out_dir=tmp_path / "split", progress=False, callback=stop_at_5)
    summary = first.fit()
    assert summary["interrupted"] and summary["step"] == 5
    tinygpt.manual_seed(12345)  # a fresh process: other weights, another global RNG state
    second = Trainer(tiny_model(tok.vocab_size, seed=99), train, val, config(**cfg),
                     tokenizer=tok, out_dir=tmp_path / "split", progress=False)
    second.resume()
    assert second.step == 5
    assert second.fit()["step"] == 8

    a, b = params(straight.model), params(second.model)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    keys = ("step", "train_loss", "lr", "grad_norm", "val_loss")
    rows_a = [{k: r.get(k) for k in keys} for r in metric_rows(tmp_path / "straight")]
    rows_b = [{k: r.get(k) for k in keys} for r in metric_rows(tmp_path / "split")]
    assert rows_a == rows_b  # 8 rows each: the resumed run's log continues, no duplicates


def test_resume_drops_metrics_logged_after_the_checkpoint(corpus, tmp_path):
    train, val, tok = corpus
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=6),
            out_dir=tmp_path, progress=False).fit()
    with (tmp_path / "metrics.jsonl").open("a") as f:  # logged past the checkpoint, then died
        f.write('{"step": 5, "train_loss": 1.0}\n{"step": 6, "trai')
    trainer = Trainer(tiny_model(tok.vocab_size), train, val,
                      config(max_steps=6, lr_decay_steps=6), out_dir=tmp_path, progress=False)
    trainer.resume()
    assert [r["step"] for r in metric_rows(tmp_path)] == [1, 2, 3, 4]
    trainer.fit()
    assert [r["step"] for r in metric_rows(tmp_path)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.parametrize("change, named", [
    (dict(model=dict(n_embd=64, n_head=2)), "n_embd: checkpoint 32, now 64"),
    (dict(train=dict(lr=1e-2)), "lr: checkpoint 0.003, now 0.01"),
    (dict(run_info={"data": "other.txt"}), "data: checkpoint 'a.txt', now 'other.txt'"),
])
def test_resume_refuses_a_different_configuration(corpus, tmp_path, change, named):
    train, val, tok = corpus
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2), out_dir=tmp_path,
            progress=False, run_info={"data": "a.txt"}).fit()
    other = Trainer(tiny_model(tok.vocab_size, **change.get("model", {})), train, val,
                    config(max_steps=4, **change.get("train", {})), out_dir=tmp_path,
                    progress=False, run_info=change.get("run_info", {"data": "a.txt"}))
    with pytest.raises(CheckpointMismatch, match="cannot resume") as e:
        other.resume()
    assert named in str(e.value)


def test_resume_accepts_more_steps(corpus, tmp_path):
    train, val, tok = corpus
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2, lr_decay_steps=8),
            out_dir=tmp_path, progress=False).fit()
    more = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=8),
                   out_dir=tmp_path, progress=False)
    more.resume()
    assert more.fit()["step"] == 4


def test_resume_a_checkpoint_from_before_a_config_field_existed(corpus, tmp_path):
    """A checkpoint written by an older tinygpt lacks newer GPTConfig fields (here
    scale_attn_by_inverse_layer_idx): they mean their defaults, so it resumes. A key this
    version does not know is refused, naming it."""
    train, val, tok = corpus
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2, lr_decay_steps=8),
            out_dir=tmp_path, progress=False).fit()
    path = tmp_path / "checkpoint" / "config.json"
    saved = json.loads(path.read_text())
    del saved["tinygpt"]["scale_attn_by_inverse_layer_idx"]
    path.write_text(json.dumps(saved))
    more = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=8),
                   out_dir=tmp_path, progress=False)
    more.resume()
    assert more.fit()["step"] == 4
    saved["tinygpt"]["from_the_future"] = 1
    path.write_text(json.dumps(saved))
    later = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=6, lr_decay_steps=8),
                    out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointMismatch, match="from_the_future"):
        later.resume()


def test_resume_refuses_a_different_tokenizer(corpus, tmp_path):
    """An edited corpus retrains BPE (or changes the characters): the run's token ids would
    mean other tokens, so the checkpoint's tokenizer must be the one in use."""
    train, val, tok = corpus
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2, lr_decay_steps=8),
            tokenizer=tok, out_dir=tmp_path, progress=False).fit()
    chars = sorted(tok.chars)
    other = CharTokenizer(chars[1:] + ["\u00e9"])  # same size, one character swapped
    assert other.vocab_size == tok.vocab_size
    later = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=8),
                    tokenizer=other, out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointMismatch, match="tokenizer differs"):
        later.resume()
    same = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=8),
                   tokenizer=CharTokenizer(chars), out_dir=tmp_path, progress=False)
    same.resume()  # an equal tokenizer (rebuilt from the same text) resumes
    assert same.step == 2
    (tmp_path / "checkpoint" / "tokenizer.json").rename(tmp_path / "checkpoint" / "tokenizer.tok")
    with pytest.raises(CheckpointMismatch, match="a different kind"):  # e.g. BPE, now char
        Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=8),
                tokenizer=tok, out_dir=tmp_path, progress=False).resume()


@pytest.mark.parametrize("damage", [
    ("trainer_state.json", "{}"), ("trainer_state.json", "[]"), ("trainer_state.json", "{oops"),
    ("trainer_state.json", "step"), ("config.json", '{"model_type": "gpt2"}'),
    ("optimizer_steps", None), ("data_rng_state", None), ("rng_state", None),
    ("param_groups", None),
])
def test_resume_from_a_damaged_checkpoint_names_it(corpus, tmp_path, damage):
    train, val, tok = corpus
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2, lr_decay_steps=8),
            out_dir=tmp_path, progress=False).fit()
    folder = tmp_path / "checkpoint"
    name, text = damage
    state = json.loads((folder / "trainer_state.json").read_text())
    if name == "optimizer_steps":  # a state that names a parameter group entry that is not there
        state["optimizer"]["steps"]["999"] = 3
        (folder / "trainer_state.json").write_text(json.dumps(state))
    elif name in ("data_rng_state", "rng_state"):  # fails only when applied: checked first
        state[name] = {"bit_generator": "PCG64", "state": "x"} if name == "data_rng_state" \
            else "garbage"
        (folder / "trainer_state.json").write_text(json.dumps(state))
    elif name == "param_groups":  # one parameter fewer in a group: the optimizer refuses
        state["optimizer"]["param_groups"][0]["params"].pop()
        (folder / "trainer_state.json").write_text(json.dumps(state))
    elif text == "step":
        state = json.loads((folder / "trainer_state.json").read_text())
        state["step"] = "four"
        (folder / "trainer_state.json").write_text(json.dumps(state))
    else:
        (folder / name).write_text(text)
    later = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=8),
                    out_dir=tmp_path, progress=False)
    before = params(later.model)
    with pytest.raises(CheckpointMismatch) as e:
        later.resume()
    assert str(folder) in str(e.value)
    assert later.step == 0 and all(np.array_equal(v, params(later.model)[k])
                                   for k, v in before.items())  # nothing half-restored


def test_sample_prompt_is_checked_before_training(corpus):
    train, val, _ = corpus
    text = load_text("builtin:shakespeare")[:20_000].replace("\n", " ")
    tok = CharTokenizer.train(text)  # no newline: the default prompt cannot be encoded
    ids = np.array(tok.encode(text), dtype=np.uint16)
    data = TokenDataset(ids, BLOCK)
    trainer = Trainer(tiny_model(tok.vocab_size), data, data,
                      config(max_steps=3, eval_interval=3, sample_tokens=5), tokenizer=tok,
                      progress=False)
    assert trainer.fit()["step"] == 3  # sampled from the first character of the data instead
    with pytest.raises(ValueError, match=r"sample_prompt='\u20ac' cannot be encoded"):
        Trainer(tiny_model(tok.vocab_size), data, data,
                config(sample_tokens=5, sample_prompt="\u20ac"), tokenizer=tok)
    for prompt in (5, ""):
        with pytest.raises(ValueError, match="sample_prompt"):
            config(sample_tokens=5, sample_prompt=prompt)
    config(sample_tokens=0, sample_prompt="")  # no samples: no prompt needed
    with pytest.raises(ValueError, match="tokens but the model's vocab_size"):
        Trainer(tiny_model(tok.vocab_size - 1), data, data, config(sample_tokens=5),
                tokenizer=tok)  # sampling would index past the embeddings at the first eval


# -- checkpoints --------------------------------------------------------------------------


def test_checkpoint_is_a_hugging_face_folder_without_pickle(corpus, tmp_path):
    train, val, tok = corpus
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=3),
                      tokenizer=tok, out_dir=tmp_path, progress=False)
    trainer.fit()
    folder = tmp_path / "checkpoint"
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json", "model.safetensors", "optimizer.safetensors", "tokenizer.json",
        "trainer_state.json"]
    for p in folder.iterdir():
        assert p.read_bytes()[:1] != b"\x80", f"{p.name} looks like a pickle"
    model, tokenizer, state = load_checkpoint(tmp_path)
    assert all(np.array_equal(a, params(trainer.model)[k]) for k, a in params(model).items())
    assert tokenizer.chars == tok.chars and state["step"] == 3
    assert state["train_config"]["max_steps"] == 3
    assert np.array_equal(GPT.from_pretrained(folder).transformer.wte.weight.data,
                          trainer.model.transformer.wte.weight.data)


def test_a_crash_between_the_renames_leaves_a_loadable_checkpoint(corpus, tmp_path,
                                                                  monkeypatch):
    train, val, tok = corpus
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=4, lr_decay_steps=8),
                      tokenizer=tok, out_dir=tmp_path, progress=False)
    trainer.fit()
    at_step_4 = params(trainer.model)
    trainer.config.max_steps = 5
    trainer.train_step()
    real_replace = train_module.os.replace

    def replace(src, dst):  # checkpoint -> checkpoint.old is done; the next rename dies
        if str(src).endswith("checkpoint.tmp"):
            raise OSError("killed")
        real_replace(src, dst)

    monkeypatch.setattr(train_module.os, "replace", replace)
    with pytest.raises(OSError, match="killed"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    assert not (tmp_path / "checkpoint").exists()
    assert find_checkpoint(tmp_path) == tmp_path / "checkpoint.old"
    model, _, state = load_checkpoint(tmp_path)
    assert state["step"] == 4
    assert all(np.array_equal(a, at_step_4[k]) for k, a in params(model).items())
    resumed = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=5, lr_decay_steps=8),
                      out_dir=tmp_path, progress=False)
    resumed.resume()
    assert resumed.step == 4
    resumed.fit()
    assert (tmp_path / "checkpoint").exists() and not (tmp_path / "checkpoint.old").exists()


def test_a_crash_while_saving_keeps_the_previous_checkpoint(corpus, tmp_path, monkeypatch):
    train, val, tok = corpus
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2),
                      out_dir=tmp_path, progress=False)
    trainer.fit()
    before = params(trainer.model)
    trainer.config.max_steps = 3
    trainer.train_step()
    real_save = train_module.save_file

    def crash(tensors, path, metadata=None):
        real_save(tensors, path, metadata)
        path.write_bytes(path.read_bytes()[:100])  # half a file, then the process dies
        raise OSError("disk full")

    monkeypatch.setattr(train_module, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint()
    monkeypatch.undo()
    model, _, state = load_checkpoint(tmp_path)
    assert state["step"] == 2
    assert all(np.array_equal(a, before[k]) for k, a in params(model).items())
    assert not (tmp_path / "checkpoint.tmp").exists()  # no half-written folder left behind


def test_trainer_state_is_strict_json_before_the_first_evaluation(corpus, tmp_path):
    # best_val_loss is inf until an evaluation: it was written as Infinity, not JSON
    train, val, tok = corpus
    trainer = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2),
                      out_dir=tmp_path, progress=False)
    trainer.train_step()
    trainer.save_checkpoint()  # a run stopped before its first evaluation

    def strict(token):
        raise ValueError(f"not JSON: {token}")

    state = json.loads((tmp_path / "checkpoint" / "trainer_state.json").read_text(),
                       parse_constant=strict)
    assert state["best_val_loss"] is None
    again = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=3),
                    out_dir=tmp_path, progress=False)
    again.resume()
    assert again.step == 1 and again.best_val_loss == math.inf


def test_resume_refuses_other_training_data(corpus, tmp_path):
    train, val, tok = corpus
    Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=2, checkpoint_interval=2),
            out_dir=tmp_path, progress=False).fit()
    ids = train.ids.copy()
    ids[5] = (ids[5] + 1) % tok.vocab_size  # one token differs, same length
    other = TokenDataset(ids, BLOCK, num_bytes=train.num_bytes)
    trainer = Trainer(tiny_model(tok.vocab_size), other, val, config(max_steps=3),
                      out_dir=tmp_path, progress=False)
    with pytest.raises(CheckpointMismatch, match="the training data changed"):
        trainer.resume()
    same = Trainer(tiny_model(tok.vocab_size), train, val, config(max_steps=3),
                   out_dir=tmp_path, progress=False)
    assert same.resume()["step"] == 2


# -- guards -------------------------------------------------------------------------------


def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(corpus, tmp_path):
    train, val, tok = corpus

    def poison(trainer, row):
        if row["step"] == 3:
            trainer.model.transformer.wte.weight.data[:] = np.nan

    trainer = Trainer(tiny_model(tok.vocab_size), train, val,
                      config(max_steps=10, checkpoint_interval=2), out_dir=tmp_path,
                      progress=False, callback=poison)
    with pytest.raises(TrainingDiverged, match=r"the loss became nan at step 4") as e:
        trainer.fit()
    assert str(tmp_path / "checkpoint") in str(e.value)
    model, _, state = load_checkpoint(tmp_path)
    assert state["step"] == 2
    assert np.isfinite(model.transformer.wte.weight.data).all()


def test_train_config_names_bad_and_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown TrainConfig key\(s\) \['learning_rate'\]"):
        TrainConfig.from_dict({"learning_rate": 1e-3})
    with pytest.raises(ValueError, match="TrainConfig.batch_size=0: must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="TrainConfig.min_lr=0.1: must not exceed lr"):
        TrainConfig(lr=0.01, min_lr=0.1)
    with pytest.raises(ValueError, match=r"TrainConfig.beta2=1.0: must be a number in \[0, 1\)"):
        TrainConfig(beta2=1.0)
    for bad in (dict(beta1="0.9"), dict(lr=float("inf")), dict(lr_decay_steps=True)):
        with pytest.raises(ValueError, match=f"TrainConfig.{next(iter(bad))}="):
            TrainConfig(**bad)


def test_trainer_rejects_windows_longer_than_the_model(corpus):
    train, val, tok = corpus
    long = TokenDataset(train.ids, block_size=BLOCK * 2)
    with pytest.raises(ValueError, match="longer than the model's block_size 16"):
        Trainer(tiny_model(tok.vocab_size), long, val, config())


# -- sampling -----------------------------------------------------------------------------


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_generate_text_is_seeded_and_runs_past_the_block_size(corpus, positions):
    _, _, tok = corpus
    model = tiny_model(tok.vocab_size, position_embedding=positions)
    a = "".join(generate_text(model, tok, "ROMEO:", 3 * BLOCK, seed=7))
    b = "".join(generate_text(model, tok, "ROMEO:", 3 * BLOCK, seed=7))
    c = "".join(generate_text(model, tok, "ROMEO:", 3 * BLOCK, seed=8))
    assert a == b != c and len(a) == 3 * BLOCK


def test_generate_text_streams_whole_characters():
    from tinygpt.tokenizer import BPETokenizer

    tok = BPETokenizer.train("bytes only", 256)  # no merges: token i is the byte i
    model = tiny_model(tok.vocab_size, dropout=0.0, block_size=64)  # untrained: ~uniform
    prompt = tok.encode("\u00e9")
    ids = model.generate(np.array([prompt]), 40, temperature=1.0, top_k=None, seed=3)
    new = bytes(ids[0, len(prompt):].tolist())
    pieces = list(generate_text(model, tok, "\u00e9", 40, temperature=1.0, top_k=None, seed=3))
    assert "".join(pieces) == new.decode("utf-8", errors="replace")
    assert len(pieces) < 40  # the first bytes of multi-byte characters were held back


def test_a_hugging_face_folder_with_its_tokenizers_json_loads_without_a_tokenizer(tmp_path):
    # a real HF folder has the tokenizers library's tokenizer.json: it was read as a char
    # tokenizer and failed, so sample/viz could not use the folder even with --tokenizer
    GPT(GPTConfig(vocab_size=50, block_size=8, n_layer=1, n_head=1, n_embd=8)).save_pretrained(
        tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps(
        {"version": "1.0", "truncation": None, "model": {"type": "BPE", "vocab": {}}}, indent=2))
    model, tokenizer, state = load_checkpoint(tmp_path)
    assert tokenizer is None and state == {} and model.config.vocab_size == 50
