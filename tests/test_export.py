"""sample.py --export / --export_tflite end to end: tiny trained runs (an LSTM on English characters
and a GRU on Korean jamo), exported by sample.py, then used the way a user without this repository
would: a process that imports only TensorFlow, saved_model_cli, and the TFLite interpreter."""
from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest

import hangul
from test_data import finished_pid, readme_hangul

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TINY = ["--num_layers", "1", "--rnn_size", "32", "--embedding_size", "16", "--batch_size", "4",
        "--seq_length", "16", "--max_steps", "20", "--eval_every", "10", "--learning_rate", "0.01",
        "--warmup_steps", "5", "--xla", "off"]  # XLA compile time would dominate 20 steps
# name: (corpus file, prime, extra train.py flags)
RUNS = {
    "lstm": ("tiny.txt", "the cat ", ["--model", "lstm"]),
    "gru_jamo": ("ko.txt", "한국어 ", ["--model", "gru", "--unit", "jamo"]),
}
N = 50
# More greedy primes for the LSTM, each checked against sample.py: none (the start of a line) and
# two characters (sample.py feeds all but the last before generating; the export on its own).
EXTRA_PRIMES = ["", "th"]


def corpus_texts() -> dict[str, str]:
    rng = np.random.default_rng(0)
    en = "the cat sat on a mat and the dog ran to the red barn while birds sang".split()
    ko = "한국어 문장 읽었다 값 닭 가나다 하늘 바람 별 노래".split()
    return {"tiny.txt": "\n".join(" ".join(rng.choice(en, 9)) for _ in range(300)) + "\n",
            "ko.txt": "\n".join(" ".join(rng.choice(ko, 7)) for _ in range(300)) + "\n"}


def run(cwd: Path, *args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, encoding="utf-8",
                            timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def side_by_side(fn) -> dict:
    """{name: fn(name)} for every run, the runs in threads side by side (each is mostly a
    subprocess on one core); a run's failure is raised here."""
    with concurrent.futures.ThreadPoolExecutor(len(RUNS)) as pool:
        futures = {name: pool.submit(fn, name) for name in RUNS}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Train and export each run once for the whole module (the slow part, ~25 s a run, mostly
    process start-up and TFLite conversion on one core: the runs go side by side)."""
    work = tmp_path_factory.mktemp("export")
    for name, text in corpus_texts().items():
        (work / name).write_text(text, encoding="utf-8")
    (work / "out").mkdir()

    def train_and_export(name: str) -> None:
        corpus, _, flags = RUNS[name]
        run(work, str(ROOT / "train.py"), "--input", corpus, "--run_name", name, *flags, *TINY)
        result = run(work, str(ROOT / "sample.py"), "--save_dir", f"save/{name}",
                     "--export", f"out/{name}", "--export_tflite", f"out/{name}.tflite")
        assert "wrote SavedModel" in result.stderr and "wrote TFLite model" in result.stderr, result.stderr
        assert re.search(rf"loaded \S*{name}[/\\]ckpt-\d+\n", result.stderr), result.stderr  # which weights it holds
        assert "not used by an export" not in result.stderr, result.stderr
        (work / f"{name}.export.log").write_text(result.stderr, encoding="utf-8")

    side_by_side(train_and_export)
    # Nothing half-written or temporary is left beside the exports.
    assert sorted(p.name for p in (work / "out").iterdir()) == sorted(
        f"{name}{suffix}" for name in RUNS for suffix in ("", ".tflite", ".vocab.json"))
    return work


@pytest.fixture(scope="module")
def greedy(work: Path) -> dict[str, dict[str, str]]:
    """sample.py's own greedy text for each run and prime: the reference the exports must reproduce."""

    def greedy_texts(name: str) -> dict[str, str]:
        texts = {}
        for prime in [RUNS[name][1], *(EXTRA_PRIMES if name == "lstm" else [])]:
            out = run(work, str(ROOT / "sample.py"), "--save_dir", f"save/{name}", "--sample", "0",
                      "-n", str(N), "--prime", prime).stdout
            assert out.endswith("\n") and out.startswith(prime)
            texts[prime] = out[:-1]
        return texts

    return side_by_side(greedy_texts)


# The whole user program: no project code on the path, run from outside the repository. It also
# loads each SavedModel the TF1 way (a Session plus the signature's tensor names), which is how
# TF Serving's C++ loader runs it, table initialization included.
USER_PROGRAM = r"""
import json, sys
import tensorflow as tf
out = {}
for directory, prime, n, extra_primes in json.loads(sys.argv[1]):
    m = tf.saved_model.load(directory)
    greedy = m.generate(prime=prime, n=n, temperature=0.0)["text"].numpy().decode()
    extra = {p: m.generate(prime=p, n=n, temperature=0.0)["text"].numpy().decode() for p in extra_primes}
    sampled, again = (m.signatures["serving_default"](prime=tf.constant(prime), n=tf.constant(n),
                                                      temperature=tf.constant(1.5))["text"].numpy().decode()
                      for _ in range(2))
    seeded = [m.generate_seeded(prime=prime, n=n, temperature=1.0, seed=tf.constant(seed, tf.int64))["text"]
              .numpy().decode() for seed in (7, 7, 8)]
    empty = m.generate(prime="", n=5, temperature=1.0)["text"].numpy().decode()
    with tf.compat.v1.Session(graph=tf.Graph()) as sess:
        sig = tf.compat.v1.saved_model.load(sess, ["serve"], directory).signature_def["serving_default"]
        feed = {sig.inputs["prime"].name: prime, sig.inputs["n"].name: n, sig.inputs["temperature"].name: 0.0}
        session = sess.run(sig.outputs["text"].name, feed).decode()
    out[directory] = dict(greedy=greedy, extra=extra, sampled=sampled, again=again, seeded=seeded, empty=empty,
                          session=session)
print(json.dumps(out))
"""


def test_the_readme_s_snippets_run_as_written(work: Path, greedy: dict[str, dict[str, str]]) -> None:
    """The README's SavedModel and TFLite programs, as a user pastes them (this test's paths and
    prime for its own): the SavedModel's text follows the prime, and the TFLite model's greedy text
    is sample.py's --sample 0 text."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "ROMEO:" in block]
    assert len(blocks) == 2, blocks
    prime = RUNS["lstm"][1]
    outputs = []
    for block in blocks:
        for theirs, ours in (("exported/charrnn", "out/lstm"), ("charrnn.tflite", "out/lstm.tflite"),
                             ("charrnn.vocab.json", "out/lstm.vocab.json"), ("ROMEO:", prime)):
            block = block.replace(theirs, ours)
        outputs.append(run(work, "-c", block).stdout)
    served, lite = outputs
    assert served.startswith(prime) and len(served) == len(prime) + 500 + 1, served  # and print's line break
    assert lite.startswith(greedy["lstm"][prime]) and len(lite) == len(prime) + 200 + 1, (lite, greedy["lstm"])


def test_saved_model_runs_with_tensorflow_alone(work: Path, greedy: dict[str, str], tmp_path: Path) -> None:
    jobs = [[str(work / "out" / name), prime, N, EXTRA_PRIMES if name == "lstm" else []]
            for name, (_, prime, _) in RUNS.items()]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run([sys.executable, "-c", USER_PROGRAM, json.dumps(jobs)], cwd=tmp_path, env=env,
                            capture_output=True, text=True, encoding="utf-8", timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    texts = json.loads(result.stdout.splitlines()[-1])
    for name, (_, prime, _) in RUNS.items():
        got = texts[str(work / "out" / name)]
        # Greedy text from the graph equals sample.py's, through the in-graph encoding and decoding.
        assert got["greedy"] == greedy[name][prime]
        assert got["session"] == greedy[name][prime]
        for extra_prime, text in got["extra"].items():
            assert text == greedy[name][extra_prime], extra_prime
        assert got["sampled"].startswith(prime) and len(got["sampled"]) > len(prime)
        assert got["again"] != got["sampled"]  # each request draws afresh
        assert got["seeded"][0] == got["seeded"][1] != got["seeded"][2]  # the same seed, the same text; another, not
        assert got["empty"] and not got["empty"].startswith(prime)
    jamo, prime = texts[str(work / "out" / "gru_jamo")], RUNS["gru_jamo"][1]
    for text in (jamo["greedy"], jamo["sampled"], jamo["seeded"][0]):
        assert text == unicodedata.normalize("NFC", text)  # recomposed in the graph
        assert "\ufdd0" not in text
    # Sampling (unlike this tiny model's greedy text) makes whole syllables out of jamo.
    assert any("\uac00" <= c <= "\ud7a3" for c in jamo["seeded"][0][len(prime):]), jamo["seeded"][0]


def test_the_logged_usage_line_runs_as_pasted(work: Path) -> None:
    logged = (work / "lstm.export.log").read_text(encoding="utf-8")
    line = re.search(r"use it: (.*saved_model.*)", logged).group(1)
    # As pasted at Python's prompt: the value of its last expression is shown.
    result = run(work, "-c", "import sys, tensorflow as tf; exec(compile(sys.argv[1], 'pasted', 'single'))", line)
    assert re.fullmatch(r"<tf\.Tensor: shape=\(\), dtype=string, numpy=b.{200,}>\n", result.stdout, re.S), result.stdout


def test_saved_model_cli_lists_signatures(work: Path) -> None:
    result = run(work, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--all",
                 "--dir", str(work / "out" / "lstm"))
    for signature in ("serving_default", "generate", "generate_seeded", "step"):
        assert f"signature_def['{signature}']" in result.stdout
    assert "inputs['prime']" in result.stdout and "outputs['text']" in result.stdout
    assert "DT_STRING" in result.stdout and "DT_INT32" in result.stdout and "DT_FLOAT" in result.stdout


def interpreter(path: Path):
    """ai_edge_litert where installed (TensorFlow's tf.lite.Interpreter is deprecated), else TF's."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Interpreter(model_path=str(path))


@pytest.mark.parametrize("name", list(RUNS))
def test_tflite_greedy_equals_sample_py(work: Path, greedy: dict[str, str], name: str) -> None:
    import tensorflow as tf

    import dataset

    _, prime, _ = RUNS[name]
    model_path = work / "out" / f"{name}.tflite"
    vocab = dataset.Vocab.load(work / "out" / f"{name}.vocab.json")
    assert vocab.symbols == dataset.Vocab.load(work / "save" / name / "vocab.json").symbols
    # Builtin ops only: a Flex (Select TF) op would show up by name in the model's op list.
    report = io.StringIO()
    with contextlib.redirect_stdout(report):
        tf.lite.experimental.Analyzer.analyze(model_path=str(model_path))
    assert "WHILE" in report.getvalue() and "Flex" not in report.getvalue()

    lite = interpreter(model_path)
    assert set(lite.get_signature_list()) == {"step", "generate_greedy"}
    prime_ids = vocab.encode(prime)
    ids = lite.get_signature_runner("generate_greedy")(prime_ids=prime_ids, n=np.array(N, np.int32))["ids"]
    assert vocab.decode(np.concatenate([prime_ids, ids])) == greedy[name][prime]
    # An empty prime starts a line, as in sample.py and the SavedModel (it read past the end of the ids).
    for _ in range(2):
        empty = lite.get_signature_runner("generate_greedy")(prime_ids=np.zeros([0], np.int32), n=np.array(N, np.int32))
        start = lite.get_signature_runner("generate_greedy")(prime_ids=np.array([vocab.start_id], np.int32),
                                                            n=np.array(N, np.int32))
        assert list(empty["ids"]) == list(start["ids"])
    if vocab.unit == "jamo":  # the README's recipe for an app without this repository: the same text
        assert readme_hangul()("".join(vocab.symbols[i] for i in [*prime_ids, *ids])) == greedy[name][prime]

    # The same with the one-step signature and the state kept by the caller, as an app would.
    step = lite.get_signature_runner("step")
    state = np.zeros(step.get_input_details()["state"]["shape"], np.float32)
    for i in prime_ids[:-1]:
        state = step(ids=np.array([i], np.int32), state=state)["state"]
    last, stepped = int(prime_ids[-1]), []
    for _ in range(N):
        out = step(ids=np.array([last], np.int32), state=state)
        state, last = out["state"], int(np.argmax(out["logits"][0]))
        stepped.append(last)
    assert stepped == list(ids)


def test_the_readme_s_jamo_prime_split_keeps_other_characters_whole() -> None:
    """The README's split of a prime into a jamo model's TFLite symbols decomposes the Hangul syllables
    alone: NFD of the whole prime split e-acute and dakuten kana too, which the vocabulary holds composed."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    expression = re.search(r'`("".join\(unicodedata.normalize\("NFD", c\) .*? for c in prime\))`', readme)[1]
    split = eval(f"lambda prime: {expression}", {"unicodedata": unicodedata})  # the README's own code, as written
    assert split("카페 caf\u00e9 \u3067") == "\u110f\u1161\u1111\u1166 caf\u00e9 \u3067"


def test_jamo_helpers_match_hangul_and_dataset() -> None:
    """The in-graph text helpers against hangul.py and dataset.py on random soup of the tricky code points."""
    import tensorflow as tf

    import dataset
    import export
    import model

    def to_jamo(cp):
        slots = tf.reshape(export._jamo_slots(cp), [-1])
        return tf.boolean_mask(slots, slots >= 0)

    spec = [tf.TensorSpec([None], tf.int32)]
    from_jamo, to_jamo, compose, line_ends = (
        model.graph_function(f, input_signature=spec)
        for f in (export._from_jamo, to_jamo, export._compose_hangul, export._normalize_line_ends))
    alphabet = ["\u1100", "\u1112", "\u1113", "\u115f", "\u1160", "\u1161", "\u1175", "\u119e", "\u11a7", "\u11a8",
                "\u11c2", "\u11c3", "\u11ff", "\ua960", "\ud7b0", "\ud7ff", "\ufdd0", "\ufdd0", "가", "각", "a", "\r", "\n"]
    rng = random.Random(0)

    def apply(f, text: str) -> str:
        return "".join(map(chr, f(tf.constant([ord(c) for c in text], tf.int32)).numpy()))

    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 10)))
        assert apply(from_jamo, text) == hangul.from_jamo(text), repr(text)
        assert apply(to_jamo, text) == hangul.to_jamo(text), repr(text)
        plain = text.replace("\ufdd0", "")
        assert apply(compose, apply(line_ends, plain)) == dataset._normalize(plain, "nfc"), repr(plain)


def test_the_exported_sampler_draws_each_symbol_with_its_probability() -> None:
    """export.py's Gumbel-max against softmax(logits / temperature), as model.py's race is tested."""
    import tensorflow as tf

    import export
    from test_model import DRAW_PROBS, assert_draws_follow

    logits = tf.constant(np.log(np.tile(DRAW_PROBS, (40_000, 1))), tf.float32)
    for temperature in (1.0, 2.0):
        tempered = DRAW_PROBS ** (1 / temperature)
        ids = export._sample(logits, tf.constant(3), tf.constant(temperature), tf.constant(7, tf.int64))
        assert_draws_follow(ids.numpy(), tempered / tempered.sum())


def test_saved_model_drops_unknown_characters_whole(tmp_path: Path) -> None:
    """The SavedModel's prime skips what sample.py --unknown skip skips: under jamo a syllable
    whose final jamo the corpus never had goes whole, not as a stray initial and vowel."""
    import tensorflow as tf

    import dataset
    import export
    import model

    (tmp_path / "ko.txt").write_text("가나다하 한\n" * 5, encoding="utf-8")  # ㄴ as an initial and a final
    vocab = dataset.prepare_corpus([tmp_path / "ko.txt"], dataset.DataOptions(unit="jamo"),
                                 cache_root=tmp_path / "cache").vocab
    module = export.ServingModule(model.CharRNN(model.ModelConfig("gru", vocab.size, 1, 8, 4)), vocab)
    for prime in ("가핳하", "핳", "하\u11c2a", "나다", "ㅏㄴ하", "ㄱ", "ㄸ가", "ㄴ", "ㅛ", "가ㄴ", "한ㄴ", "ㄴ가ㄴㄴ",
                  "\ufeff하\ufeff\u11ab"):  # byte-order marks go, as from the corpus: 하 and its final make 한
        assert module._encode(tf.constant(prime)).numpy().tolist() == vocab.encode(prime).tolist()
    assert vocab.decode(module._encode(tf.constant("하\ufeff\u11ab")).numpy()) == "한"
    assert vocab.decode(module._encode(tf.constant("가핳하")).numpy()) == "가하"
    assert vocab.decode(module._encode(tf.constant("가ㄴ")).numpy()) == "가ㄴ"  # not 간
    # Bytes that are not UTF-8 are no character at all: dropped, not read as a cut vocabulary's unknown
    # symbol U+FFFD (which a typed U+FFFD is).
    (tmp_path / "en.txt").write_text("aaaabbbcx", encoding="utf-8")
    limited = dataset.prepare_corpus([tmp_path / "en.txt"], dataset.DataOptions(max_vocab=3),
                                     cache_root=tmp_path / "cache").vocab
    module = export.ServingModule(model.CharRNN(model.ModelConfig("gru", limited.size, 1, 8, 4)), limited)
    assert limited.decode(module._encode(tf.constant(b"a\xff\xfeb")).numpy()) == "ab"
    assert module._encode(tf.constant("a\ufffdx")).numpy().tolist() == limited.encode("a\ufffdx").tolist()


def test_export_refuses_a_non_empty_directory(tmp_path: Path) -> None:
    import dataset
    import export
    import model as model_lib
    import utils

    vocab = dataset.Vocab(list("ab\n"), [3, 2, 1])
    net = model_lib.CharRNN(model_lib.ModelConfig("gru", vocab.size, 1, 8, 4))
    target = tmp_path / "exported"
    target.mkdir()
    (target / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(utils.CharRNNError, match=r"not an empty directory \(it holds keep.txt\); --export writes a new or empty folder"):
        export.export_saved_model(net, vocab, target)
    (tmp_path / "corpus.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(utils.CharRNNError, match="corpus.txt: is a file; --export writes a folder: name a new one"):
        export.export_saved_model(net, vocab, tmp_path / "corpus.txt")
    assert (tmp_path / "corpus.txt").read_text(encoding="utf-8") == "mine"
    (tmp_path / "corpus.txt").unlink()
    assert [p.name for p in tmp_path.iterdir()] == ["exported"]
    assert (target / "keep.txt").read_text(encoding="utf-8") == "mine"
    # A write that TensorFlow itself fails (as on a full disk; here its scratch name is taken by a
    # file) is a message, not a traceback, and no export appears.
    fresh = tmp_path / "fresh"
    export._tmp_beside(fresh).write_text("in the way", encoding="utf-8")
    with pytest.raises(utils.CharRNNError, match="--export .*fresh: could not write the SavedModel"):
        export.export_saved_model(net, vocab, fresh)
    assert not fresh.exists()
    # Both targets at once: a TFLite file inside the SavedModel's folder is refused before either is written.
    for tflite in ("same", "same/m.tflite"):
        with pytest.raises(utils.CharRNNError, match=f"--export_tflite .*{tflite}: inside --export's folder"):
            export.export(net, vocab, str(tmp_path / "same"), str(tmp_path / tflite))
        assert not (tmp_path / "same").exists()
    with pytest.raises(utils.CharRNNError, match=r"--export .*x\.vocab\.json: the name of the vocabulary that "
                                                 r"--export_tflite .*x\.tflite writes"):
        export.export(net, vocab, str(tmp_path / "x.vocab.json"), str(tmp_path / "x.tflite"))
    assert not (tmp_path / "x.vocab.json").exists()
    # A symlink named as the folder: the SavedModel goes into its (empty) target, the link stays.
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real", target_is_directory=True)
    export.export_saved_model(net, vocab, tmp_path / "link")
    assert (tmp_path / "link").is_symlink() and (tmp_path / "real" / "saved_model.pb").is_file()


def test_an_export_path_that_cannot_be_a_folder_is_named_as_typed(tmp_path: Path) -> None:
    """/dev/null was told 'e.g. --export /dev/exported-model'; a path under a file named its parent
    as if that had been typed."""
    import export
    import utils
    with pytest.raises(utils.CharRNNError, match=r"--export /dev/null: is a file; .* e\.g\. --export exported-model$"):
        export._check_target_dir(Path("/dev/null"), "--export")
    (tmp_path / "afile").write_text("")
    with pytest.raises(utils.CharRNNError, match=f"--export {tmp_path / 'afile' / 'model'}: {tmp_path / 'afile'} "
                                                 f"is a file, not a folder"):
        export._check_target_dir(tmp_path / "afile" / "model", "--export")
    with pytest.raises(utils.CharRNNError, match=f"--export_tflite {tmp_path / 'afile' / 'm.tflite'}: "
                                                 f"{tmp_path / 'afile'} is a file, not a folder"):
        export._check_target_file(tmp_path / "afile" / "m.tflite", "--export_tflite")


def tiny_gru():
    """An untrained one-layer GRU on a three-symbol vocabulary, and the vocabulary: (net, vocab)."""
    import dataset
    import model as model_lib

    vocab = dataset.Vocab(list("ab\n"), [3, 2, 1])
    return model_lib.CharRNN(model_lib.ModelConfig("gru", vocab.size, 1, 8, 4)), vocab


def tiny_lstm(tmp_path: Path):
    """An untrained two-layer LSTM on a prepared English vocabulary (the start symbol included): (net, vocab)."""
    import dataset
    import model as model_lib

    (tmp_path / "en.txt").write_text("abc defg hij\n" * 5, encoding="utf-8")
    vocab = dataset.prepare_corpus([tmp_path / "en.txt"], dataset.DataOptions(), cache_root=tmp_path / "cache").vocab
    return model_lib.CharRNN(model_lib.ModelConfig("lstm", vocab.size, 2, 8, 4), seed=3), vocab


def empty_working_directory(tmp_path: Path, monkeypatch) -> Path:
    """A new empty folder, made the working directory (for --export .)."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    return here


@pytest.mark.parametrize("kind", ["tmpfs", "bind"])
def test_export_into_an_empty_mount_point(tmp_path: Path, monkeypatch, kind: str) -> None:
    """A volume mounted for TF Serving (/models/charrnn/1) cannot be replaced by a rename, which
    failed with 'Device or resource busy': the SavedModel is written inside it. A bind mount of a
    folder on the same disk (docker -v /host/v1:/models/charrnn/1) is one too, which os.path.ismount
    misses. Where this process may not mount, the folder is taken for a mount point."""
    import export
    import tensorflow as tf

    net, vocab = tiny_gru()
    volume, source = tmp_path / "1", tmp_path / "source"
    volume.mkdir()
    source.mkdir()
    how = ["-t", "tmpfs", "tmpfs"] if kind == "tmpfs" else ["--bind", str(source)]
    mounted = subprocess.run(["mount", *how, str(volume)], capture_output=True).returncode == 0
    if not mounted and kind == "tmpfs":
        ismount = os.path.ismount
        monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == volume or ismount(path))
    elif not mounted:
        monkeypatch.setattr(export, "mount_points", lambda: {os.path.realpath(volume)})
    else:
        assert kind == "tmpfs" or not os.path.ismount(volume)  # what the export must not rely on
    try:
        export.export_saved_model(net, vocab, volume)
        names = {p.name for p in volume.iterdir()}
        assert {"saved_model.pb", "variables", "assets.extra"} <= names, names
        assert not [name for name in names if name.startswith(".")], names
        served = tf.saved_model.load(str(volume))
        assert served.generate(prime="ab", n=3, temperature=0.0)["text"].numpy().decode().startswith("ab")
    finally:
        if mounted:
            subprocess.run(["umount", str(volume)], check=True)


def test_mount_points_are_read_with_their_escapes(tmp_path: Path) -> None:
    """/proc/self/mountinfo writes a space in a mount point as \\040 (a tab \\011, a backslash \\134)."""
    import export

    info = tmp_path / "mountinfo"
    info.write_bytes(b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
                     b"96 22 8:1 /srv/v1 /models/my\\040model/1 rw shared:5 - ext4 /dev/sda1 rw\n"
                     b"97 22 0:5 / /mnt/\\134x\\011y\xed\x95\x9c rw - tmpfs tmpfs rw\n")
    assert export.mount_points(str(info)) == {"/", "/models/my model/1", "/mnt/\\x\ty\ud55c"}
    assert export.mount_points(str(tmp_path / "none")) == set()


def test_export_into_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """--export . (an empty working directory) was a ValueError traceback: '.' has no name to put a
    temporary one beside. It is written in place, and the shell's folder stays the same folder.
    Interrupted between two moves, it leaves the folder empty, so that the same command works."""
    import export
    import tensorflow as tf

    net, vocab = tiny_gru()
    here = empty_working_directory(tmp_path, monkeypatch)
    replace, moves = os.replace, []

    def interrupted_at_the_second(source, target):
        if Path(target).parent == here:  # a move up into the folder (not vocab.json's own atomic write)
            moves.append(target)
            if len(moves) == 1:  # meanwhile another program writes there: not the export's to remove
                (here / "notes.txt").write_text("mine")
            if len(moves) == 2:
                raise KeyboardInterrupt
        return replace(source, target)

    monkeypatch.setattr(export.os, "replace", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        export.export_saved_model(net, vocab, ".")
    assert len(moves) == 2 and [p.name for p in here.iterdir()] == ["notes.txt"]
    (here / "notes.txt").unlink()
    monkeypatch.setattr(export.os, "replace", replace)
    inode = here.stat().st_ino
    export.export_saved_model(net, vocab, ".")
    assert here.stat().st_ino == inode and (here / "saved_model.pb").exists()
    served = tf.saved_model.load(str(here))
    assert served.generate(prime="ab", n=3, temperature=0.0)["text"].numpy().decode().startswith("ab")
    # A working directory deleted meanwhile has no path for getcwd: an export elsewhere still works.
    (tmp_path / "elsewhere").mkdir()
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert not export._in_place(tmp_path / "elsewhere")


def test_export_replaces_only_an_earlier_export(work: Path, tmp_path: Path) -> None:
    """An export replaces its own earlier files and nothing else (not a checkpoint, a run's
    config.json, a device); a refused export leaves no folder that it made behind."""
    run_dir = work / "save" / "lstm"
    sample = [str(ROOT / "sample.py"), "--save_dir", str(run_dir)]
    for suffix in (".tflite", ".vocab.json"):  # an earlier export, of another run
        shutil.copy(work / "out" / f"gru_jamo{suffix}", tmp_path / f"m{suffix}")
    # With standard output closed (>&-) too: an export writes nothing there.
    exported = subprocess.run([sys.executable, *sample, "--export_tflite", "m.tflite", "--temperature", "1", "-n", "20"],
                              cwd=tmp_path, stderr=subprocess.PIPE, text=True, encoding="utf-8", timeout=240,
                              preexec_fn=lambda: os.close(1))
    assert exported.returncode == 0, exported.stderr
    assert "-n --temperature: not used by an export" in exported.stderr, exported.stderr  # 1: the default, typed
    for suffix in (".tflite", ".vocab.json"):
        assert (tmp_path / f"m{suffix}").read_bytes() == (work / "out" / f"lstm{suffix}").read_bytes(), suffix
    config = (run_dir / "config.json").read_bytes()
    refused = subprocess.run([sys.executable, *sample, "--export", "new/deep/exp", "--export_tflite",
                              str(run_dir / "config.json")], cwd=tmp_path, capture_output=True, text=True,
                             encoding="utf-8", timeout=240)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    assert f"{run_dir / 'config.json'} exists and is not a TFLite model written here" in refused.stderr
    assert (run_dir / "config.json").read_bytes() == config and not (tmp_path / "new").exists()
    # The vocabulary file the TFLite model goes with is checked too: a user's x.vocab.json stays.
    (tmp_path / "x.vocab.json").write_text('{"mine": true}', encoding="utf-8")
    refused = subprocess.run([sys.executable, *sample, "--export_tflite", "x.tflite"], cwd=tmp_path,
                             capture_output=True, text=True, encoding="utf-8", timeout=240)
    assert refused.returncode == 2 and "x.vocab.json exists and is not the vocabulary of one" in refused.stderr
    assert (tmp_path / "x.vocab.json").read_text(encoding="utf-8") == '{"mine": true}'
    assert not (tmp_path / "x.tflite").exists()


def test_an_export_removes_what_killed_exports_left(tmp_path: Path, monkeypatch) -> None:
    """kill -9 between an export's write and its rename leaves .NAME.tmp-PID@HOST, a model's worth of
    space: the next export to that path removes those whose process is gone, and no other."""
    import dataset
    import export
    import model as model_lib
    import utils

    vocab = dataset.Vocab(list("ab\n"), [3, 2, 1])
    net = model_lib.CharRNN(model_lib.ModelConfig("gru", vocab.size, 1, 8, 4))
    dead, host = finished_pid(), socket.gethostname()
    # An older version's names had no host.
    stranded = [tmp_path / f".exported.tmp-{dead}@{host}", tmp_path / f".m.tflite.tmp-{dead}"]
    stranded[0].mkdir()
    (stranded[0] / "saved_model.pb").write_bytes(b"half")
    stranded[1].write_bytes(b"half")
    # A live process's; another path's; another machine's (a shared file system), in progress there.
    others = [tmp_path / f".exported.tmp-1@{host}", tmp_path / ".other.tmp-12",
              tmp_path / f".m.tflite.tmp-{dead}@elsewhere"]
    for path in others:
        path.write_bytes(b"")
    export.export(net, vocab, str(tmp_path / "exported"), str(tmp_path / "m.tflite"))
    assert [p.exists() for p in stranded + others] == [False, False, True, True, True]
    assert (tmp_path / "exported" / "saved_model.pb").is_file() and (tmp_path / "m.tflite").is_file()

    # Written in place (--export .), the copy is inside the target, which every later export refused
    # as not empty: when that is all the folder holds, it goes.
    # A target that is not written in place never held such a copy: a .tmp-N there is not the export's.
    elsewhere = tmp_path / "out"
    (elsewhere / f".tmp-{dead}@{host}").mkdir(parents=True)
    with pytest.raises(utils.CharRNNError, match="not an empty directory"):
        export.export_saved_model(net, vocab, elsewhere)
    assert (elsewhere / f".tmp-{dead}@{host}").is_dir()
    for name, leftovers, user_file in (("here", [f".tmp-{dead}", f".tmp-{dead}@{host}"], None),
                                       ("mine", [f".tmp-{dead}"], "notes.txt")):
        folder = tmp_path / name
        for leftover in leftovers:
            (folder / leftover).mkdir(parents=True)
        if user_file:
            (folder / user_file).write_text("mine", encoding="utf-8")
        monkeypatch.chdir(folder)
        if user_file is None:
            export.export_saved_model(net, vocab, ".")
            assert (folder / "saved_model.pb").is_file() and not [p for p in folder.iterdir() if p.name.startswith(".")]
        else:  # beside anything of the user's it is not the export's to remove: refused with the rest
            with pytest.raises(utils.CharRNNError, match="not an empty directory"):
                export.export_saved_model(net, vocab, ".")
            assert (folder / leftovers[0]).is_dir()


def test_the_served_loop_feeds_the_prime_and_draws_at_each_step(tmp_path: Path) -> None:
    """ServingModule in-process against model.generate: greedy text from a prime, from an empty
    prime (the start id), a negative n as none, and with flat logits a fresh draw at every step."""
    import tensorflow as tf

    import export
    import model

    net, vocab = tiny_lstm(tmp_path)
    module = export.ServingModule(net, vocab)

    def served(prime, n, temperature=0.0, seed=1):
        return module.generate_seeded(prime=tf.constant(prime), n=tf.constant(n), temperature=tf.constant(temperature),
                                      seed=tf.constant(seed, tf.int64))["text"].numpy().decode()

    for prime, ids in (("ab d", vocab.encode("ab d").tolist()), ("", [vocab.start_id])):
        want = model.generate(net, [ids], 20, mode=0)[0].numpy()
        assert served(prime, 20) == prime + vocab.decode(want)
    assert served("ab d", 20, temperature=1e-4, seed=9) == served("ab d", 20)  # 0 is the limit of cold draws
    assert served("ab d", -3, temperature=1.0) == "ab d"
    net.w_out.assign(tf.zeros_like(net.w_out))  # the same (flat) logits at every step
    drawn = served("ab", 200, temperature=1.0, seed=7)[2:]
    assert len(set(drawn)) > vocab.size // 2, drawn


def test_an_export_in_place_moves_saved_model_pb_last(tmp_path: Path, monkeypatch) -> None:
    """Written in place (--export ., a mount point), the files move up one by one: saved_model.pb
    goes last, so that a server that waits for it finds the variables and assets already there."""
    import export

    net, vocab = tiny_gru()
    here = empty_working_directory(tmp_path, monkeypatch)
    replace, moved = os.replace, []

    def recorded(source, target):
        if Path(target).parent == here:
            moved.append(Path(target).name)
        return replace(source, target)

    monkeypatch.setattr(export.os, "replace", recorded)
    export.export_saved_model(net, vocab, ".")
    assert len(moved) >= 3 and moved[-1] == "saved_model.pb", moved
    assert sorted(moved) == sorted(p.name for p in here.iterdir())


def test_a_tflite_export_whose_vocabulary_fails_leaves_no_model(tmp_path: Path, monkeypatch) -> None:
    """The vocabulary is written before the model's rename: when it cannot be written, no model
    file appears without it, the temporary model beside it goes, and the failure is a message."""
    import dataset
    import export
    import utils

    net, vocab = tiny_gru()

    def full_disk(self, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(dataset.Vocab, "save", full_disk)
    with pytest.raises(utils.CharRNNError, match=r"--export_tflite .*m\.tflite: could not write the TFLite model "
                                                 r"\(.*No space left on device\); check free space"):
        export.export_tflite(net, vocab, tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []


def test_a_tflite_target_must_be_a_plain_earlier_export(tmp_path: Path) -> None:
    """--export_tflite replaces an earlier TFLite model and its vocabulary only: a folder is refused
    with a file name to use instead, and so is a symbolic link, even to an earlier export (the link
    is the user's), for the model and for the vocabulary beside it."""
    import export
    import utils

    _, vocab = tiny_gru()
    with pytest.raises(utils.CharRNNError, match=f"--export_tflite {tmp_path}: is a directory; give a file name "
                                                 f"such as {tmp_path / 'charrnn.tflite'}"):
        export._check_target_file(tmp_path, "--export_tflite")
    (tmp_path / "old.tflite").write_bytes(b"\0\0\0\0TFL3" + b"\0" * 8)  # the flatbuffer's identifier
    vocab.save(tmp_path / "old.vocab.json")
    export._check_target_file(tmp_path / "old.tflite", "--export_tflite")  # an earlier export: replaced
    (tmp_path / "m.tflite").symlink_to(tmp_path / "old.tflite")
    with pytest.raises(utils.CharRNNError, match=r"m\.tflite exists and is not a TFLite model written here"):
        export._check_target_file(tmp_path / "m.tflite", "--export_tflite")
    (tmp_path / "m.tflite").unlink()
    (tmp_path / "m.vocab.json").symlink_to(tmp_path / "old.vocab.json")
    with pytest.raises(utils.CharRNNError, match=r"m\.vocab\.json exists and is not the vocabulary of one"):
        export._check_target_file(tmp_path / "m.tflite", "--export_tflite")
    (tmp_path / "m.vocab.json").unlink()
    (tmp_path / "m.tflite").symlink_to(tmp_path / "gone.tflite")  # dangling: os.replace would replace the link
    with pytest.raises(utils.CharRNNError, match=r"m\.tflite exists and is not a TFLite model written here"):
        export._check_target_file(tmp_path / "m.tflite", "--export_tflite")
    # old and old.bin would share old.vocab.json: the other model's vocabulary is not replaced.
    for name in ("old", "old.bin"):
        with pytest.raises(utils.CharRNNError, match=f"--export_tflite {re.escape(str(tmp_path / name))}: "
                                                     f"{re.escape(str(tmp_path / 'old.vocab.json'))} is the vocabulary "
                                                     f"of another TFLite model here, {re.escape(str(tmp_path))}/old"
                                                     r"\.tflite, so it stays"):
            export._check_target_file(tmp_path / name, "--export_tflite")
    (tmp_path / "old.tflite").unlink()  # its model gone: the vocabulary is an earlier export's, replaced
    export._check_target_file(tmp_path / "old", "--export_tflite")


def test_stranded_exports_of_a_name_with_glob_characters(tmp_path: Path) -> None:
    """A path such as m[1].tflite removes what a killed export to it left, and not what a killed
    export to m1.tflite left (a glob pattern would read [1] as a character class)."""
    import export

    tag = f"{finished_pid()}@{socket.gethostname()}"
    own, other = tmp_path / f".m[1].tflite.tmp-{tag}", tmp_path / f".m1.tflite.tmp-{tag}"
    own.write_bytes(b"half")
    other.write_bytes(b"half")
    export._tmp_beside(tmp_path / "m[1].tflite")
    assert not own.exists() and other.exists()


def test_the_tflite_loop_in_process(tmp_path: Path) -> None:
    """LiteModule's functions as TensorFlow runs them (before conversion) against model.generate:
    greedy ids after a prime, after an empty prime (the start id), none for a negative n, and the
    step signature's state carried by the caller."""
    import tensorflow as tf

    import export
    import model

    net, vocab = tiny_lstm(tmp_path)
    lite = export.LiteModule(net, vocab.start_id)

    def greedy(ids, n):
        return lite.generate_greedy(prime_ids=tf.constant(ids, tf.int32), n=tf.constant(n))["ids"].numpy().tolist()

    for ids, fed in ((vocab.encode("ab d").tolist(), None), ([], [vocab.start_id])):
        want = model.generate(net, [fed or ids], 20, mode=0)[0].numpy().tolist()
        assert greedy(ids, 20) == want
    assert greedy(vocab.encode("ab").tolist(), -3) == [] and greedy([], 0) == []
    prime = vocab.encode("ab d").tolist()
    state = net.initial_state(1)
    for i in prime[:-1]:
        state = lite.step(ids=tf.constant([i]), state=state)["state"]
    last, stepped = prime[-1], []
    for _ in range(20):
        out = lite.step(ids=tf.constant([last]), state=state)
        state, last = out["state"], int(tf.argmax(out["logits"][0]))
        stepped.append(last)
    assert stepped == greedy(prime, 20)


def test_an_export_named_as_a_file_suggests_a_folder_beside_it(tmp_path: Path) -> None:
    """--export FILE suggests a new folder beside the user's file, in the same directory."""
    import export
    import utils

    (tmp_path / "corpus.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(utils.CharRNNError, match=re.escape(f"--export {tmp_path / 'corpus.txt'}: is a file; --export "
                                                           f"writes a folder: name a new one, e.g. --export "
                                                           f"{tmp_path / 'exported-model'}") + "$"):
        export._check_target_dir(tmp_path / "corpus.txt", "--export")


def test_the_saved_model_holds_its_vocabulary_and_a_working_step(tmp_path: Path) -> None:
    """The SavedModel's assets.extra/vocab.json is the run's vocabulary, and its step signature is
    model.step on a batch, the state passed in and out by the caller."""
    import numpy as np
    import tensorflow as tf

    import dataset
    import export

    net, vocab = tiny_gru()
    export.export_saved_model(net, vocab, tmp_path / "exported")
    assert dataset.Vocab.load(tmp_path / "exported" / "assets.extra" / "vocab.json").symbols == vocab.symbols
    served = tf.saved_model.load(str(tmp_path / "exported"))
    step = served.signatures["step"]
    specs = step.structured_input_signature[1]  # any batch size, as the docstring says: ids [B], state [L, S, B, H]
    assert specs["ids"].shape.as_list() == [None] and specs["state"].shape.as_list()[2] is None, specs
    ids, state = tf.constant([0, 2], tf.int32), net.initial_state(2)
    for _ in range(3):
        out = step(ids=ids, state=state)
        want_logits, want_state = net.step(ids, state)
        np.testing.assert_allclose(out["logits"].numpy(), want_logits.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(out["state"].numpy(), want_state.numpy(), rtol=1e-5, atol=1e-6)
        ids, state = tf.argmax(out["logits"], axis=-1, output_type=tf.int32), out["state"]


def test_an_export_in_place_probes_the_folder_itself(tmp_path: Path, monkeypatch) -> None:
    """Written in place (a mount point), the export goes into the folder, not beside it: that is
    the folder whose writability is checked (a volume's parent is often read-only)."""
    import export

    volume = tmp_path / "1"
    volume.mkdir()
    ismount, probed = os.path.ismount, []
    monkeypatch.setattr(os.path, "ismount", lambda path: Path(path) == volume or ismount(path))
    monkeypatch.setattr(export.runs, "ensure_writable", lambda directory, flag, named=None: probed.append(directory))
    export._check_target_dir(volume, "--export")
    export._check_target_dir(tmp_path / "new", "--export")
    assert probed == [volume, tmp_path]


def test_a_model_the_tflite_converter_refuses(tmp_path: Path, monkeypatch) -> None:
    """A converter failure (an op without a TFLite builtin) is a message, not a traceback, and
    leaves nothing behind: no file, and no folder made for it."""
    import export
    import utils

    net, vocab = tiny_gru()

    class Refusing:
        target_spec = type("Spec", (), {})()

        def convert(self):
            raise RuntimeError("ConverterError: op Foo is neither a custom op nor a flex op")

    monkeypatch.setattr(export.tf.lite.TFLiteConverter, "from_concrete_functions", lambda *args: Refusing())
    with pytest.raises(utils.CharRNNError, match=r"--export_tflite .*m\.tflite: the TFLite converter refused the "
                                                 r"model \(ConverterError: op Foo .*\); nothing was written"):
        export.export(net, vocab, None, str(tmp_path / "new" / "m.tflite"))
    assert list(tmp_path.iterdir()) == []


def test_usage_hints_name_the_files_written(tmp_path: Path) -> None:
    import export

    saved_hint, tflite_hint = export.usage_hints(tmp_path / "exp", tmp_path / "m.tflite")
    assert repr(str(tmp_path / "exp")) in saved_hint and "m.generate(" in saved_hint
    assert repr(str(tmp_path / "m.tflite")) in tflite_hint and "get_signature_runner('generate_greedy')" in tflite_hint
    assert tflite_hint.endswith("with ids from m.vocab.json")
    assert export.usage_hints(None, None) == []


def test_a_file_named_like_an_in_place_copy_is_not_removed(tmp_path: Path, monkeypatch) -> None:
    """An export written in place leaves a folder .tmp-PID@HOST when killed; a file by that name,
    alone in the working directory, is not one: --export . refuses the folder and the file stays."""
    import export
    import utils

    net, vocab = tiny_gru()
    here = empty_working_directory(tmp_path, monkeypatch)
    leftover_name = here / f".tmp-{finished_pid()}@{socket.gethostname()}"
    leftover_name.write_text("mine", encoding="utf-8")
    with pytest.raises(utils.CharRNNError, match="not an empty directory"):
        export.export_saved_model(net, vocab, ".")
    assert leftover_name.read_text(encoding="utf-8") == "mine"


def test_an_export_interrupted_removes_the_folders_it_made(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C during the (slow) write: the folders made for the targets go, as after a failure."""
    import export

    net, vocab = tiny_gru()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(export, "export_saved_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        export.export(net, vocab, str(tmp_path / "new" / "deep" / "exp"), str(tmp_path / "other" / "m.tflite"))
    assert list(tmp_path.iterdir()) == []
