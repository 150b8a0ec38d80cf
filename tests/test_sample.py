"""sample.py against a tiny trained run: its main in the test process (sample_here), and real
processes where the process matters (environment, locale, closed streams, a second process's text)."""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import numpy as np
import pytest

import dataset
import hangul
import plan
import utils
import sample as sample_script
from test_data import JAMO_TRICKY
from test_train import ROOT, TINY, run_here, tiny_text


# A line of TensorFlow's C++ logging ("E0000 00:00:1796309554.692887 8114 util.cc:131] ..."):
# users see our messages only, unless they ask for --verbose.
TF_CPP_LOG_LINE = re.compile(r"^[IWEF]\d{4} ", re.MULTILINE)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A tiny LSTM trained on English with a little Korean, so primes can be Korean."""
    root = tmp_path_factory.mktemp("sample")
    (root / "tiny.txt").write_text(tiny_text() + "문 법 문장 문서\n" * 20, encoding="utf-8")
    result = subprocess.run([sys.executable, str(ROOT / "train.py"), "--input", "tiny.txt", "--max_steps", "40",
                             "--eval_every", "20", "--learning_rate", "0.01", "--run_name", "tiny", *TINY],
                            cwd=root, capture_output=True, text=True, encoding="utf-8", timeout=300)
    assert result.returncode == 0, result.stderr
    assert not TF_CPP_LOG_LINE.search(result.stderr), result.stderr
    return root / "save" / "tiny"


def sample(run: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "sample.py"), "--save_dir", str(run), *args],
                          capture_output=True, timeout=120, env=env)


def sample_here(run: Path, *args: str) -> subprocess.CompletedProcess:
    """sample.py's main run in this process (run_here), its output as bytes, as sample() gives them."""
    ran = run_here("sample.py", "--save_dir", str(run), *args, cwd=Path.cwd())
    return subprocess.CompletedProcess(ran.args, ran.returncode, ran.stdout.encode(), ran.stderr.encode())


def text(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr.decode("utf-8", "replace")
    return result.stdout.decode("utf-8")


def test_same_seed_same_text_and_streaming_continues_one_stream(run_dir: Path) -> None:
    first = text(sample_here(run_dir, "-n", "700", "--seed", "5"))
    assert first != text(sample_here(run_dir, "-n", "700", "--seed", "6"))
    assert first != text(sample_here(run_dir, "-n", "700", "--seed", str(5 + 2**32)))  # all 64 bits count
    # A second process with the same seed repeats the text: 600 characters, streamed in chunks, are
    # the start of the 700.
    assert first.startswith(text(sample(run_dir, "-n", "600", "--seed", "5")).rstrip("\n"))
    assert sample_script.chosen_seed(0) == 0 and sample_script.chosen_seed(None) != sample_script.chosen_seed(None)
    # Without --seed, the seed drawn is said, so that a sample worth keeping can be written again.
    drawn = sample_here(run_dir, "-n", "300")
    seed = re.search(r"seed (\d+) \(--seed \1 writes this text again\)", drawn.stderr.decode())[1]
    assert text(sample_here(run_dir, "-n", "300", "--seed", seed)) == text(drawn)


def test_top_k_1_and_cold_temperature_equal_argmax(run_dir: Path) -> None:
    greedy = text(sample_here(run_dir, "-n", "200", "--sample", "0", "--prime", "the "))
    assert greedy.startswith("the ") and len(greedy) == len("the ") + 200 + 1  # and a line break
    assert text(sample_here(run_dir, "-n", "0", "--prime", "the ")) == "the \n"  # the prime alone, as the old tool
    two = text(sample_here(run_dir, "-n", "0", "--prime", "the ", "--num_samples", "2"))
    assert two == "the \n---\nthe \n"  # each sample
    assert text(sample_here(run_dir, "-n", "200", "--top_k", "1", "--seed", "3", "--prime", "the ")) == greedy
    assert text(sample_here(run_dir, "-n", "200", "--top_p", "1e-6", "--seed", "4", "--prime", "the ")) == greedy
    assert text(sample_here(run_dir, "-n", "200", "--temperature", "1e-4", "--seed", "9", "--prime", "the ")) == greedy
    # 0 is that limit, as the SavedModel's generate(temperature=0) takes it (it was refused here).
    assert text(sample_here(run_dir, "-n", "200", "--temperature", "0", "--prime", "the ")) == greedy


def test_samples_come_from_the_weight_average(run_dir: Path) -> None:
    """The checkpoint holds the weight average as model/ and the trained weights as trained_model/:
    sample.py, and the exports that load through it, write with the average."""
    import tensorflow as tf

    import model as model_lib
    config = model_lib.ModelConfig.from_dict(json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["model"])
    vocab = dataset.Vocab.load(run_dir / "vocab.json")
    prime = tf.constant([vocab.encode("the ")], tf.int32)
    sampled, nets = {}, {}
    for name in ("model", "trained_model"):
        nets[name] = net = model_lib.CharRNN(config)
        tf.train.Checkpoint(**{name: net}).read(tf.train.latest_checkpoint(str(run_dir))).expect_partial()
        sampled[name] = "the " + vocab.decode(model_lib.generate(net, prime, 200, seed=3).numpy()[0])
    assert sampled["model"] != sampled["trained_model"]  # else this test tells nothing
    assert text(sample_here(run_dir, "-n", "200", "--seed", "3", "--temperature", "1", "--top_k", "0", "--top_p", "1",
                            "--prime", "the ")) == sampled["model"] + "\n"
    # A one-character prime is fed alone, not after the line break that starts a sample without one
    # (whose state differs, and with it the text, for some seeds).
    prime = tf.constant([vocab.encode("t")], tf.int32)
    for seed in range(1, 5):
        alone = "t" + vocab.decode(model_lib.generate(nets["model"], prime, 400, seed=seed).numpy()[0])
        assert text(sample_here(run_dir, "-n", "400", "--seed", str(seed), "--prime", "t")) == alone + "\n", seed


def test_sample_2_samples_only_at_word_starts(run_dir: Path) -> None:
    """char-rnn's --sample 2: the most likely character, except right after a space."""
    sampled = ["--temperature", "5", "--seed", "1"]
    argmax = sample_here(run_dir, "-n", "200", "--sample", "0", *sampled, "--prime", "the")
    greedy = text(argmax)
    assert b"--temperature, --seed: no effect under --sample 0" in argmax.stderr, argmax.stderr
    at_words = text(sample_here(run_dir, "-n", "200", "--sample", "2", *sampled, "--prime", "the"))
    first_space = greedy.index(" ", len("the"))
    assert at_words[:first_space + 1] == greedy[:first_space + 1]  # no sampling before the first space
    assert at_words != greedy  # at this temperature a word start differs somewhere


def test_no_tensorflow_log_lines_unless_verbose(run_dir: Path) -> None:
    # TensorFlow's oneDNN kernels log an ERROR line for any integer transpose outside XLA
    # (the prime's ids here), even on the AVX-512 machines they claim to need; it is not an error.
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    quiet = sample(run_dir, "-n", "20", "--prime", "the", env=env)
    assert text(quiet) and not TF_CPP_LOG_LINE.search(quiet.stderr.decode("utf-8")), quiet.stderr
    verbose = sample(run_dir, "-n", "20", "--prime", "the", "--verbose", env=env)
    assert text(verbose) and TF_CPP_LOG_LINE.search(verbose.stderr.decode("utf-8"))


def test_num_samples_are_one_batch_of_different_texts(run_dir: Path) -> None:
    out = text(sample_here(run_dir, "-n", "100", "--num_samples", "3", "--seed", "1", "--prime", "the"))
    samples = out.removesuffix("\n").split("\n---\n")  # a sample may end in a line break of its own
    assert len(samples) == 3 and len(set(samples)) == 3
    assert all(s.startswith("the") and len(s) == 103 for s in samples)


def test_streamed_jamo_decode_as_the_whole_at_any_chunk_boundary() -> None:
    """Syllables, original jamo and their escape split across chunks come out as decoding the
    whole sequence at once gives them, row by row."""
    jamo = hangul.to_jamo("\n".join(JAMO_TRICKY) + "한국어 문장을 한다")
    symbols = sorted(set(jamo))
    vocab = dataset.Vocab(symbols, [1] * len(symbols), unit="jamo")
    rows = [[symbols.index(c) for c in jamo], [symbols.index(c) for c in reversed(jamo)]]
    for size in range(1, 8):
        chunks = ([row[start:start + size] for row in rows] for start in range(0, len(jamo), size))
        pieces = list(sample_script.stream_texts(vocab, chunks))
        for r, row in enumerate(rows):
            assert "".join(texts[r] for texts in pieces) == vocab.decode(row), (size, r)
    # Jamo soup, as an untrained model writes it (escapes too): the same at every boundary, and the
    # text keeps coming (holding back every trailing jamo once never ended a model that wrote only jamo).
    soup = np.random.default_rng(0).choice([i for i, c in enumerate(symbols) if "\u1100" <= c <= "\u11ff"
                                            or c == "\ufdd0"], size=(2, 600)).tolist()
    for size in (1, 2, 3, 5, 8):
        pieces = list(sample_script.stream_texts(vocab, ([row[i:i + size] for row in soup]
                                                         for i in range(0, 600, size))))
        for r, row in enumerate(soup):
            assert "".join(texts[r] for texts in pieces) == vocab.decode(row), (size, r)
            streamed = "".join(texts[r] for texts in pieces[:len(range(0, 600, size))])  # before the final flush
            assert len(streamed) >= len(vocab.decode(row)) - 2, (size, r)
    # Characters decode as they are: nothing waits, jamo or not (NFD text under --normalize none).
    chars = dataset.Vocab(symbols, [1] * len(symbols), unit="char")
    assert [t[0] for t in sample_script.stream_texts(chars, [[soup[0][:5]], [soup[0][5:9]]])] == [
        "".join(symbols[i] for i in soup[0][:5]), "".join(symbols[i] for i in soup[0][5:9])]
    # The prime decodes with what follows: a final consonant added to its last syllable joins it.
    prime = [symbols.index(c) for c in hangul.to_jamo("하")]
    chunk = [[symbols.index(c) for c in "\u11ab" + hangul.to_jamo("다")]]
    assert "".join(texts[0] for texts in sample_script.stream_texts(vocab, [chunk], prime)) == "한다"


def test_checkpoint_by_path_file_or_name(run_dir: Path) -> None:
    for which in ("ckpt-40", str(run_dir / "ckpt-40"), str(run_dir / "ckpt-40.index"),
                  str(run_dir / "ckpt-40.data-00000-of-00001")):
        assert sample_script.checkpoint_prefix(run_dir, which) == str(run_dir / "ckpt-40"), which
    latest = text(sample_here(run_dir, "-n", "50", "--seed", "4"))
    by_file = sample_here(run_dir, "-n", "50", "--seed", "4", "--checkpoint", str(run_dir / "ckpt-40.index"))
    assert text(by_file) == latest
    (best,) = (run_dir / "best").glob("ckpt-*.index")  # a path inside the run, from anywhere
    from_best = sample_here(run_dir, "-n", "50", "--seed", "4", "--checkpoint", "best", "--verbose")
    assert f"loaded {run_dir / 'best' / best.stem}\n" in from_best.stderr.decode("utf-8")  # best/'s, not the run's
    assert text(sample_here(run_dir, "-n", "50", "--seed", "4", "--checkpoint", f"best/{best.stem}")) == text(from_best)
    with pytest.raises(utils.CharRNNError, match=r"--checkpoint ckpt-41: no such checkpoint .*\(ckpt-40\)"):
        sample_script.checkpoint_prefix(run_dir, "ckpt-41")
    # -n 0 writes the prime alone without loading a checkpoint, but a mistyped one is told all the same.
    mistyped = sample_here(run_dir, "-n", "0", "--prime", "the", "--checkpoint", "ckpt-41")
    assert mistyped.returncode == 2 and b"--checkpoint ckpt-41: no such checkpoint" in mistyped.stderr
    assert text(sample_here(run_dir, "-n", "0", "--prime", "the", "--checkpoint", "ckpt-40")) == "the\n"


def test_stdout_closed_or_without_spaces_for_sample_2(run_dir: Path, tmp_path: Path) -> None:
    closed = subprocess.run(["bash", "-c", '"$0" "$1" --save_dir "$2" -n 5 >&-', sys.executable,
                             str(ROOT / "sample.py"), str(run_dir)], capture_output=True, timeout=120)
    assert closed.returncode == 2 and b"standard output is closed" in closed.stderr and b"Traceback" not in closed.stderr
    # --sample 2 samples after a space: a vocabulary without one (the space renamed here) is told.
    spaceless = tmp_path / "spaceless"
    shutil.copytree(run_dir, spaceless)
    vocab = spaceless / "vocab.json"
    vocab.write_text(vocab.read_text(encoding="utf-8").replace('[" ",', '["_",'), encoding="utf-8")
    result = sample_here(spaceless, "-n", "20", "--sample", "2")
    assert "--sample 2 samples only after a space" in result.stderr.decode("utf-8") and len(text(result)) == 21


def test_stderr_closed_and_the_long_spelling_of_n(run_dir: Path) -> None:
    """With stderr closed the sample is still written (not a hidden traceback), and --n is -n,
    not an abbreviation of --num_samples."""
    closed = subprocess.run(["bash", "-c", '"$0" "$1" --save_dir "$2" --n 7 --seed 3 2>&-', sys.executable,
                             str(ROOT / "sample.py"), str(run_dir)], capture_output=True, timeout=120)
    assert text(closed) == text(sample_here(run_dir, "-n", "7", "--seed", "3")) and len(text(closed)) == 8


def test_save_dir_as_its_latest_file_its_best_folder_or_with_byte_order_marks(run_dir: Path, tmp_path: Path) -> None:
    want = text(sample_here(run_dir, "-n", "30", "--seed", "2"))
    assert text(sample_here(run_dir.parent / "latest", "-n", "30", "--seed", "2")) == want
    best = sample_here(run_dir / "best", "-n", "30")
    assert best.returncode == 2 and f"--save_dir {run_dir} --checkpoint best" in best.stderr.decode("utf-8")
    # config.json and vocab.json saved again by an editor that writes a UTF-8 byte-order mark
    marked = tmp_path / "marked"
    shutil.copytree(run_dir, marked)
    for name in ("config.json", "vocab.json"):
        (marked / name).write_text((marked / name).read_text(encoding="utf-8"), encoding="utf-8-sig")
    assert text(sample_here(marked, "-n", "30", "--seed", "2")) == want


def test_prime_outside_a_limited_vocabulary_and_identical_greedy_samples(caplog) -> None:
    """A run cut to its most frequent characters (--max_vocab) may have seen a character it has no
    symbol for: the message says outside its vocabulary, not never seen. Several --sample 0 samples
    are one text: said."""
    limited = dataset.Vocab(list("ab\ufffd"), [5, 3, 1], unk_id=2)
    with pytest.raises(utils.CharRNNError, match="characters outside the model's vocabulary .*'c'"):
        sample_script.prime_ids(limited, "abc", "error")
    with pytest.raises(utils.CharRNNError, match="characters the model never saw: 'c'"):
        sample_script.prime_ids(dataset.Vocab(list("ab"), [5, 3]), "abc", "error")
    # A run of decomposed text kept as it was (--normalize none): a composed prime is read decomposed.
    nfd = dataset.Vocab(list(unicodedata.normalize("NFD", "대한 ")), [1] * 6, normalize="none")
    with caplog.at_level(logging.INFO, logger="charrnn"):
        assert nfd.decode(sample_script.prime_ids(nfd, "대한", "error")) == unicodedata.normalize("NFD", "대한")
        # Character by character: one it knows in neither form is missing on its own.
        assert nfd.decode(sample_script.prime_ids(nfd, "대한!", "skip")) == unicodedata.normalize("NFD", "대한")
    assert "--prime read decomposed (NFD)" in caplog.text
    sample_script.check_args(sample_script.build_parser().parse_args(["--sample", "0", "--num_samples", "3"]))
    assert "--num_samples 3 under --sample 0" in caplog.text and "identical" in caplog.text


@pytest.mark.parametrize("flags, message", [
    (["--seed", str(2**64 - 1)], "must be from -9223372036854775808 to 9223372036854775807"),  # not "64 bits"
    (["--seed", str(2**63)], "--seed 9223372036854775808: must be from"), (["--seed", str(-2**63 - 1)], "must be from"),
    (["-n", str(2**31)], "-n 2147483648: at most 2,147,483,647 characters per run"),  # the compiled loop's int32
    (["--temperature", "inf"], "--temperature inf: must be a positive finite number"),  # not "positive"
    # Infinite in float32, where the sampler divides: uniform draws that --top_k and --top_p no longer filter.
    (["--temperature", "1e39", "--top_k", "2"], "--temperature 1e\\+39: must be a positive finite number \\(e.g. 0.7; at "
                                               "most 3.4e\\+38\\)"), (["--temperature", "nan"], "--temperature nan"),
    (["--top_p", "0"], "--top_p 0.0: must be above 0"), (["--top_k", "-1"], "--top_k -1: must be 0 \\(off\\) or positive"),
    (["--top_k", str(2**31)], "--top_k 2147483648: must be at most 2,147,483,647"),  # the compiled loop's int32
    (["--num_samples", "0"], "--num_samples 0: must be from 1 to 4096"),
    # A folder's slash, which Path() drops: the model was written as a file named out
    (["--export_tflite", "out/"], "--export_tflite out/: names a folder; give a file name, such as out/charrnn.tflite"),
    (["--num_samples", "4097"], "--num_samples 4097: must be from 1 to 4096"),
    # Names that fit, but not with what is written from them: OSError tracebacks mid-way, after the model loaded.
    (["--checkpoint", "c" * 250], "its last name is 250 bytes long, and the names made from it add 20; file "
                                  "systems allow at most 255 bytes per name"),
    (["--export_tflite", "m" * 245 + ".tflite"], "its last name is 252 bytes long, and the names made from it add"),
    (["--export", "m" * 245], "its last name is 245 bytes long, and the names made from it add"),
    (["--num_samples", "2", "-n", "50000001"], "--num_samples 2 x -n 50000001: .* at most 100,000,000 characters"),
    # Bytes that cp949 reads are a Korean terminal's, maybe; bytes that it does not say nothing.
    (["--prime", os.fsdecode("한".encode("cp949"))], "which read '한' as cp949: a terminal set to EUC-KR"),
    (["--prime", os.fsdecode(b"\xff\xfeA")], r"not valid UTF-8 \(bytes ff fe 41\); set the terminal to UTF-8"),
])
def test_bad_sampling_flags_are_told_what_is_wrong(flags: list[str], message: str) -> None:
    with pytest.raises(utils.CharRNNError, match=message):
        sample_script.check_args(sample_script.build_parser().parse_args(flags))


def test_the_largest_values_are_taken_and_temperature_0_is_sample_0(caplog) -> None:
    """Each limit is the last value taken, not the first refused; the 100,000,000 characters bound
    only a batch of samples (one sample streams); --temperature 0 is --sample 0, warned as that is."""
    parse = sample_script.build_parser().parse_args
    for flags in (["--num_samples", "4096"], ["--num_samples", "2", "-n", "50000000"], ["-n", str(2**31 - 1)],
                  ["--seed", str(2**63 - 1)], ["--seed", str(-2**63)], ["--top_k", str(2**31 - 1)]):
        sample_script.check_args(parse(flags))
    args = parse(["--temperature", "0", "--top_k", "5", "--num_samples", "3", "--sample", "2"])
    sample_script.check_args(args)
    assert (args.sample, args.temperature) == (0, 1.0)
    # The warnings name what the user typed, not the --sample 0 it became.
    assert ("--num_samples 3 under --temperature 0: the most likely text is one text, so the samples are identical; "
            "a temperature above 0 draws different ones") in caplog.text
    assert ("--top_k: no effect under --temperature 0, which writes the most likely character every step; a "
            "temperature above 0 samples") in caplog.text
    caplog.clear()
    sample_script.check_args(parse(["--temperature", "0", "--sample", "0", "--top_p", "0.9"]))
    assert ("--top_p: no effect under --sample 0 and --temperature 0, which writes the most likely character every "
            "step; --sample 1 with a temperature above 0 samples") in caplog.text


def test_a_checkpoint_name_is_the_run_s_own_before_one_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """--checkpoint ckpt-40 is the run's ckpt-40, though the folder sample.py runs in has one too
    (another run's, sampled from inside it); a path that only the working directory holds is that one."""
    run, here = tmp_path / "run", tmp_path / "here"
    for folder in (run, here):
        folder.mkdir()
        (folder / "ckpt-40.index").write_bytes(b"")
    monkeypatch.chdir(here)
    for which in ("ckpt-40", "ckpt-40.index"):
        assert sample_script.checkpoint_prefix(run, which) == str(run / "ckpt-40")
    (run / "ckpt-40.index").unlink()
    assert sample_script.checkpoint_prefix(run, "ckpt-40") == "ckpt-40"


def test_no_checkpoint_yet_and_no_prime_are_told_apart(run_dir: Path, tmp_path: Path, caplog) -> None:
    """--checkpoint best before any validation is sent to latest, where there is one; before any save
    both are told so (latest would fail as well); an empty prime is no prime the vocabulary lacks
    (no warning)."""
    saved = tmp_path / "saved"
    shutil.copytree(run_dir, saved, ignore=shutil.ignore_patterns("best"))
    with pytest.raises(utils.CharRNNError, match=f"no checkpoint in {re.escape(str(saved / 'best'))}: no "
                                                 f"validation has finished yet, or best/ was removed; use --checkpoint latest"):
        sample_script.checkpoint_candidates(saved, "best")
    assert sample_script.checkpoint_candidates(saved, "latest") == [str(saved / "ckpt-40")]
    unsaved = tmp_path / "unsaved"
    unsaved.mkdir()
    for which in ("best", "latest"):
        with pytest.raises(utils.CharRNNError, match=f"no checkpoint in {re.escape(str(unsaved))}: has training "
                                                     f"saved one yet\\?"):
            sample_script.checkpoint_candidates(unsaved, which)
    vocab = dataset.Vocab(list("ab\n"), [3, 2, 1])
    assert sample_script.prime_ids(vocab, "", "error") == [] and "--prime" not in caplog.text
    assert sample_script.prime_ids(vocab, "xy", "skip") == [] and "no character of --prime" in caplog.text


def test_a_checkpoint_file_typed_alone_is_told_as_its_run_and_checkpoint(run_dir: Path, tmp_path: Path,
                                                                          capsys) -> None:
    """sample.lua took its checkpoint file: a file of a run's is named with the flags that take it
    (--save_dir with the file was refused as a file, not a run directory)."""
    parser = sample_script.build_parser()
    parser.prog = "sample.py"
    newest = max(run_dir.glob("ckpt-*.index"), key=lambda index: int(index.name[5:-6]))
    for typed, told in ((newest, f"--save_dir {run_dir}, a checkpoint of it with --checkpoint {newest.stem})"),
                        (next((run_dir / "best").glob("ckpt-*.index")), "--checkpoint best)"),
                        (run_dir / "config.json", f"(a run is passed as --save_dir {run_dir})")):
        with pytest.raises(SystemExit):
            parser.parse_args([str(typed)])
        assert told in capsys.readouterr().err, typed
    assert text(sample_here(run_dir, "-n", "5", "--checkpoint", newest.stem)) != ""  # as told
    # Another run's checkpoint by its path: it would load with this run's config.json and vocabulary
    # (told as damaged files where the sizes differ). A checkpoint prefix as the run: its run is named.
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    refused = sample_here(run_dir, "--checkpoint", str(other / newest.name), "-n", "5")
    assert refused.returncode == 2 and (f"a checkpoint of the run {other}, not of {run_dir}, whose config.json and "
                                        f"vocabulary sample.py reads: pass --save_dir {other} --checkpoint "
                                        f"{newest.stem}\n") in refused.stderr.decode(), refused.stderr
    prefix = str(run_dir / newest.stem)
    assert text(sample_here(run_dir, "--checkpoint", prefix, "-n", "5")) != ""  # its own, by its path: loads
    import runs
    with pytest.raises(utils.CharRNNError, match=f"--init_from {re.escape(prefix)}: a checkpoint, not a run "
                                                 f"directory: pass its run, --init_from {re.escape(str(run_dir))}$"):
        runs.resolve_run_dir(prefix, "--init_from")
    for flags, told in ((["--save_dir", prefix], f"--save_dir {prefix}: a checkpoint, not a run directory: pass "
                                                 f"--save_dir {run_dir} --checkpoint {newest.stem}\n"),
                        (["--save_dir", str(run_dir), "--checkpoint", "lm_lstm_epoch30.00_1.3950.t7"],
                         "a checkpoint of karpathy/char-rnn, in Torch, which cannot be loaded here")):
        refused = sample_here(Path(flags[1]), *flags[2:], "-n", "5")
        assert refused.returncode == 2 and told in refused.stderr.decode(), refused.stderr
    # To train.py, the run (its folder or a file in it) is the one to go on from.
    import plan
    train_parser = plan.build_parser()
    train_parser.prog = "train.py"
    for typed in (run_dir, newest):
        with pytest.raises(SystemExit):
            train_parser.parse_args([str(typed)])
        assert f"(a run to go on from is passed as --init_from {run_dir})" in capsys.readouterr().err, typed


def test_a_mistyped_flag_is_matched_by_its_letters(capsys) -> None:
    """--nsamples was taken for --sample (closer by difflib with the underscore counted)."""
    with pytest.raises(SystemExit):
        sample_script.build_parser().parse_args(["--nsamples", "2"])
    assert "(--nsamples: did you mean --num_samples?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # from char-rnn-tensorflow's train.py: sample.py takes the run as --save_dir
        sample_script.build_parser().parse_args(["--init_from", "save/r"])
    assert "(--init_from is a flag of train.py, not of " in capsys.readouterr().err  # prog: pytest's here
    with pytest.raises(SystemExit):  # train.py's flag typed whole, not karpathy/char-rnn's -decay_rate (RMSprop's)
        sample_script.build_parser().parse_args(["--decay_rate", "0.9"])
    error = capsys.readouterr().err
    assert "(--decay_rate is a flag of train.py, not of " in error and "karpathy" not in error, error


def test_a_value_of_two_dashes_is_that_value(capsys) -> None:
    """Python 3.11's argparse dropped the value of --prime=-- (a dash line) and left an empty list:
    an AttributeError traceback in either script, for every flag that takes text."""
    assert sample_script.build_parser().parse_args(["--prime=--", "-n", "3"]).prime == "--"
    parsed = plan.build_parser().parse_args(["--run_name=--", "--time_budget=--"])
    assert (parsed.run_name, parsed.time_budget) == ("--", "--")  # the latter refused later, as any bad duration
    for flags in (["--seed=--"], ["--sample=--"]):  # a number, a choice: refused as argparse refuses others
        with pytest.raises(SystemExit):
            sample_script.build_parser().parse_args(flags)
        assert f"error: argument {flags[0][:-3]}: invalid int value: '--'" in capsys.readouterr().err


def test_prime_outside_the_vocabulary(run_dir: Path) -> None:
    refused = sample_here(run_dir, "--prime", "the 猫🙂")
    assert refused.returncode == 2
    message = refused.stderr.decode("utf-8")
    assert "'猫' (U+732B)" in message and "--unknown skip" in message and "Traceback" not in message
    # Which run it is: `latest` may be another corpus's than the user thinks.
    assert f"or sample a run trained on such text with --save_dir (this is {run_dir})." in message, message
    skipped = sample_here(run_dir, "--prime", "the 猫", "--unknown", "skip", "-n", "20", "--seed", "1")
    assert text(skipped).startswith("the ") and "猫" in skipped.stderr.decode("utf-8")
    # Nothing left of the prime: the sample is the one an empty prime gives, -n characters long.
    nothing_known = sample_here(run_dir, "--prime", "猫🙂", "--unknown", "skip", "-n", "20", "--seed", "1")
    assert "no character of --prime" in nothing_known.stderr.decode("utf-8")
    assert text(nothing_known) == text(sample_here(run_dir, "-n", "20", "--seed", "1"))
    assert len(text(nothing_known)) == 21  # and its closing line break


def test_a_korean_path_under_an_euc_kr_locale(run_dir: Path, tmp_path: Path) -> None:
    """The scripts start again in UTF-8 mode with the command line's own bytes: the UTF-8 of 한 does
    not survive a round trip through the euc_kr codec, and the restart died with a traceback."""
    if shutil.which("localedef") is None or not Path("/usr/share/i18n/locales/ko_KR").is_file():
        pytest.skip("no localedef or ko_KR locale source to build an EUC-KR locale from")
    built = subprocess.run(["localedef", "-i", "ko_KR", "-f", "EUC-KR", str(tmp_path / "ko_KR.EUC-KR")],
                           capture_output=True, text=True)
    assert (tmp_path / "ko_KR.EUC-KR").is_dir(), built.stderr
    shutil.copytree(run_dir, tmp_path / "한국어 런")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHON"))}
    env.update(LOCPATH=str(tmp_path), LC_ALL="ko_KR.EUC-KR")
    assert text(sample(tmp_path / "한국어 런", "--prime", "문", "-n", "20", env=env)).startswith("문")


def test_korean_prime_and_output_under_a_c_locale(run_dir: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env.update(LC_ALL="C", PYTHONUTF8="0")
    out = text(sample(run_dir, "--prime", "문", "-n", "100", "--seed", "2", env=env))
    assert out.startswith("문")


@pytest.mark.parametrize("saved_since", [True, False])
def test_checkpoints_removed_while_they_load(run_dir: Path, tmp_path: Path, monkeypatch, caplog,
                                             saved_since: bool) -> None:
    """A run still training (a save each step, --keep 1) removes a listed checkpoint between the read
    of its object graph and of its weights. The newer one it saved meanwhile must load then, not an
    older one (best/'s, steps behind) said to be "the newest that loads"; with none saved since, the
    next older one, on its own (one tf.train.Checkpoint for every try went on reading the removed
    files: sampling a live run failed a third of the time with 'no checkpoint loads ... damaged')."""
    import logging

    from tensorflow.python.checkpoint import checkpoint as tf_checkpoint
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    *older, newest = sample_script.checkpoint_candidates(copy, "latest")
    assert older and Path(older[-1]).parent.name == "best", older  # best/ckpt-40 beside ckpt-40
    open_reader = tf_checkpoint.py_checkpoint_reader.NewCheckpointReader

    def read_then_rotated_away(prefix: str):
        reader = open_reader(prefix)
        if prefix == newest:  # the trainer's next save deletes it, its index first
            if saved_since:
                for path in Path(prefix).parent.glob(f"{Path(prefix).name}.*"):
                    shutil.copy(path, path.with_name(path.name.replace("ckpt-40", "ckpt-41")))
                (copy / "checkpoint").write_text('model_checkpoint_path: "ckpt-41"\n'
                                                 'all_model_checkpoint_paths: "ckpt-41"\n', encoding="utf-8")
            os.remove(f"{prefix}.index")
        return reader

    monkeypatch.setattr(tf_checkpoint.py_checkpoint_reader, "NewCheckpointReader", read_then_rotated_away)
    caplog.set_level(logging.DEBUG, logger="charrnn")
    args = sample_script.build_parser().parse_args(["--save_dir", str(copy)])
    sample_script.load_model(args, copy, utils.read_json_object(copy / "config.json"))
    if saved_since:
        assert f"{newest} was removed by the run as it saved a newer one (it is training)" in caplog.text
        assert f"loaded {copy / 'ckpt-41'}\n" in caplog.text and "older" not in caplog.text, caplog.text
    else:
        assert f"{newest}: its files are gone); trying an older one" in caplog.text, caplog.text
        assert f"loaded {older[-1]}, the newest checkpoint that loads" in caplog.text, caplog.text


def test_a_checkpoint_without_all_the_model_s_weights_does_not_load(run_dir: Path, tmp_path: Path) -> None:
    """config.json says one layer more than the checkpoints hold: refused, not sampled with a random layer."""
    grown = tmp_path / "grown"
    shutil.copytree(run_dir, grown)
    config = json.loads((grown / "config.json").read_text(encoding="utf-8"))
    config["model"]["num_layers"] += 1
    (grown / "config.json").write_text(json.dumps(config), encoding="utf-8")
    result = sample_here(grown, "-n", "20")
    message = result.stderr.decode("utf-8")
    assert result.returncode == 2 and "no checkpoint loads" in message and "Traceback" not in message, message
    assert "it lacks weights the model has (b_1, w_h_1, w_x_1)" in message, message  # the second layer's


def test_old_flags_take_only_their_documented_values(capsys) -> None:
    """--sample 0|1|2 and --unknown error|skip: another value is refused by the parser, not run as
    something else (--sample 3 sampled every step as 1 does; --unknown drop skipped as skip does)."""
    parse = sample_script.build_parser().parse_args
    for flags in (["--sample", "3"], ["--sample", "-1"], ["--unknown", "drop"]):
        with pytest.raises(SystemExit) as exit_:
            parse(flags)
        assert exit_.value.code == 2, flags
        assert "invalid choice" in capsys.readouterr().err, flags
    assert parse(["--sample", "2", "--unknown", "skip"]).sample == 2


def test_a_checkpoint_path_that_tensorflow_would_glob_is_refused_before_loading() -> None:
    """A --checkpoint path with [ ] * ? is a pattern to TensorFlow, which could load another run's files."""
    with pytest.raises(utils.CharRNNError, match=r"--checkpoint save/r\[1\]/ckpt-5: TensorFlow reads"):
        sample_script.check_args(sample_script.build_parser().parse_args(["--checkpoint", "save/r[1]/ckpt-5"]))


def fake_run(tmp_path: Path, symbols: str, vocab_size: int) -> Path:
    """A run directory as load_run reads it: config.json and vocab.json, no checkpoint needed."""
    run = tmp_path / "run"
    run.mkdir(parents=True)
    model = {"model": utils.MODEL_TYPES[0], "vocab_size": vocab_size, "num_layers": 1, "rnn_size": 8,
             "embedding_size": 4}
    (run / "config.json").write_text(json.dumps({"model": model, "vocab_file": "vocab.json"}), encoding="utf-8")
    dataset.Vocab(list(symbols), [1] * len(symbols)).save(run / "vocab.json")
    return run


@pytest.mark.parametrize("symbols", ["abc", "abcdef"])
def test_a_vocabulary_of_another_size_than_the_model_s_is_refused(tmp_path: Path, symbols: str) -> None:
    """Larger as well as smaller: a larger vocab.json would give the prime ids past the model's embedding."""
    run = fake_run(tmp_path, symbols, 4)
    with pytest.raises(utils.CharRNNError, match=f"has {len(symbols)} symbols but the model .* was trained on 4"):
        sample_script.load_run(str(run))
    assert sample_script.load_run(str(fake_run(tmp_path / "ok", "abcd", 4)))[2].size == 4


class RecordingStdout:
    """sys.stdout stand-in: what was written, and what had been flushed at each flush."""
    def __init__(self, error: OSError | None = None) -> None:
        self.written, self.flushed, self.error = [], [], error

    def write(self, text: str) -> int:
        if self.error:
            raise self.error
        self.written.append(text)
        return len(text)

    def flush(self) -> None:
        self.flushed.append("".join(self.written))


def test_each_piece_is_flushed_as_it_is_written_and_write_errors_are_told(monkeypatch) -> None:
    """A single sample streams: each chunk reaches a pipe or a file when written, not at exit. A
    full disk is refused with its reason; a reader gone (| head) stays main's BrokenPipeError."""
    out = RecordingStdout()
    monkeypatch.setattr(sys, "stdout", out)
    sample_script.write_out("first ")
    sample_script.write_out("second")
    assert out.flushed == ["first ", "first second"]
    discarded = []
    monkeypatch.setattr(sample_script, "discard_stdout", lambda: discarded.append(True))
    monkeypatch.setattr(sys, "stdout", RecordingStdout(OSError(28, "No space left on device")))
    with pytest.raises(utils.CharRNNError, match=r"could not write the sample to standard output \(No space left"):
        sample_script.write_out("text")
    assert discarded == [True]  # what is still buffered goes nowhere: no second error at exit
    monkeypatch.setattr(sys, "stdout", RecordingStdout(BrokenPipeError(32, "Broken pipe")))
    with pytest.raises(BrokenPipeError):
        sample_script.write_out("text")


def test_a_config_json_without_its_model_entry_is_refused(tmp_path: Path) -> None:
    """JSON, an object, but no "model" (a hand edit, another tool's file): a message, not a KeyError."""
    run = fake_run(tmp_path, "abcd", 4)
    (run / "config.json").write_text(json.dumps({"vocab_file": "vocab.json"}), encoding="utf-8")
    with pytest.raises(utils.CharRNNError, match=r"config.json is unreadable or damaged \(.*model"):
        sample_script.load_run(str(run))


def test_the_text_is_written_as_utf_8_whatever_the_stdout_encoding(tmp_path: Path, monkeypatch) -> None:
    """PYTHONIOENCODING=ascii, a cp949 console, pythonw: stdout in another encoding still gets the
    sample as UTF-8, never a UnicodeEncodeError. -n 0 writes the prime alone, once per sample."""
    import io
    run = fake_run(tmp_path, "ab문", 3)
    out = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(utils, "interrupt_on_signals", lambda: [])  # pytest's own signal handlers stay
    monkeypatch.setattr(utils, "setup_logging", lambda verbose: None)  # caplog keeps seeing later tests' logs
    assert sample_script.main(["--save_dir", str(run), "-n", "0", "--prime", "a문", "--num_samples", "2"]) == 0
    out.flush()
    assert out.buffer.getvalue().decode("utf-8") == "a문\n---\na문\n"


def test_flags_without_effect_are_named(monkeypatch, caplog) -> None:
    """--seed under --sample 0 does nothing (as --temperature, --top_k, --top_p); an export names
    every sampling flag typed, --unknown among them, as not used."""
    parser = sample_script.build_parser()
    sample_script.check_args(parser.parse_args(["--sample", "0", "--seed", "3"]))
    assert "--seed: no effect under --sample 0" in caplog.text
    argv = ["--export", "out", "-n", "5", "--prime", "a", "--unknown", "skip"]

    def loaded(*_args, **_kwargs):
        raise RuntimeError("stop before loading a model")
    monkeypatch.setattr(sample_script, "load_model", loaded)
    with pytest.raises(RuntimeError, match="stop before"):
        sample_script.export_run(parser.parse_args(argv), Path("run"), {}, None, utils.explicit_flags(parser, argv))
    assert "-n --prime --unknown: not used by an export" in caplog.text


def test_every_jamo_sample_gets_its_n_characters(monkeypatch, capsys) -> None:
    """Several samples stop when the shortest has -n characters: under --unit jamo a row of
    syllables (2-3 symbols each) is shorter than one of ASCII after as many symbols, and stopping at
    the longest cut it short. The model is stubbed: row 0 writes 'a', row 1 the syllable 가."""
    jamo = hangul.to_jamo("가") + "a\n"
    symbols = sorted(set(jamo))
    vocab = dataset.Vocab(symbols, [1] * len(symbols), unit="jamo")
    ga = [symbols.index(c) for c in hangul.to_jamo("가")]

    def chunks(*_args):
        while True:
            yield np.array([[symbols.index("a")] * 4, ga * 2])
    monkeypatch.setattr(sample_script, "load_model", lambda *_args: None)
    monkeypatch.setattr(sample_script, "generated_ids", chunks)
    args = sample_script.build_parser().parse_args(["-n", "10", "--num_samples", "2", "--seed", "1"])
    sample_script.sample(args, Path("run"), {}, vocab, [])
    assert capsys.readouterr().out == "a" * 10 + "\n---\n" + "가" * 10 + "\n"
