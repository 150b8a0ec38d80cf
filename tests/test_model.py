"""model.py: the hand-written backward pass against plain autodiff, training, state, generate()."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

import model as M


def make_model(cell: str, layers=2, vocab=11, hidden=8, embed=5, dropout=0.0, input_dropout=0.0, seed=0):
    config = M.ModelConfig(cell, vocab, layers, hidden, embed, dropout=dropout, input_dropout=input_dropout)
    return M.CharRNN(config, seed=seed)


# ---------------------------------------------------------------------------------------
# An independent reference: the textbook cell equations, the time loop unrolled in Python,
# gradients by TensorFlow's autodiff. Dropout masks must match the model's, so it draws
# them the same way (time-major shapes, one folded-in seed per site).


def reference_forward(m: M.CharRNN, ids, state, dropout_seed=None):
    cfg, H = m.config, m.config.rnn_size

    def drop(x, rate, site):
        if dropout_seed is None or rate == 0.0:
            return x
        seed = tf.random.experimental.stateless_fold_in(tf.cast(dropout_seed, tf.int64), site)
        return tf.nn.experimental.stateless_dropout(x, rate, seed=seed)

    x = drop(tf.gather(m.embedding, tf.transpose(ids)), cfg.input_dropout, 0)  # [T, B, E]
    finals = []
    for layer in range(cfg.num_layers):
        w_x, w_h, b = m.w_x[layer], m.w_h[layer], m.b[layer]
        h = state[layer, 0]
        c = state[layer, 1] if cfg.model == "lstm" else None
        outputs = []
        for t in range(x.shape[0]):
            a_x, a_h = x[t] @ w_x + b, h @ w_h
            if cfg.model == "lstm":
                a = a_x + a_h
                i, f, o = tf.sigmoid(a[:, :H]), tf.sigmoid(a[:, H:2 * H]), tf.sigmoid(a[:, 3 * H:])
                c = f * c + i * tf.tanh(a[:, 2 * H:3 * H])
                h = o * tf.tanh(c)
            elif cfg.model == "gru":
                z = tf.sigmoid(a_x[:, :H] + a_h[:, :H])
                r = tf.sigmoid(a_x[:, H:2 * H] + a_h[:, H:2 * H])
                n = tf.tanh(a_x[:, 2 * H:] + r * a_h[:, 2 * H:])
                h = (1 - z) * n + z * h
            else:
                h = tf.tanh(a_x + a_h)
            outputs.append(h)
        finals.append(tf.stack([h, c]) if cfg.model == "lstm" else h[None])
        x = drop(tf.stack(outputs), cfg.dropout, layer + 1)
    logits = tf.einsum("tbh,hv->btv", x, m.w_out) + m.b_out
    return logits, tf.stack(finals)


def loss_and_grads(forward, m, ids, state, state_weights, dropout_seed):
    """CE loss plus a weighted sum of the final state, so the final state gets a nonzero
    upstream gradient too; gradients w.r.t. every variable and the initial state."""
    with tf.GradientTape() as tape:
        tape.watch(state)
        logits, final = forward(m, ids, state, dropout_seed)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.roll(ids, -1, 1), logits))
        loss += tf.reduce_sum(final * state_weights)
    grads = tape.gradient(loss, list(m.trainable_variables) + [state])
    return loss, [tf.convert_to_tensor(g) for g in grads]


def fast_forward(m, ids, state, dropout_seed):
    return m(ids, state, training=dropout_seed is not None, dropout_seed=dropout_seed)


@pytest.mark.parametrize("cell", M.MODEL_TYPES)
# B*T >= V without input dropout takes the folded embedding-projection table; the others
# gather embeddings first: both are compared.
@pytest.mark.parametrize(
    "layers,batch,steps,hidden,dropout",
    [(1, 1, 1, 4, 0.0), (2, 3, 7, 8, 0.0), (2, 3, 7, 8, 0.3), (3, 2, 12, 16, 0.2)],
)
def test_fast_path_matches_autodiff(cell, layers, batch, steps, hidden, dropout):
    m = make_model(cell, layers=layers, hidden=hidden, dropout=dropout, input_dropout=dropout / 2)
    rng = np.random.default_rng(layers * 100 + steps)
    ids = tf.constant(rng.integers(0, m.config.vocab_size, (batch, steps)), tf.int32)
    L, S, H = m.state_size
    state = tf.constant(rng.normal(0, 0.5, (L, S, batch, H)), tf.float32)
    state_weights = tf.constant(rng.normal(0, 1, (L, S, batch, H)), tf.float32)
    seed = tf.constant([7, 3], tf.int64) if dropout else None
    want_loss, want = loss_and_grads(reference_forward, m, ids, state, state_weights, seed)
    got_loss, got = loss_and_grads(fast_forward, m, ids, state, state_weights, seed)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-6)
    names = [v.name for v in m.trainable_variables] + ["initial_state"]
    for name, g, w in zip(names, got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6 * float(tf.reduce_max(tf.abs(w))) + 1e-7, err_msg=name)


@pytest.mark.parametrize("cell", M.MODEL_TYPES)
def test_fast_path_under_xla_matches_autodiff(cell):
    m = make_model(cell, hidden=16, dropout=0.25)
    rng = np.random.default_rng(1)
    ids = tf.constant(rng.integers(0, m.config.vocab_size, (4, 6)), tf.int32)
    L, S, H = m.state_size
    state = tf.constant(rng.normal(0, 0.5, (L, S, 4, H)), tf.float32)
    state_weights = tf.constant(rng.normal(0, 1, (L, S, 4, H)), tf.float32)
    seed = tf.constant([1, 2], tf.int64)
    # Both under XLA: its stateless RNG draws other dropout masks than TF's own kernels.
    want_loss, want = M.graph_function(lambda *a: loss_and_grads(reference_forward, m, *a), jit_compile=True)(
        ids, state, state_weights, seed)
    got_loss, got = M.graph_function(lambda *a: loss_and_grads(fast_forward, m, *a), jit_compile=True)(
        ids, state, state_weights, seed)
    np.testing.assert_allclose(got_loss, want_loss, rtol=1e-5)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * float(tf.reduce_max(tf.abs(w))))


def test_xla_traces_take_the_in_place_update():
    # The forward loop's in-place copy of h^T rests on internal TensorFlow APIs: this fails when
    # an upgrade moves them, instead of the step silently falling back to the slower copy.
    taken = []
    for jit in (True, False):
        M.graph_function(lambda: taken.append(M._xla_update_slice() is not None) or tf.constant(0), jit_compile=jit)()
    assert taken == [True, False]


def test_the_compiled_layer_writes_h_transposed_in_place():
    """An XLA-compiled train step takes the loop's in-place h^T update (XlaDynamicUpdateSlice), not
    the slower copy after it, which a graph without XLA keeps."""
    m = make_model("gru")

    def grads(ids, state):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(m(ids, state)[0])
        return tape.gradient(loss, m.trainable_variables)

    specs = (tf.TensorSpec([3, 5], tf.int32), tf.TensorSpec([2, 1, 3, 8], tf.float32))
    found = []
    for jit in (True, False):
        graph = M.graph_function(grads, jit_compile=jit).get_concrete_function(*specs).graph.as_graph_def()
        ops = {n.op for n in graph.node} | {n.op for f in graph.library.function for n in f.node_def}
        found.append("XlaDynamicUpdateSlice" in ops)
    assert found == [True, False]


def test_graph_functions_leave_python_control_flow_to_python():
    """Autograph is off (its conversion cost seconds of start-up): a Python `if` on a tensor
    fails while tracing instead of turning into a tf.cond."""

    def absolute(x):
        if x > 0:
            return x
        return -x

    with pytest.raises(TypeError):
        M.graph_function(absolute)(tf.constant(-2.0))


@pytest.mark.parametrize("cell", M.MODEL_TYPES)
def test_float16_compute_tracks_float32(cell):
    """Mixed precision: the same weights computed in float16 give float32 logits, state and
    weight gradients within float16's precision of the float32 ones (the hand-written backward
    in float16 included)."""
    m = make_model(cell, hidden=16)
    rng = np.random.default_rng(2)
    ids = tf.constant(rng.integers(0, m.config.vocab_size, (4, 9)), tf.int32)
    L, S, H = m.state_size
    state = tf.constant(rng.normal(0, 0.5, (L, S, 4, H)), tf.float32)
    state_weights = tf.constant(rng.normal(0, 1, (L, S, 4, H)), tf.float32)
    half = lambda m, ids, state, seed: m(ids, state, compute_dtype=tf.float16)
    want_loss, want = loss_and_grads(fast_forward, m, ids, state, state_weights, None)
    got_loss, got = loss_and_grads(half, m, ids, state, state_weights, None)
    logits, final = half(m, ids, state, None)
    assert logits.dtype == tf.float32 and final.dtype == tf.float32
    # The loss holds a weighted sum of 2*L*S*B*H state values: float16 errors add up absolutely.
    np.testing.assert_allclose(got_loss, want_loss, rtol=2e-3, atol=1e-2)
    for v, g, w in zip(m.trainable_variables, got, want):
        assert g.dtype == tf.float32, v.name  # gradients reach the float32 weights as float32
        np.testing.assert_allclose(g, w, rtol=0.05, atol=0.01 * float(tf.reduce_max(tf.abs(w))), err_msg=v.name)


# ---------------------------------------------------------------------------------------
# Model behaviour


def test_the_gate_counts_known_before_tensorflow_are_the_cells():
    import utils
    assert {name: cell.gates for name, cell in M._CELLS.items()} == utils.GATES_PER_CELL


def test_config_round_trip_and_validation():
    config = M.ModelConfig("gru", 65, 2, 128, 64, dropout=0.1)
    assert M.ModelConfig.from_dict({**config.to_dict(), "unrelated": 1}) == config
    with pytest.raises(ValueError):
        M.ModelConfig("transformer", 65, 2, 128, 64)
    with pytest.raises(ValueError):
        M.ModelConfig("lstm", 65, 2, 128, 64, dropout=1.0)


def test_config_saves_every_field_and_checks_each_range():
    config = M.ModelConfig("lstm", 65, 2, 128, 64, dropout=0.25, input_dropout=0.5)
    saved = config.to_dict()
    assert saved == {"model": "lstm", "vocab_size": 65, "num_layers": 2, "rnn_size": 128, "embedding_size": 64,
                     "dropout": 0.25, "input_dropout": 0.5}
    assert M.ModelConfig.from_dict(saved) == config and hash(M.ModelConfig.from_dict(saved)) == hash(config)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.dropout = 0.0  # a model's config cannot change under it
    # A config without the dropouts (sample.py reads them so) has none.
    bare = M.ModelConfig.from_dict({k: v for k, v in saved.items() if "dropout" not in k})
    assert (bare.dropout, bare.input_dropout) == (0.0, 0.0)
    for name in ("vocab_size", "num_layers", "rnn_size", "embedding_size"):
        with pytest.raises(ValueError, match=f"^{name} must"):
            M.ModelConfig.from_dict({**saved, name: 0})
    for name in ("dropout", "input_dropout"):
        assert getattr(M.ModelConfig.from_dict({**saved, name: 0.0}), name) == 0.0
        for bad in (-0.1, 1.0):
            with pytest.raises(ValueError, match=f"^{name} must"):
                M.ModelConfig.from_dict({**saved, name: bad})


@pytest.mark.parametrize("cell,parts", [("lstm", 2), ("gru", 1), ("rnn", 1)])
def test_state_shapes_and_step_equals_call(cell, parts):
    m = make_model(cell, layers=3)
    assert m.state_size == (3, parts, 8)
    state = m.initial_state(4)
    assert state.shape == (3, parts, 4, 8) and state.dtype == tf.float32
    np.testing.assert_array_equal(state, 0.0)  # a reset state is all zeros
    ids = tf.constant([[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 0, 1]], tf.int32)
    logits, state = m(ids, state)
    assert logits.shape == (4, 3, 11) and state.shape == (3, parts, 4, 8)
    call_logits, call_state = m(ids[:, :1], state)
    step_logits, step_state = m.step(ids[:, 0], state)
    np.testing.assert_allclose(step_logits, call_logits[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(step_state, call_state, rtol=1e-5, atol=1e-6)


def test_same_seed_same_weights_and_checkpoint(tmp_path):
    a, b, c = make_model("lstm", seed=3), make_model("lstm", seed=3), make_model("lstm", seed=4)
    for va, vb in zip(a.trainable_variables, b.trainable_variables):
        np.testing.assert_array_equal(va, vb)
    assert not np.array_equal(a.w_x[0], c.w_x[0])
    # Recurrent weights start orthogonal per gate, the LSTM forget-gate bias at 1.
    w = a.w_h[0].numpy()[:, :8]
    np.testing.assert_allclose(w.T @ w, np.eye(8), atol=1e-5)
    np.testing.assert_array_equal(a.b[0].numpy()[8:16], 1.0)
    path = tf.train.Checkpoint(model=a).write(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=c).read(path).assert_consumed()
    np.testing.assert_array_equal(a.w_out, c.w_out)


@pytest.mark.parametrize("cell", M.MODEL_TYPES)
def test_initial_weights_glorot_orthogonal_per_gate_and_biases(cell):
    m = make_model(cell, hidden=8, embed=5)
    G, H = m.cell.gates, 8
    for w in [m.embedding, *m.w_x, m.w_out]:
        limit = np.sqrt(6.0 / sum(w.shape))
        assert 0.8 * limit < np.max(np.abs(w.numpy())) <= limit, w.name
    for w_h in m.w_h:
        blocks = np.split(w_h.numpy(), G, axis=1)
        for q in blocks:
            np.testing.assert_allclose(q.T @ q, np.eye(H), atol=1e-5, err_msg=w_h.name)
        for i in range(G):
            for j in range(i):
                assert not np.allclose(blocks[i], blocks[j]), (w_h.name, i, j)  # each gate its own draw
    # Only the LSTM's forget gate (its second block) starts at 1.
    want = np.zeros(G * H)
    if cell == "lstm":
        want[H:2 * H] = 1.0
    for b in m.b:
        np.testing.assert_array_equal(b, want, err_msg=b.name)
    np.testing.assert_array_equal(m.b_out, 0.0)


@pytest.mark.parametrize("cell", M.MODEL_TYPES)
def test_dropout_is_off_outside_training(cell):
    """training=False drops nothing, seed or no seed; through the folded embedding table (B*T >= V)
    and the plain gather (B*T < V) alike."""
    m = make_model(cell, dropout=0.5, input_dropout=0.5)
    rng = np.random.default_rng(5)
    seed = tf.constant([7, 3], tf.int64)
    for batch, steps in ((3, 7), (1, 3)):
        ids = tf.constant(rng.integers(0, m.config.vocab_size, (batch, steps)), tf.int32)
        L, S, H = m.state_size
        state = tf.constant(rng.normal(0, 0.5, (L, S, batch, H)), tf.float32)
        want_logits, want_final = reference_forward(m, ids, state)
        for dropout_seed in (None, seed):
            logits, final = m(ids, state, dropout_seed=dropout_seed)
            np.testing.assert_allclose(logits, want_logits, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(final, want_final, rtol=1e-5, atol=1e-6)
        assert not np.allclose(m(ids, state, training=True, dropout_seed=seed)[0], want_logits)


def test_training_with_dropout_needs_a_seed():
    m = make_model("lstm", dropout=0.5)
    with pytest.raises(ValueError, match="dropout_seed"):
        m(tf.zeros([1, 2], tf.int32), m.initial_state(1), training=True)


@pytest.mark.parametrize("cell", M.MODEL_TYPES)
def test_loss_falls_with_adam_on_repeated_text(cell):
    text = "the quick brown fox jumps over the lazy dog. " * 20
    chars = sorted(set(text))
    data = np.array([chars.index(ch) for ch in text], np.int32)
    m = make_model(cell, vocab=len(chars), hidden=32, embed=8, dropout=0.1)
    optimizer = tf.keras.optimizers.Adam(0.02)
    B, T = 8, 24

    @M.graph_function(jit_compile=True)
    def train_step(x, y, state, step):
        with tf.GradientTape() as tape:
            logits, state = m(x, state, training=True, dropout_seed=tf.stack([tf.constant(0, tf.int64), step]))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, m.trainable_variables)]
        optimizer.apply_gradients(zip(tf.clip_by_global_norm(grads, 5.0)[0], m.trainable_variables))
        return loss, state

    rng = np.random.default_rng(0)
    state, losses = m.initial_state(B), []
    for step in range(80):
        starts = rng.integers(0, len(data) - T - 1, B)
        x = np.stack([data[s:s + T] for s in starts])
        y = np.stack([data[s + 1:s + T + 1] for s in starts])
        loss, state = train_step(x, y, state, tf.constant(step, tf.int64))
        losses.append(float(loss))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:3]), losses


# ---------------------------------------------------------------------------------------
# generate()


@pytest.fixture(scope="module")
def sampler():
    return make_model("lstm", vocab=20, hidden=16, seed=5)


PRIME = tf.constant([[1, 2, 3], [4, 5, 6]], tf.int32)


def test_generate_is_reproducible_per_seed(sampler):
    a = M.generate(sampler, PRIME, 40, seed=1)
    assert a.shape == (2, 40) and a.dtype == tf.int32
    np.testing.assert_array_equal(a, M.generate(sampler, PRIME, 40, seed=1))
    assert not np.array_equal(a, M.generate(sampler, PRIME, 40, seed=2))
    # A longer run repeats the shorter one first; n crosses a compiled-chunk boundary.
    long = M.generate(sampler, PRIME, M._CHUNK + 30, seed=1)
    np.testing.assert_array_equal(long[:, :40], a)
    assert M.generate(sampler, PRIME, 0).shape == (2, 0)
    with pytest.raises(ValueError):
        M.generate(sampler, PRIME, -1)


def test_generate_argmax_limits(sampler):
    greedy = M.generate(sampler, PRIME, 30, mode=0)
    np.testing.assert_array_equal(greedy, M.generate(sampler, PRIME, 30, temperature=1e-7, seed=3))
    np.testing.assert_array_equal(greedy, M.generate(sampler, PRIME, 30, top_k=1, seed=3))
    np.testing.assert_array_equal(greedy, M.generate(sampler, PRIME, 30, top_p=1e-6, seed=3))
    np.testing.assert_array_equal(greedy, M.generate(sampler, PRIME, 30, top_p=1e-46, seed=3))  # 0 in float32


def test_generate_matches_step_by_step_greedy(sampler):
    _, state = sampler(PRIME[:, :-1], sampler.initial_state(2))
    last, want = PRIME[:, -1], []
    for _ in range(10):
        logits, state = sampler.step(last, state)
        last = tf.argmax(logits, -1, output_type=tf.int32)
        want.append(last)
    np.testing.assert_array_equal(M.generate(sampler, PRIME, 10, mode=0), tf.stack(want, 1))


def test_generate_mode_2_samples_only_after_space(sampler):
    # With the greedy symbol as "space", mode 2 samples right after it and copies argmax elsewhere.
    greedy = M.generate(sampler, PRIME, 60, mode=0).numpy()
    space = int(np.bincount(greedy.ravel()).argmax())
    out = M.generate(sampler, PRIME, 60, mode=2, space_id=space, temperature=5.0, seed=4).numpy()
    _, state = sampler(PRIME[:, :-1], sampler.initial_state(2))
    last = PRIME[:, -1]
    for t in range(60):
        logits, state = sampler.step(last, state)
        argmax = np.argmax(logits.numpy(), -1)
        after_space = last.numpy() == space
        np.testing.assert_array_equal(out[~after_space, t], argmax[~after_space])
        last = tf.constant(out[:, t])
    assert (out != greedy).any()  # it did sample somewhere
    np.testing.assert_array_equal(M.generate(sampler, PRIME, 60, mode=2, space_id=-1, seed=4), greedy)


def test_generate_mode_2_samples_the_whole_first_jamo_syllable(sampler):
    """Under --unit jamo a word's first character is an initial, a vowel and maybe a final: mode 2
    sampled only the initial, and the vowel and final were always the most likely ones."""
    greedy = M.generate(sampler, PRIME, 80, mode=0).numpy()
    space = int(np.bincount(greedy.ravel()).argmax())
    initials = [i for i in range(0, sampler.config.vocab_size, 2) if i != space]  # disjoint kinds, as jamo are
    vowels = [i for i in range(1, sampler.config.vocab_size, 2) if i != space]
    out = M.generate(sampler, PRIME, 80, mode=2, space_id=space, initial_ids=initials, vowel_ids=vowels,
                     temperature=5.0, seed=4).numpy()
    _, state = sampler(PRIME[:, :-1], sampler.initial_state(2))
    prime = PRIME.numpy()  # a prime that ends in a space and an initial is inside a word's first character
    last, sampled_inside = prime[:, -1], 0
    in_word = (prime[:, -2] == space) & np.isin(last, initials)
    for t in range(80):
        logits, state = sampler.step(tf.constant(last), state)
        argmax = np.argmax(logits.numpy(), -1)
        after_space = last == space
        greedy_here = ~(after_space | in_word)
        np.testing.assert_array_equal(out[greedy_here, t], argmax[greedy_here])
        sampled_inside += int((in_word & (out[:, t] != argmax)).sum())
        nxt = out[:, t]
        in_word = (after_space & np.isin(nxt, initials)) | (in_word & np.isin(last, initials) & np.isin(nxt, vowels))
        last = nxt
    assert sampled_inside > 0  # a vowel (or what followed it) was drawn, not taken as the most likely
    # A prime that ends in a space and an initial (ㄸ typed after a word): its vowel is drawn too.
    prime = tf.constant([[7, space, initials[0]]], tf.int32)
    firsts = {int(M.generate(sampler, prime, 1, mode=2, space_id=space, initial_ids=initials, vowel_ids=vowels,
                             temperature=5.0, seed=seed)[0, 0]) for seed in range(30)}
    assert len(firsts) > 1, firsts


def test_top_k_and_top_p_restrict_the_choices(sampler):
    _, state = sampler(PRIME[:, :-1], sampler.initial_state(2))
    logits, _ = sampler.step(PRIME[:, -1], state)
    top2 = np.argsort(-logits.numpy(), -1)[:, :2]
    firsts = np.stack([M.generate(sampler, PRIME, 1, top_k=2, temperature=3.0, seed=s)[:, 0] for s in range(20)], 1)
    assert all(set(firsts[i]) <= set(top2[i]) for i in range(2))
    probs = tf.nn.softmax(logits).numpy()
    p = float(np.sort(probs, -1)[:, ::-1][:, :2].sum(-1).min()) - 1e-4  # the top two always cover p
    firsts = np.stack([M.generate(sampler, PRIME, 1, top_p=p, seed=s)[:, 0] for s in range(20)], 1)
    assert all(set(firsts[i]) <= set(top2[i]) for i in range(2))


# Draws of one symbol from a fixed distribution, many rows at once: each frequency within 5 standard
# errors of its probability (a sampler that under-draws rare symbols 4x, or ignores the temperature, is
# far outside that).
DRAW_PROBS = np.array([0.5, 0.3, 0.15, 0.05])


def assert_draws_follow(ids: np.ndarray, probs: np.ndarray) -> None:
    freqs = np.bincount(ids, minlength=len(probs)) / len(ids)
    tolerance = 5 * np.sqrt(probs * (1 - probs) / len(ids))
    assert np.all(np.abs(freqs - probs) < tolerance), (freqs, probs)


@pytest.mark.parametrize("temperature", [1.0, 2.0, 0.5])
def test_sampling_draws_each_symbol_with_its_probability(temperature) -> None:
    """The exponential race of generation against softmax(logits / temperature)."""
    rows = 40_000
    logits = tf.constant(np.log(np.tile(DRAW_PROBS, (rows, 1))), tf.float32)
    _, opts = M._options(0, temperature, top_k=0, top_p=1.0, mode=1, seed=7, space_id=-1, initial_ids=(),
                         vowel_ids=())
    ids, _ = M._pick(logits, tf.zeros([rows], tf.int32), tf.zeros([rows], tf.bool), tf.constant(3),
                     opts._replace(seed=M.mixed_seed(opts.seed)))
    tempered = DRAW_PROBS ** (1 / temperature)
    assert_draws_follow(ids.numpy(), tempered / tempered.sum())


def test_filter_logits_keeps_the_nucleus_of_the_top_k() -> None:
    """Against a plain numpy reading of the flags: the top_k symbols, then of their renormalized
    distribution the fewest whose mass reaches top_p (a symbol stays while the mass ranked above
    it is below top_p)."""
    rng = np.random.default_rng(0)
    logits = (3.0 * rng.standard_normal((200, 20))).astype(np.float32)
    for top_k in (0, 1, 3, 8):
        for top_p in (0.3, 0.7, 0.95, 1.0):
            kept = np.isfinite(M._filter_logits(tf.constant(logits), tf.constant(top_k), tf.constant(top_p)).numpy())
            ranked = np.argsort(-logits, axis=-1)[:, :top_k or None]
            probs = np.exp(np.take_along_axis(logits, ranked, -1).astype(np.float64))
            probs /= probs.sum(-1, keepdims=True)
            mass_before = np.cumsum(probs, -1) - probs
            want = np.zeros_like(kept)
            for row, (order, before) in enumerate(zip(ranked, mass_before)):
                want[row, order[before < top_p]] = True
            np.testing.assert_array_equal(kept, want, err_msg=f"top_k={top_k} top_p={top_p}")
    # The edges of top_p: just above a cumulative mass keeps one more symbol than just below it.
    three = tf.constant(np.log([[0.5, 0.3, 0.2]]), tf.float32)
    for top_p, count in ((0.5 - 1e-4, 1), (0.5 + 1e-4, 2), (0.8 + 1e-4, 3)):
        assert np.isfinite(M._filter_logits(three, tf.constant(0), tf.constant(top_p)).numpy()).sum() == count


def test_generate_chunk_streams_like_one_call(sampler):
    whole = M.generate(sampler, PRIME, 50, seed=9)
    state, last = M.prime_state(sampler, PRIME)
    np.testing.assert_allclose(state, sampler(PRIME[:, :-1], sampler.initial_state(2))[1], atol=1e-6)
    # A prime of three compiled chunks (fed step by step: not through the training pass, which kept
    # every step's gate values), and one of a single symbol, which feeds nothing.
    long_prime = tf.constant(np.random.default_rng(3).integers(0, sampler.config.vocab_size, (2, 1100)), tf.int32)
    state, last = M.prime_state(sampler, long_prime)
    np.testing.assert_allclose(state, sampler(long_prime[:, :-1], sampler.initial_state(2))[1], atol=1e-5)
    np.testing.assert_array_equal(last, long_prime[:, -1])
    state, last = M.prime_state(sampler, PRIME[:, :1])
    np.testing.assert_array_equal(state, sampler.initial_state(2))
    state, last = M.prime_state(sampler, PRIME)
    first, state, in_word_start = M.generate_chunk(sampler, state, last, 20, seed=9)
    second, _, _ = M.generate_chunk(sampler, state, first[:, -1], 30, seed=9, offset=20, in_word_start=in_word_start)
    np.testing.assert_array_equal(tf.concat([first, second], 1), whole)
    # Past generate's compiled chunk of 512 symbols: each chunk draws its own numbers, and n is whole.
    long = M.generate(sampler, PRIME, 1100, seed=9, temperature=3.0)
    assert long.shape == (2, 1100)
    state, last = M.prime_state(sampler, PRIME)
    first, state, _ = M.generate_chunk(sampler, state, last, 600, seed=9, temperature=3.0)
    second, _, _ = M.generate_chunk(sampler, state, first[:, -1], 500, seed=9, temperature=3.0, offset=600)
    np.testing.assert_array_equal(tf.concat([first, second], 1), long)
    # Mode 2's place inside a word's first character goes on across the calls too (cuts 1, 8, 15, ...),
    # and from a prime that ends inside one (a space and an initial), given prime_word_start.
    greedy = M.generate(sampler, PRIME, 50, mode=0).numpy()
    kinds = range(sampler.config.vocab_size)
    words = dict(mode=2, space_id=int(np.bincount(greedy.ravel()).argmax()), initial_ids=list(kinds[::2]),
                 vowel_ids=list(kinds[1::2]), temperature=5.0, seed=9)
    in_word = tf.constant([[7, words["space_id"], 0], [4, 5, 6]], tf.int32)  # row 0: inside a word's first character
    for prime in (PRIME, in_word):
        whole = M.generate(sampler, prime, 50, **words)
        starts = M.prime_word_start(prime, *(words[k] for k in ("mode", "space_id", "initial_ids", "vowel_ids")))
        for cut in range(1, 50, 7):
            state, last = M.prime_state(sampler, prime)
            first, state, in_word_start = M.generate_chunk(sampler, state, last, cut, in_word_start=starts, **words)
            second, _, _ = M.generate_chunk(sampler, state, first[:, -1], 50 - cut, offset=cut,
                                            in_word_start=in_word_start, **words)
            np.testing.assert_array_equal(tf.concat([first, second], 1), whole, err_msg=f"cut {cut}")
    assert M.prime_word_start(in_word, *(words[k] for k in ("mode", "space_id", "initial_ids", "vowel_ids"))
                              ).numpy().tolist()[0]
    # A vocabulary without a space (space_id -1): a prime of an initial and its vowel, 가, was read
    # as following a space, the padding before it, and its next symbols were sampled.
    assert M.prime_word_start([[5, 6]], 2, -1, [5], [6]).numpy().tolist() == [False]
    assert M.prime_word_start([[5]], 2, -1, [5], [6]).numpy().tolist() == [False]


def test_generate_refuses_filters_that_keep_nothing(sampler) -> None:
    for bad in (dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1)):
        with pytest.raises(ValueError, match="top_k must be >= 0 and top_p in"):
            M.generate(sampler, PRIME, 5, **bad)


def test_generate_refuses_an_unknown_mode(sampler) -> None:
    """A mode outside 0, 1, 2 would fall through to argmax everywhere without a word."""
    for bad in (3, -1):
        with pytest.raises(ValueError, match="mode must be 0"):
            M.generate(sampler, PRIME, 5, mode=bad)
        with pytest.raises(ValueError, match="mode must be 0"):
            M.generate_chunk(sampler, sampler.initial_state(2), PRIME[:, -1], 5, mode=bad)


def test_generate_refuses_a_temperature_or_prime_ids_it_cannot_use(sampler) -> None:
    """A NaN temperature drew the last id at every step, a negative one was greedy in silence; an id
    past the vocabulary failed deep in the graph, or (the last one, under XLA) was clamped in silence."""
    for bad in (float("nan"), -1.0, float("inf")):
        with pytest.raises(ValueError, match="temperature must be finite and >= 0"):
            M.generate(sampler, PRIME, 5, temperature=bad)
    V = sampler.config.vocab_size
    for bad in ([[1, 2, V]], [[V, 1, 2]], [[1, -1]]):
        with pytest.raises(ValueError, match=f"prime_ids must be ids of the vocabulary, 0 to {V - 1}"):
            M.generate(sampler, bad, 5)
        with pytest.raises(ValueError, match="prime_ids must be ids of the vocabulary"):
            M.prime_state(sampler, bad)
    assert M.generate(sampler, [[0, V - 1]], 3, temperature=0.0).shape == (1, 3)


def test_each_step_draws_its_own_numbers() -> None:
    """With the same logits at every step (a zeroed output layer), only the step in the random
    seed makes the draws differ: one shared draw would repeat one symbol all along."""
    net = make_model("lstm", vocab=20, hidden=8, seed=1)
    net.w_out.assign(tf.zeros_like(net.w_out))
    out = M.generate(net, [[1, 2, 3]], 200, seed=3).numpy()[0]
    assert_draws_follow(out, np.full(20, 1 / 20))


def test_all_64_bits_of_the_seed_count(sampler) -> None:
    """Seeds that differ only above bit 31 give different text (XLA reads 32 bits of a seed element)."""
    a = M.generate(sampler, PRIME, 40, seed=5, temperature=3.0)
    assert not np.array_equal(a, M.generate(sampler, PRIME, 40, seed=5 + 2**32, temperature=3.0))
    assert not np.array_equal(a, M.generate(sampler, PRIME, 40, seed=5 + 2**40, temperature=3.0))


@pytest.mark.parametrize("prime", [[[4]], [[4, 9]]])
def test_short_primes_feed_all_but_their_last_symbol(sampler, prime) -> None:
    ids = tf.constant(prime, tf.int32)
    state, last = M.prime_state(sampler, ids)
    want = sampler(ids[:, :-1], sampler.initial_state(1))[1] if ids.shape[1] > 1 else sampler.initial_state(1)
    np.testing.assert_allclose(state, want, atol=1e-6)
    np.testing.assert_array_equal(last, ids[:, -1])
    logits, _ = sampler.step(ids[:, -1], want)
    np.testing.assert_array_equal(M.generate(sampler, ids, 1, mode=0)[:, 0], tf.argmax(logits, -1, output_type=tf.int32))


def test_a_batch_of_any_size_compiles_under_xla() -> None:
    """A caller's own compiled function may leave the batch open ([None, T] ids)."""
    net = M.CharRNN(M.ModelConfig("lstm", 11, 2, 8, 4), seed=0)
    step = tf.function(lambda ids, state: net(ids, state), jit_compile=True, input_signature=[
        tf.TensorSpec([None, 5], tf.int32), tf.TensorSpec([2, 2, None, 8], tf.float32)])
    for batch in (1, 3):
        logits, _ = step(tf.zeros([batch, 5], tf.int32), net.initial_state(batch))
        np.testing.assert_allclose(logits, net(tf.zeros([batch, 5], tf.int32), net.initial_state(batch))[0],
                                   atol=1e-5)


def test_a_model_that_generated_is_freed() -> None:
    """The compiled generators are cached per model, but must not keep it (and its graphs) alive."""
    import gc
    import weakref

    net = M.CharRNN(M.ModelConfig("gru", 11, 1, 8, 4), seed=0)
    M.generate(net, [[1, 2]], 3)
    gone = weakref.ref(net)
    del net
    gc.collect()
    assert gone() is None


_FAULTS_PER_STEP = """
import os
import resource
import model
import tensorflow as tf

m = model.CharRNN(model.ModelConfig("lstm", 65, 2, 128, 64), seed=0)
ids, state = tf.zeros([50, 50], tf.int32), m.initial_state(50)

@model.graph_function(jit_compile=True)
def step(ids, state):
    with tf.GradientTape() as tape:
        logits, state = m(ids, state)
        loss = tf.reduce_mean(logits)
    return tape.gradient(loss, m.trainable_variables), state

for _ in range(3):
    step(ids, state)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    float(tf.reduce_sum(step(ids, state)[0][0]))
print(os.environ["TF_CPU_ALLOCATOR_USE_BFC"], (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) * resource.getpagesize() / 5 / 2**20)
"""


def test_importing_model_pools_cpu_memory_for_xla_scratch_buffers():
    """XLA's scratch buffers (about 37 MiB per 2x128 B50 T50 train step) come from TensorFlow's
    pooled allocator, not fresh pages faulted in at every step; a user's own setting wins. Unpooled,
    the faults depend on the machine's malloc (36.7 MiB per step on the Milan EPYC, none on the Zen 5
    one of 2026-12-02), so only the pooled figure is asserted."""

    def allocator_and_mib_faulted_per_step(**env) -> tuple[str, float]:
        result = subprocess.run([sys.executable, "-c", _FAULTS_PER_STEP], cwd=Path(M.__file__).parent,
                                env={k: v for k, v in os.environ.items() if k != "TF_CPU_ALLOCATOR_USE_BFC"} | env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
        allocator, mib = result.stdout.split()[-2:]
        return allocator, float(mib)

    allocator, mib = allocator_and_mib_faulted_per_step()
    assert allocator == "true" and mib < 6
    assert allocator_and_mib_faulted_per_step(TF_CPU_ALLOCATOR_USE_BFC="false")[0] == "false"
