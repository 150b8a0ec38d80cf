"""Korean at the training level: jamo training that learns and samples valid Hangul, bits per
character that mean the same in both units, and the default unit (data-level cases such as
cp949 decoding, NFD and --max_vocab are in test_data.py)."""
from __future__ import annotations

import json
import math
import re
import subprocess
import unicodedata
from pathlib import Path

import numpy as np
import pytest

import dataset
import hangul
import train
from test_train import forget_saved, read_scalars, run_here, saved_arg, summary_events, tiny_text

ROOT = Path(__file__).resolve().parents[1]
KOREAN = (ROOT / "data" / "korean" / "constitution.txt").read_text(encoding="utf-8")
TINY = ["--num_layers", "1", "--rnn_size", "96", "--embedding_size", "24", "--batch_size", "16",
        "--seq_length", "32", "--warmup_steps", "5", "--print_every", "10", "--sample_length", "0",
        "--xla", "off"]  # the unit is under test here, not the compiled step: no 3 s compile per run


def run(script: str, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """train.py's or sample.py's main, run in this process (run_here)."""
    return run_here(script, *args, cwd=cwd)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def test_validation_bits_are_per_character_of_the_validation_text(tmp_path: Path) -> None:
    """A jamo symbol is a fraction of a syllable, and an English letter is a whole character: where the
    validation text's script differs from the training text's, its bits per character are its own
    characters' (a Korean body with an English tail: 0.4 and 1 character per symbol)."""
    english = ("the quick brown fox jumps over the lazy dog. " * 40)[:1000]
    corpus = write(tmp_path / "ko.txt", KOREAN[:9000] + english)
    result = run("train.py", tmp_path, "--input", str(corpus), "--unit", "jamo", "--val_frac", "0.1",
                 "--max_steps", "2", "--eval_every", "100", "--run_name", "mixed", *TINY)
    assert result.returncode == 0, result.stderr
    config = json.loads((tmp_path / "save" / "mixed" / "config.json").read_text(encoding="utf-8"))
    per_symbol = config["chars_per_symbol"]
    assert per_symbol["val"] == 1.0 and per_symbol["train"] < 0.6, per_symbol
    (nats, bpc), = re.findall(r"val loss (\d\.\d{4}) nats/symbol, (\d+\.\d{4}) bits/char", result.stderr)
    assert float(bpc) == pytest.approx(float(nats) / math.log(2), rel=1e-3), result.stderr


def test_jamo_training_learns_and_samples_valid_hangul(tmp_path: Path) -> None:
    corpus = write(tmp_path / "ko.txt", KOREAN)
    result = run("train.py", tmp_path, "--input", str(corpus), "--unit", "jamo", "--max_steps", "120",
                 "--eval_every", "60", "--learning_rate", "0.01", "--run_name", "ko", *TINY,
                 "--sample_length", "40")
    assert result.returncode == 0, result.stderr
    assert "jamo unit" in result.stderr and "bits/char" in result.stderr
    assert f"symbols for {len(KOREAN):,} characters (jamo unit" in result.stderr  # NFC text: a character each
    run_dir = tmp_path / "save" / "ko"
    config = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    assert config["args"]["unit"] == "jamo"

    # Bits per original character: a syllable is 2-3 jamo, so fewer characters than symbols.
    chars_per_symbol = config["chars_per_symbol"]
    assert 0.3 < chars_per_symbol["train"] < 0.6 and 0.3 < chars_per_symbol["val"] < 0.6, chars_per_symbol
    train_text = KOREAN[:len(KOREAN) - round(len(KOREAN) * config["args"]["val_frac"])]  # the cut is by characters
    assert chars_per_symbol["train"] == pytest.approx(len(train_text) / len(hangul.to_jamo(train_text)), rel=1e-12)
    val = re.findall(r"val loss (\d\.\d{4}) nats/symbol, (\d+\.\d{4}) bits/char", result.stderr)
    assert len(val) == 2, result.stderr
    for nats, bpc in val:  # evaluation counts the characters of the batches it reads: nearly all the split
        assert float(bpc) == pytest.approx(float(nats) / chars_per_symbol["val"] / math.log(2), rel=5e-3)

    scalars = read_scalars(tmp_path / "logs" / "ko")
    samples = [text.item().decode("utf-8").removeprefix("```\n") for _, text in scalars["sample"]]
    # TensorBoard's samples are --sample_length (40) characters, not symbols (they were ~18).
    assert [len(text.removesuffix("\n```")) for text in samples] == [40, 40], samples
    losses, train_loss = ([float(v) for _, v in scalars[tag]] for tag in ("train/bpc", "train/loss"))
    assert len(losses) == 120
    np.testing.assert_allclose(losses, np.array(train_loss) / chars_per_symbol["train"] / math.log(2), rtol=1e-5)
    assert np.mean(losses[-10:]) < np.mean(losses[:5]) - 1.0, losses  # bits per original character fell
    # Perplexity per original character too, and the speed in characters, not jamo, per second: a
    # step's characters over the time from the step before (as test_train's English run checks it).
    for (step, bpc), (_, perplexity) in zip(scalars["val/bpc"], scalars["val/perplexity"], strict=True):
        assert float(perplexity) == pytest.approx(2 ** float(bpc), rel=1e-5), step
    written = {step: event.wall_time for step, event in summary_events(tmp_path / "logs" / "ko")
               if event.summary.value[0].tag == "train/loss"}
    chars_per_step = 16 * 32 * chars_per_symbol["train"]
    shown = [chars_per_step / (written[step] - written[step - 1]) / float(rate)
             for step, rate in scalars["train/chars_per_sec"] if step - 1 != 60]  # not across the evaluation
    assert 0.75 < np.median(shown) < 1.1, shown

    sampled = run("sample.py", tmp_path, "--save_dir", str(run_dir), "--prime", "문", "-n", "300",
                  "--seed", "1", "--temperature", "0.5")
    assert sampled.returncode == 0, sampled.stderr
    text = sampled.stdout
    assert text.startswith("문") and len(text) == 1 + 300 + 1  # -n counts characters, not jamo; a line break
    assert unicodedata.is_normalized("NFC", text), ascii(text)
    assert not [c for c in text if "\u1100" <= c <= "\u11ff"], text  # every jamo recomposed into a syllable
    assert sum("\uac00" <= c <= "\ud7a3" for c in text) >= 50, text

    # --sample 2 under jamo: a word's whole first syllable is drawn (its initial, and the vowel after
    # it), the rest is the most likely: as model.generate does with the vocabulary's jamo kinds.
    import tensorflow as tf

    import model as model_lib
    vocab = dataset.Vocab.load(run_dir / "vocab.json")
    net = model_lib.CharRNN(model_lib.ModelConfig.from_dict(config["model"]))
    tf.train.Checkpoint(model=net).read(tf.train.latest_checkpoint(str(run_dir))).expect_partial()
    ids = model_lib.generate(net, tf.constant([vocab.encode("문 ")], tf.int32), 400, temperature=3.0, mode=2, seed=5,
                             space_id=vocab.symbols.index(" "), initial_ids=vocab.ids_of("initial"),
                             vowel_ids=vocab.ids_of("vowel"))
    want = vocab.decode([*vocab.encode("문 "), *ids.numpy()[0]])[:2 + 60]
    at_words = run("sample.py", tmp_path, "--save_dir", str(run_dir), "--prime", "문 ", "-n", "60", "--seed", "5",
                   "--temperature", "3", "--sample", "2")
    assert at_words.returncode == 0 and at_words.stdout == want + "\n", (at_words.stdout, want)


def bpc_of_a_uniform_model(vocab: dataset.Vocab, ids: np.ndarray) -> float:
    """What train.py reports for a model uniform over the vocabulary: ln V nats for every symbol,
    through train.py's own conversion and dataset.count_chars (the same path as its val/bpc)."""
    nats_per_symbol = math.log(vocab.size)
    return train.bits_per_char(nats_per_symbol, dataset.count_chars(vocab, ids) / len(ids))


def test_bits_per_character_mean_the_same_in_both_units(tmp_path: Path) -> None:
    text = KOREAN[:6000]
    # Independent counts: NFC characters; a syllable is 2 or 3 jamo (NFD splits it exactly so).
    jamo_text = "".join(unicodedata.normalize("NFD", c) if "\uac00" <= c <= "\ud7a3" else c for c in text)
    independent = {"char": (len(set(text)), len(text)), "jamo": (len(set(jamo_text)), len(jamo_text))}
    assert independent["jamo"][1] > 1.5 * len(text)
    path = write(tmp_path / "ko.txt", text)
    for unit, (vocab_size, symbols) in independent.items():
        corpus = dataset.prepare_corpus([path], dataset.DataOptions(unit=unit), cache_root=tmp_path / unit)
        assert (corpus.vocab.size, len(corpus.ids), corpus.num_chars) == (vocab_size, symbols, len(text))
        want = math.log(vocab_size) * symbols / len(text) / math.log(2)
        assert bpc_of_a_uniform_model(corpus.vocab, corpus.ids) == pytest.approx(want, rel=1e-12), unit
        # A window that starts mid-syllable (as validation batches may) counts the characters
        # that start in it: what is not a vowel or final jamo.
        shown = (jamo_text if unit == "jamo" else text)[1:1001]
        starts = sum(not ("\u1161" <= c <= "\u1175" or "\u11a8" <= c <= "\u11c2") for c in shown)
        assert dataset.count_chars(corpus.vocab, corpus.ids[1:1001]) == starts


def test_a_jamo_run_saved_before_the_character_split_keeps_its_validation(tmp_path: Path) -> None:
    """Validation is cut by characters now; a run whose config.json predates that (no val_split)
    resumes with its old cut by symbols, which its data position and best loss are for."""
    corpus = write(tmp_path / "ko.txt", KOREAN)
    prepared = dataset.prepare_corpus([corpus], dataset.DataOptions(unit="jamo"), cache_root=tmp_path / "cache")
    held_out = {by: len(prepared.split(0.05, by=by)[1]) for by in ("chars", "symbols")}
    assert held_out["chars"] != held_out["symbols"]
    first = run("train.py", tmp_path, "--input", str(corpus), "--unit", "jamo", "--max_steps", "4",
                "--eval_every", "4", "--run_name", "ko", *TINY)
    assert f"validation {held_out['chars']:,} symbols" in first.stderr, first.stderr
    assert "no Hangul syllables" not in first.stderr
    assert forget_saved(tmp_path / "save" / "ko", "val_split") == "chars"
    resumed = run("train.py", tmp_path, "--init_from", "save/ko", "--max_steps", "8")
    assert resumed.returncode == 0, resumed.stderr
    assert f"validation {held_out['symbols']:,} symbols" in resumed.stderr, resumed.stderr
    assert saved_arg(tmp_path / "save" / "ko", "val_split") == "symbols"


def test_eval_symbols_scores_the_same_characters_in_either_unit(tmp_path: Path) -> None:
    """--eval_symbols N scores the validation text's first N characters (and one more, the last one's
    target): under jamo the symbols of as many characters, the text a syllable run scores, so their
    val/bpc compare. A jamo run saved before (no eval_cut) keeps its cut of N symbols."""
    corpus = write(tmp_path / "ko.txt", KOREAN)
    prepared = dataset.prepare_corpus([corpus], dataset.DataOptions(unit="jamo"), cache_root=tmp_path / "cache")
    val_ids = prepared.split(0.05)[1]
    end = dataset.first_chars_end(prepared.vocab, val_ids, 301)
    assert dataset.count_chars(prepared.vocab, val_ids[:end]) == 301 and prepared.vocab.char_starts[val_ids[end]]
    syllables = dataset.prepare_corpus([corpus], dataset.DataOptions(), cache_root=tmp_path / "cache")
    assert (syllables.vocab.decode(syllables.split(0.05)[1][:301]) == prepared.vocab.decode(val_ids[:end])
            != prepared.vocab.decode(val_ids[:301]))
    first = run("train.py", tmp_path, "--input", str(corpus), "--unit", "jamo", "--max_steps", "2",
                "--eval_symbols", "300", "--run_name", "ko", *TINY)
    assert f"validation {end:,} symbols" in first.stderr, first.stderr
    assert forget_saved(tmp_path / "save" / "ko", "eval_cut") == "chars"
    resumed = run("train.py", tmp_path, "--init_from", "save/ko", "--max_steps", "3")
    assert resumed.returncode == 0, resumed.stderr
    assert "validation 301 symbols" in resumed.stderr, resumed.stderr
    assert saved_arg(tmp_path / "save" / "ko", "eval_cut") == "symbols"


def test_jamo_on_text_without_hangul_says_so(tmp_path: Path) -> None:
    corpus = write(tmp_path / "en.txt", tiny_text())
    # A validation text too short to train on ends the run right after the corpus is read.
    result = run("train.py", tmp_path, "--input", str(corpus), "--unit", "jamo", "--val_frac", "0.001", *TINY)
    assert "--unit jamo: the text has no Hangul syllables to split" in result.stderr, result.stderr
    assert result.returncode == 2 and "Traceback" not in result.stderr


def test_korean_trains_as_syllables_by_default_and_a_cp949_file_without_encoding(tmp_path: Path) -> None:
    corpus = write(tmp_path / "ko.txt", KOREAN)
    result = run("train.py", tmp_path, "--input", str(corpus), "--max_steps", "2", "--eval_every", "2",
                 "--run_name", "default", *TINY)
    assert result.returncode == 0, result.stderr
    assert "(char unit, vocabulary" in result.stderr
    saved = json.loads((tmp_path / "save" / "default" / "config.json").read_text(encoding="utf-8"))
    assert saved["args"]["unit"] == "char"  # a resumed run keeps the unit it was trained with

    legacy = write(tmp_path / "legacy.txt", KOREAN, "cp949")
    refused = run("train.py", tmp_path, "--input", str(legacy), "--max_steps", "2", *TINY)
    assert refused.returncode == 2
    assert "--encoding cp949" in refused.stderr and "Traceback" not in refused.stderr
    # --encoding belongs to the files: a run trained on them as cp949 goes on once they are UTF-8.
    trained = run("train.py", tmp_path, "--input", str(legacy), "--encoding", "cp949", "--max_steps", "2",
                  "--run_name", "legacy", *TINY)
    assert trained.returncode == 0, trained.stderr
    write(legacy, KOREAN)
    resumed = run("train.py", tmp_path, "--init_from", "save/legacy", "--encoding", "utf-8", "--max_steps", "3")
    assert resumed.returncode == 0 and "resumed" in resumed.stderr, resumed.stderr
