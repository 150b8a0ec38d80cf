"""Export a trained model so it runs without this repository.

    python sample.py --save_dir save/<run> --export exported/charrnn          # SavedModel (TF Serving, any TF program)
    python sample.py --save_dir save/<run> --export_tflite charrnn.tflite     # TFLite (phones), + charrnn.vocab.json

SavedModel: one graph from text to text: UTF-8 prime -> ids (line ends, Hangul composition and, for
--unit jamo, the jamo split done in the graph) -> the whole sampling loop (tf.while_loop) -> text (jamo
recomposed in the graph). Its loop draws with a temperature only: no top_k, top_p or --sample 2, and a
seed of its own (generate_seeded's text is not sample.py's with that --seed). Signatures:
    generate / serving_default (prime: string, n: int32, temperature: float32) -> {text: string}
    generate_seeded  (prime, n, temperature, seed: int64) -> {text}     same seed, same text
    step             (ids: int32 [B], state: float32 [L, S, B, H]) -> {logits, state}
temperature <= 0 picks the most likely character each step (sample.py --sample 0). The RNN state
lives only inside one call (or is passed in and out by step): requests never share state.

TFLite: ids in, ids/logits out, builtin ops only (no Flex ops: strings stay outside the model).
Signatures step (one symbol, explicit state) and generate_greedy (the prime, then the argmax
loop, each one WHILE). The vocabulary is written beside it: id i is vocab["symbols"][i][0].
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import re
import shutil
from pathlib import Path

import tensorflow as tf

import dataset
import model
import runs
# Hangul (Unicode ch. 3.12) as hangul.py splits and composes it, and its escape for original jamo.
from hangul import (ESCAPE, L_FIRST, L_LAST, LETTER_AS_INITIAL, LETTER_AS_VOWEL_OR_FINAL, S_FIRST, S_LAST,
                    STANDALONE_LETTERS, T_BASE, T_LAST, V_FIRST, V_LAST, syllable)
from utils import OWNER_TAG, CharRNNError, left_by_gone_owner, owner_tag

log = logging.getLogger("charrnn")


# ---------------------------------------------------------------------------------------------
# In-graph text handling on int32 code point vectors. Everything is vectorized (no per-character
# loop) and uses core TensorFlow ops only, so TF Serving runs it as is. The tests compare these
# with hangul.to_jamo / hangul.from_jamo on random jamo soup.


def _next(x, k: int, fill):
    """x[i + k] at position i (fill past the end)."""
    return tf.concat([x[k:], tf.fill([tf.minimum(k, tf.size(x))], fill)], axis=0)


def _prev(x, k: int, fill):
    """x[i - k] at position i (fill before the start)."""
    return tf.concat([tf.fill([tf.minimum(k, tf.size(x))], fill), x[:tf.size(x) - k]], axis=0)


def _between(cp, first: int, last: int):
    return (cp >= first) & (cp <= last)


def _is_vowel(cp):
    return _between(cp, V_FIRST, V_LAST)


def _is_final(cp):
    return _between(cp, T_BASE + 1, T_LAST)


def _normalize_line_ends(cp):
    """CRLF and lone CR -> LF, as train.py did to the corpus whatever --normalize was."""
    is_cr = tf.equal(cp, 13)
    crlf = is_cr & tf.equal(_next(cp, 1, 0), 10)
    return tf.boolean_mask(tf.where(is_cr, 10, cp), ~crlf)


def _compose_hangul(cp):
    """The Hangul part of NFC: L V [T] and LV-syllable T sequences become precomposed syllables.
    (Core TensorFlow has no general Unicode normalization; other decomposed characters, such as
    e + U+0301, stay as they are.) A consumed V or T can never start a sequence, so marking
    starts and consumed positions at once is exact."""
    nxt, nxt2 = _next(cp, 1, 0), _next(cp, 2, 0)
    lv = _between(cp, L_FIRST, L_LAST) & _is_vowel(nxt)
    lvt = lv & _is_final(nxt2)
    syllable_t = _between(cp, S_FIRST, S_LAST) & tf.equal((cp - S_FIRST) % 28, 0) & _is_final(nxt)
    composed = syllable(cp, nxt, tf.where(lvt, nxt2 - T_BASE, 0))
    out = tf.where(lv, composed, tf.where(syllable_t, cp + nxt - T_BASE, cp))
    consumed = _prev(lv | syllable_t, 1, False) | _prev(lvt, 2, False)
    return tf.boolean_mask(out, ~consumed)


def _jamo_slots(cp):
    """hangul.to_jamo per character: [chars, 3], each syllable's L V [T], a V, T or escape already
    in the text as escape + it, anything else as itself; -1 fills the unused slots."""
    s = cp - S_FIRST
    is_syllable = _between(cp, S_FIRST, S_LAST)
    escaped = _is_vowel(cp) | _is_final(cp) | tf.equal(cp, ESCAPE)
    first = tf.where(is_syllable, L_FIRST + s // 588, tf.where(escaped, ESCAPE, cp))
    second = tf.where(is_syllable, V_FIRST + s % 588 // 28, tf.where(escaped, cp, -1))
    third = tf.where(is_syllable & (s % 28 > 0), T_BASE + s % 28, -1)
    return tf.stack([first, second, third], axis=1)


def _from_jamo(cp):
    """hangul.from_jamo, vectorized. The regex it mirrors reads left to right: an escape keeps the
    next escape, V or T as it is and vanishes itself; L V [T] becomes a syllable. In a run of
    escapes the 1st, 3rd, ... ones are the vanishing escapers, so the parity of an escape's place in
    its run decides (a cumulative count minus the count before the run). A V or T kept after an
    escape needs no care: it never follows an L, so it is never composed."""
    is_esc = tf.equal(cp, ESCAPE)
    count = tf.cumsum(tf.cast(is_esc, tf.int32))
    run = tf.cumsum(tf.cast(~is_esc, tf.int32))  # run id: a non-escape starts a new one
    before_run = tf.gather(tf.math.segment_max(tf.where(is_esc, 0, count), run), run)
    escaper = is_esc & tf.equal((count - before_run) % 2, 1)  # 1st, 3rd, ... escape of its run
    nxt, nxt2 = _next(cp, 1, 0), _next(cp, 2, 0)
    lv = _between(cp, L_FIRST, L_LAST) & _is_vowel(nxt)  # an L is never escaped, nor a V after it
    lvt = lv & _is_final(nxt2)
    composed = syllable(cp, nxt, tf.where(lvt, nxt2 - T_BASE, 0))
    out = tf.where(lv, composed, cp)
    dropped = escaper | _prev(lv, 1, False) | _prev(lvt, 2, False)
    # A V or T that no syllable takes and no escape keeps came from the model, and so did an L that
    # none of KEEPS_INITIAL follows (old Hangul's jamo, or an escape that keeps what follows
    # it): like hangul.from_jamo, print it as the standalone letter (U+3131-U+318E).
    keeps = (tf.equal(nxt, 0x1160) | _between(nxt, 0x1176, 0x11A7) | _between(nxt, 0x11C3, 0x11FF)
             | _between(nxt, 0xA960, 0xA97F) | _between(nxt, 0xD7B0, 0xD7FF)
             | tf.equal(nxt, ESCAPE) & (tf.equal(nxt2, ESCAPE) | _is_vowel(nxt2) | _is_final(nxt2)))
    lone_l = _between(cp, L_FIRST, L_LAST) & ~lv & ~keeps
    orphan = ((_is_vowel(cp) | _is_final(cp)) & ~_prev(escaper, 1, False) & ~dropped) | lone_l
    standalone = tf.gather(_standalone_table(), tf.clip_by_value(cp - L_FIRST, 0, T_LAST - L_FIRST))
    out = tf.where(orphan, standalone, out)
    return tf.boolean_mask(out, ~dropped)


def _letters_as_jamo(cp, as_jamo: dict[int, int]):
    """Each standalone letter (U+3131-U+318E) as the jamo that as_jamo (LETTER_AS_INITIAL, say)
    names; other code points as they are."""
    first, last = 0x3131, 0x318E
    table = tf.constant([as_jamo.get(c, c) for c in range(first, last + 1)], tf.int32)
    return tf.where(_between(cp, first, last), tf.gather(table, tf.clip_by_value(cp - first, 0, last - first)), cp)


def _standalone_table():
    """[cp - U+1100] -> the standalone letter of each initial, vowel and final jamo, from hangul.py's
    own table."""
    table = [0] * (T_LAST - L_FIRST + 1)
    for jamo, letter in STANDALONE_LETTERS.items():
        table[ord(jamo) - L_FIRST] = ord(letter)
    return tf.constant(table, tf.int32)


# ---------------------------------------------------------------------------------------------
# The exported modules


def _sample(logits, step, temperature, seed):
    """Next id [B] from logits [B, V]: Gumbel-max with the random draw keyed by (seed, step), so
    the same seed gives the same text; argmax when temperature <= 0. (The same distribution as
    model.py's exponential race, but not the same draw: the same seed gives other text there.)"""
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    u = tf.random.stateless_uniform(tf.shape(logits), tf.stack([seed, tf.cast(step, tf.int64)]),
                                    minval=1e-20, maxval=1.0)
    sampled = tf.argmax(logits / tf.maximum(temperature, 1e-6) - tf.math.log(-tf.math.log(u)),
                        axis=-1, output_type=tf.int32)
    return tf.where(temperature > 0, sampled, greedy)


def _feed_prime(net: "model.CharRNN", feed_ids: tf.Tensor) -> tf.Tensor:
    """The state after feeding every id of feed_ids [P >= 1] but the last, which is the first
    input of generation."""
    return model.feed_steps(net, net.initial_state(1), feed_ids[None], tf.size(feed_ids) - 1)


def _run_loop(net, feed_ids, n, pick):
    """Feeds feed_ids [P >= 1] one step at a time, then generates n ids [n] with pick(logits, i).
    Explicit tf.while_loops: the functions are traced with autograph off (graph_function, as
    Keras 3's exporter does), so nothing relies on autograph converting Python control flow."""
    state = _feed_prime(net, feed_ids)

    def generate(i, last, state, out):
        logits, state = net.step(last, state)
        nxt = pick(logits, i)
        return i + 1, nxt, state, out.write(i, nxt[0])

    _, _, _, out = tf.while_loop(
        lambda i, *_: i < n, generate,
        (tf.constant(0), feed_ids[-1][None], state, tf.TensorArray(tf.int32, size=n, element_shape=[])),
    )
    return out.stack()


class ServingModule(tf.Module):
    """What the SavedModel holds: the model's variables, the vocabulary as a lookup table (code
    point -> id) and a constant (id -> code point), and the signatures."""

    def __init__(self, net: "model.CharRNN", vocab: "dataset.Vocab"):
        super().__init__(name="charrnn_serving")
        self.model = net
        code_points = [ord(s) for s in vocab.symbols]
        # An attribute, so the SavedModel tracks the table and restores it on load.
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(code_points, tf.int64),
                                                tf.range(len(code_points), dtype=tf.int64)),
            default_value=-1)
        self.symbols = tf.constant(code_points, tf.int32)
        self.jamo = vocab.unit == "jamo"
        self.nfc = vocab.normalize == "nfc"
        # An empty prime starts at the start of a line, as sample.py does.
        self.start_id = vocab.start_id
        L, S, H = net.state_size
        text = tf.TensorSpec([], tf.string, name="prime")
        n = tf.TensorSpec([], tf.int32, name="n")
        temperature = tf.TensorSpec([], tf.float32, name="temperature")
        seed = tf.TensorSpec([], tf.int64, name="seed")
        self.generate = model.graph_function(self._generate, input_signature=[text, n, temperature])
        self.generate_seeded = model.graph_function(self._generate_seeded, input_signature=[text, n, temperature, seed])
        self.step = model.graph_function(self._step, input_signature=[
            tf.TensorSpec([None], tf.int32, name="ids"), tf.TensorSpec([L, S, None, H], tf.float32, name="state")])

    def _encode(self, prime):
        """UTF-8 prime -> ids, as dataset.Vocab.encode does (unknown characters dropped
        whole: under jamo, a syllable with one jamo the corpus never had goes with all of them)."""
        cp = tf.strings.unicode_decode(prime, "UTF-8", errors="ignore")  # bytes that are no character
        cp = _normalize_line_ends(cp)
        cp = tf.boolean_mask(cp, tf.not_equal(cp, 0xFEFF))  # byte-order marks, as the corpus had them dropped
        if self.nfc:
            cp = _compose_hangul(cp)
        slots = _jamo_slots(cp) if self.jamo else cp[:, tf.newaxis]  # [chars, symbols of each]
        ids = tf.cast(self.table.lookup(tf.cast(slots, tf.int64)), tf.int32)  # -1: unknown, or no symbol
        if self.jamo:  # a letter the vocabulary lacks, as dataset.Vocab reads it: right after an open
            # syllable (L V, no final) the initial first, elsewhere the final (or vowel) first
            open_syllable = _between(slots[:, 0], L_FIRST, L_LAST) & _is_vowel(slots[:, 1]) & (slots[:, 2] < 0)
            after_open = tf.concat([[False], open_syllable[:-1]], axis=0)[:, tf.newaxis]
            as_initials = _letters_as_jamo(slots, LETTER_AS_INITIAL)
            as_others = _letters_as_jamo(slots, LETTER_AS_VOWEL_OR_FINAL)
            for second_try in (False, True):
                readings = tf.where(after_open != second_try, as_initials, as_others)
                ids = tf.where(ids < 0, tf.cast(self.table.lookup(tf.cast(readings, tf.int64)), tf.int32), ids)
        known = tf.reduce_all((ids >= 0) | (slots < 0), axis=1)
        ids = tf.reshape(tf.boolean_mask(ids, known), [-1])
        return tf.boolean_mask(ids, ids >= 0)

    def _decode(self, ids):
        cp = tf.gather(self.symbols, ids)
        if self.jamo:
            cp = _from_jamo(cp)
        return tf.strings.unicode_encode(cp, "UTF-8")

    def _generate_seeded(self, prime, n, temperature, seed):
        ids = self._encode(prime)
        feed = tf.cond(tf.size(ids) > 0, lambda: ids, lambda: tf.constant([self.start_id], tf.int32))
        generated = _run_loop(self.model, feed, tf.maximum(n, 0),
                              lambda logits, i: _sample(logits, i, temperature, seed))
        # Prime and continuation decode together, as sample.py prints them: a jamo model may add a
        # final consonant to the prime's last syllable (prime 하, text 한다).
        return {"text": self._decode(tf.concat([ids, generated], axis=0))}

    def _generate(self, prime, n, temperature):
        # A fresh seed per request: two requests with the same prime get different text.
        seed = tf.random.uniform([], maxval=tf.int64.max, dtype=tf.int64)
        return self._generate_seeded(prime, n, temperature, seed)

    def _step(self, ids, state):
        logits, state = self.model.step(ids, state)
        return {"logits": logits, "state": state}


class LiteModule(tf.Module):
    """The TFLite model's functions: ids and state only, so every op is a TFLite builtin."""

    def __init__(self, net: "model.CharRNN", start_id: int):
        super().__init__(name="charrnn_lite")
        self.model = net
        self.start_id = start_id  # an empty prime starts at the start of a line, as sample.py does
        L, S, H = net.state_size

        # The converter names each TFLite signature after its Python function: hence these wrappers.
        def step(ids, state):
            logits, state = net.step(ids, state)
            return {"logits": logits, "state": state}

        def generate_greedy(prime_ids, n):
            return self._generate_greedy(prime_ids, n)

        self.step = model.graph_function(step, input_signature=[
            tf.TensorSpec([1], tf.int32, name="ids"), tf.TensorSpec([L, S, 1, H], tf.float32, name="state")])
        self.generate_greedy = model.graph_function(generate_greedy, input_signature=[
            tf.TensorSpec([None], tf.int32, name="prime_ids"), tf.TensorSpec([], tf.int32, name="n")])

    def _generate_greedy(self, prime_ids, n):
        # No TensorArray: TFLite's builtin WHILE carries plain tensors, so the ids go into a
        # preallocated buffer. An empty prime_ids is the start id (a slice, not a cond: no IF op).
        net = self.model
        prime_ids = tf.concat([[self.start_id], prime_ids], axis=0)[tf.minimum(tf.size(prime_ids), 1):]
        state = _feed_prime(net, prime_ids)

        def generate(i, last, state, out):
            logits, state = net.step(last, state)
            nxt = tf.argmax(logits, axis=-1, output_type=tf.int32)
            return i + 1, nxt, state, tf.tensor_scatter_nd_update(out, tf.reshape(i, [1, 1]), nxt)

        n = tf.maximum(n, 0)
        _, _, _, out = tf.while_loop(lambda i, *_: i < n, generate,
                                     (tf.constant(0), prime_ids[-1][None], state, tf.zeros([n], tf.int32)))
        return {"ids": out}


# ---------------------------------------------------------------------------------------------
# Writing files: never a half-written export (temp path beside the target, then rename)


def _cpu_scope():
    """Trace on the CPU when a GPU is visible, so no op is pinned to a GPU in the exported graph
    and it loads on a CPU-only server. (The model uses matmul/tanh only, no cuDNN kernels.)"""
    return tf.device("/CPU:0") if tf.config.list_physical_devices("GPU") else contextlib.nullcontext()


def _quiet_stderr() -> contextlib.AbstractContextManager:
    """The TFLite converter's C++ code writes harmless notices (even at error level) straight to
    stderr; hide them unless --verbose. Its real failures still arrive as Python exceptions."""
    return contextlib.nullcontext() if log.isEnabledFor(logging.DEBUG) else runs.stderr_silenced()


def _link_followed(path: Path) -> Path:
    """A symlink named as --export's folder stands for its target: the SavedModel is written
    there (it is put in place by renaming, which would replace the link itself)."""
    return path.resolve() if path.is_symlink() else path


def _check_target_dir(directory: Path, flag: str) -> Path | None:
    """Refuse a directory that holds anything. Returns the outermost folder it had to create."""
    if directory.exists() and not directory.is_dir():
        # Beside a file of the user's; beside a device (/dev/null), in the working directory.
        example = directory.parent / "exported-model" if directory.is_file() else Path("exported-model")
        raise CharRNNError(f"{flag} {directory}: is a file; {flag} writes a folder: name a new one, "
                           f"e.g. {flag} {example}")
    in_place = _in_place(directory)
    if directory.is_dir():
        if in_place:
            _remove_stranded_in_place(directory)
        entry = next(directory.iterdir(), None)
        if entry is not None:
            raise CharRNNError(f"{flag} {directory}: not an empty directory (it holds {entry.name}); {flag} writes "
                               f"a new or empty folder, so that nothing of yours in it is replaced: name a new one")
    return runs.ensure_writable(directory if in_place else directory.parent, flag, named=directory)


def _in_place(directory: Path) -> bool:
    """An empty folder that is a mount point (a volume mounted for TF Serving, /models/charrnn/1)
    cannot be replaced by a rename, and the working directory (--export .) should not be: the
    shell would be left in a deleted folder. The export is written inside it, and moved up."""
    try:  # "." itself: a deleted working directory has no name that getcwd could give
        return directory.is_dir() and (_is_mount_point(directory) or os.path.samefile(directory, "."))
    except OSError:
        return False


def _is_mount_point(directory: Path) -> bool:
    """os.path.ismount compares the folder's disk with its parent's, which a bind mount from the same
    disk shares (docker -v /host/v1:/models/charrnn/1 inside a volume of that disk): on Linux every
    mount point is listed in /proc/self/mountinfo."""
    return os.path.ismount(directory) or os.path.realpath(directory) in mount_points()


def mount_points(mountinfo: str = "/proc/self/mountinfo") -> set[str]:
    """The mount points listed in mountinfo (its fifth field, with space, tab, line break and
    backslash written as octal escapes); none where there is no such file (not Linux)."""
    try:
        with open(mountinfo, "rb") as f:
            fields = [line.split(b" ")[4] for line in f if line.count(b" ") >= 4]
    except OSError:
        return set()
    return {os.fsdecode(re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m[1], 8)]), point)) for point in fields}


def _check_target_file(path: Path, flag: str) -> Path | None:
    """Refuse to replace anything but an earlier export (a TFLite model and its vocabulary): the
    path could name a checkpoint, a run's config.json, or a device. Returns the outermost folder
    it had to create."""
    if path.is_dir():
        raise CharRNNError(f"{flag} {path}: is a directory; give a file name such as {path / 'charrnn.tflite'}")
    for target, ours, what in ((path, _is_tflite_model, "a TFLite model"),
                               (tflite_vocab_path(path), _is_vocab, "the vocabulary of one")):
        if os.path.lexists(target) and (target.is_symlink() or not target.is_file() or not ours(target)):
            raise CharRNNError(f"{flag} {path}: {target} exists and is not {what} written here, so it stays; "
                               f"choose another file name")
    # g and g.tflite share g.vocab.json: an export to one must not give the other a wrong vocabulary.
    vocab_path = tflite_vocab_path(path)
    if vocab_path.exists():
        # (Compared as files: on a case-insensitive file system Model's vocabulary is model's.)
        owners = [other for other in path.parent.iterdir()
                  if other.name.lower().startswith(path.stem.lower()) and other.is_file() and not other.is_symlink()
                  and not (path.exists() and os.path.samefile(other, path)) and _is_vocab_of(other, vocab_path)
                  and _is_tflite_model(other)]
        if owners:
            raise CharRNNError(f"{flag} {path}: {vocab_path} is the vocabulary of another TFLite model here, "
                               f"{owners[0]}, so it stays; choose another file name")
    return runs.ensure_writable(path.parent, flag, named=path)


def _is_vocab_of(model_path: Path, vocab_path: Path) -> bool:
    """Whether vocab_path is the vocabulary written beside model_path."""
    try:
        return os.path.samefile(tflite_vocab_path(model_path), vocab_path)
    except OSError:  # not there
        return False


def _is_tflite_model(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(8)[4:] == b"TFL3"  # the flatbuffer's file identifier
    except OSError:
        return False


def _is_vocab(path: Path) -> bool:
    try:
        dataset.Vocab.load(path)
    except CharRNNError:
        return False
    return True


def _tmp_beside(path: Path) -> Path:
    """The name an export to path is written under before its rename (what killed exports left
    under such names goes first)."""
    _remove_stranded_exports(path.parent, f".{path.name}")
    return path.with_name(f".{path.name}{_tmp_suffix()}")


def _tmp_suffix() -> str:
    """The writing process, as _remove_stranded_exports reads it back (the host: on a shared file
    system another machine's export in progress is not taken for a killed one of this machine)."""
    return f".tmp-{owner_tag()}"


_TMP_OWNER = re.compile(rf"\.tmp-{OWNER_TAG}")


def _remove_stranded_in_place(directory: Path) -> None:
    """An export written in place (--export . or a mount point) and killed leaves its temporary
    folder inside: when that is all the folder holds, it goes (anything else there is the user's,
    and refused with the rest)."""
    entries = list(directory.iterdir())
    if entries and all(entry.is_dir() and _TMP_OWNER.fullmatch(entry.name) for entry in entries):
        _remove_stranded_exports(directory, "")


def _remove_stranded_exports(folder: Path, prefix: str) -> None:
    """An export killed (kill -9) between its write and its rename leaves its temporary copy, a
    model's worth of space, named prefix + _tmp_suffix() in folder: remove those whose process is gone."""
    for stranded in folder.glob(f"{glob.escape(prefix)}.tmp-*"):
        if left_by_gone_owner(_TMP_OWNER.fullmatch(stranded.name[len(prefix):])):
            shutil.rmtree(stranded, ignore_errors=True) if stranded.is_dir() else stranded.unlink(missing_ok=True)


def export_saved_model(net: "model.CharRNN", vocab: "dataset.Vocab", directory: str | Path) -> Path:
    """Write a SavedModel of net to directory (new or empty). Returns the directory."""
    directory = _link_followed(Path(directory))
    if directory.name in ("", ".."):  # "." and ".." have no name to put a temporary folder beside
        directory = directory.resolve()
    _check_target_dir(directory, "--export")
    in_place = _in_place(directory)
    tmp = directory / _tmp_suffix() if in_place else _tmp_beside(directory)
    shutil.rmtree(tmp, ignore_errors=True)
    moved: list[Path] = []
    try:
        module = ServingModule(net, vocab)
        with _cpu_scope():
            generate = module.generate.get_concrete_function()
            signatures = {"serving_default": generate, "generate": generate,
                          "generate_seeded": module.generate_seeded.get_concrete_function(),
                          "step": module.step.get_concrete_function()}
            tf.saved_model.save(module, str(tmp), signatures=signatures)
        # assets.extra/ is where TF Serving expects files for people and other tools.
        (tmp / "assets.extra").mkdir(exist_ok=True)
        vocab.save(tmp / "assets.extra" / "vocab.json")
        if in_place:  # saved_model.pb last: a server that waits for it finds the rest in place
            for entry in sorted(tmp.iterdir(), key=lambda entry: entry.name == "saved_model.pb"):
                moved.append(directory / entry.name)
                os.replace(entry, moved[-1])
        else:
            if directory.exists():
                directory.rmdir()  # checked empty above
            os.replace(tmp, directory)
    except BaseException as error:  # a failed write, or Ctrl-C between two moves
        for entry in moved:  # what was moved up before it stopped (only ours: others may write there meanwhile)
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
        if isinstance(error, (OSError, tf.errors.OpError)):  # TensorFlow's own writes raise OpError
            raise CharRNNError(f"--export {directory}: could not write the SavedModel ({runs.tf_error_reason(error)}); "
                               f"check free space and permissions") from None
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory


def tflite_vocab_path(path: str | Path) -> Path:
    """The vocabulary written beside a .tflite file: charrnn.tflite -> charrnn.vocab.json."""
    path = Path(path)
    return path.with_name(path.stem + ".vocab.json")


def export_tflite(net: "model.CharRNN", vocab: "dataset.Vocab", path: str | Path) -> tuple[Path, Path]:
    """Write a builtin-ops-only TFLite model of net to path and its vocabulary beside it.
    Returns (model path, vocabulary path)."""
    path = Path(path)
    _check_target_file(path, "--export_tflite")
    module = LiteModule(net, vocab.start_id)
    with _cpu_scope():
        functions = [module.step.get_concrete_function(), module.generate_greedy.get_concrete_function()]
    converter = tf.lite.TFLiteConverter.from_concrete_functions(functions, module)
    # Builtins only: a Flex (Select TF ops) model needs the large TF runtime on the device.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    try:
        with _quiet_stderr():
            flatbuffer = converter.convert()
    except Exception as error:  # ConverterError: an op without a TFLite builtin
        raise CharRNNError(f"--export_tflite {path}: the TFLite converter refused the model ({str(error)[:500]}); "
                           f"nothing was written. The SavedModel export (--export) still works") from None
    vocab_path = tflite_vocab_path(path)
    tmp = _tmp_beside(path)
    try:
        with open(tmp, "wb") as f:
            f.write(flatbuffer)
            f.flush()
            os.fsync(f.fileno())
        # Between the model's write and its rename: a failed write of the model (a full disk) leaves an
        # older pair as it was, and the model file never exists without its vocabulary. (Two files
        # cannot change at once: a failure or crash after the vocabulary's write leaves the new
        # vocabulary beside the old model.)
        vocab.save(vocab_path)
        os.replace(tmp, path)
    except OSError as error:
        raise CharRNNError(f"--export_tflite {path}: could not write the TFLite model ({error}); "
                           f"check free space and permissions") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path, vocab_path


def usage_hints(saved_model: Path | None, tflite: Path | None) -> list[str]:
    """One-line reminders of how to use what was written (logged by sample.py)."""
    hints = []
    if saved_model is not None:
        # Held in a name: a loaded model used in the same expression is freed before its call runs.
        hints.append(f"use it: m = tf.saved_model.load({str(saved_model)!r}); m.generate(prime=tf.constant(''), "
                     f"n=tf.constant(200), temperature=tf.constant(0.8))['text']")
    if tflite is not None:
        hints.append(f"use it: tf.lite.Interpreter({str(tflite)!r}).get_signature_runner('generate_greedy')"
                     f"(prime_ids=..., n=...) with ids from {tflite_vocab_path(tflite).name}")
    return hints


def export(net: "model.CharRNN", vocab: "dataset.Vocab", saved_model: str | None, tflite: str | None) -> None:
    """sample.py's --export / --export_tflite: write what was asked for and say how to use it."""
    created = []  # (folder, the outermost one made for it): removed again if the export fails
    try:
        # Check both targets before the slow part, so a bad second flag fails fast.
        if saved_model:
            folder = _link_followed(Path(saved_model))
            created.append((folder.parent, _check_target_dir(folder, "--export")))
            if tflite and folder.resolve() in (Path(tflite).resolve(), *Path(tflite).resolve().parents):
                raise CharRNNError(f"--export_tflite {tflite}: inside --export's folder {saved_model}, which the "
                                   f"SavedModel takes whole: name a file outside it")
            if tflite and folder.resolve() == tflite_vocab_path(tflite).resolve():
                raise CharRNNError(f"--export {saved_model}: the name of the vocabulary that --export_tflite {tflite} "
                                   f"writes beside it: name the folder or the TFLite file otherwise")
        if tflite:
            created.append((Path(tflite).parent, _check_target_file(Path(tflite), "--export_tflite")))
        written_dir = written_file = None
        if saved_model:
            written_dir = export_saved_model(net, vocab, saved_model)
            log.info("wrote SavedModel %s (signatures: generate = serving_default, generate_seeded, step)", written_dir)
        if tflite:
            written_file, vocab_path = export_tflite(net, vocab, tflite)
            log.info("wrote TFLite model %s (%s bytes; signatures: step, generate_greedy) and its vocabulary %s",
                     written_file, f"{written_file.stat().st_size:,}", vocab_path)
    except BaseException:
        for folder, outermost in created:
            runs.remove_created(folder, outermost)
        raise
    for hint in usage_hints(written_dir, written_file):
        log.info("%s", hint)

