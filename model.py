"""Character-level RNN language model (LSTM / GRU / vanilla RNN) in plain TensorFlow.

No Keras layers: on small CPUs they train at about half of PyTorch's speed. Each recurrent
layer instead hoists its input projection out of the time loop (one big matmul for all
steps) and has a hand-written whole-sequence backward pass (tf.custom_gradient), so the
recurrent weight gradient is ONE big matmul after the loop instead of a small one per step.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import weakref
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import runs
from utils import MODEL_TYPES

runs.pool_cpu_memory()  # before TensorFlow makes its first tensor
import tensorflow as tf  # noqa: E402


def graph_function(fn: Callable | None = None, **options) -> Callable:
    """tf.function with autograph off, for every graph this project traces. Each loop and branch
    in them is an explicit tf.while_loop or tf.cond, so autograph's conversion of the Python
    source would change nothing, and it cost about 2 of the 7-10 seconds each train.py and
    sample.py took to start. As tf.function, works as a decorator: @graph_function(...)."""
    return tf.function(fn, autograph=False, **options)


@dataclass(frozen=True)
class ModelConfig:
    model: str
    vocab_size: int
    num_layers: int
    rnn_size: int
    embedding_size: int
    dropout: float = 0.0  # between layers and before the output layer
    input_dropout: float = 0.0  # on the embeddings

    def __post_init__(self) -> None:
        if self.model not in MODEL_TYPES:
            raise ValueError(f"model must be one of {MODEL_TYPES}, got {self.model!r}")
        for name in ("vocab_size", "num_layers", "rnn_size", "embedding_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("dropout", "input_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        # Ignore unknown keys so a config.json holding other settings can be passed as is.
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------------------
# Cells. Each cell is a forward step plus its hand-derived backward pass in three parts; the
# sequence driver below (_recurrent_layer) is shared by all of them.
#   forward(xw, hw, state) -> (new_state, saved)
#       xw = x_t @ W_x + b and hw = h_{t-1} @ W_h, both [B, G*H]; state: a tuple of [B, H];
#       saved: a tuple of saved_parts [B, H], what the backward pass needs besides the states,
#       each part on a tape of its own (a concat per step, split after the loop, costs copies).
#   prepare(saved, prev) -> factors
#       Everything else of the backward pass that does not depend on the incoming gradients,
#       computed for all T steps at once outside the loop ([T, ...] tensors; prev is the
#       tuple of [T, B, H] states before each step).
#   step(factors_t, dnew) -> (dhw, dprev, record)
#       One reverse step: dnew = gradients w.r.t. the new state; dhw = gradient w.r.t. hw;
#       dprev = gradients w.r.t. the previous state EXCEPT through hw (the driver adds
#       dhw @ W_h^T); record = what finish() needs from this step, [B, recorded_parts*H].
#   finish(factors, records) -> (dxw, dhw) for all steps, [T, B, G*H], after the loop.
# Factors stay separate [T, B, H] parts, and a gate-wide tensor is built once, as a tf.concat of
# the per-gate products: XLA:CPU writes every concatenate out as a copy of its own, so a
# [T, B, G*H] concat of stored factors, or a concat multiplied by factors in a second pass, each
# cost whole extra passes over 41 MB at 2x512. For the same reason the LSTM records the gate
# gradients its loop computes anyway instead of rebuilding them after it (measured, LSTM step
# on Zen 4: 2x512 +8%, 2x128 +6%).


def _activate(x: tf.Tensor, sigmoid_blocks: tuple[bool, ...]) -> tf.Tensor:
    """sigmoid on the H-wide blocks of x marked True, tanh on the others, as ONE tanh:
    sigmoid(x) = 0.5 * tanh(x / 2) + 0.5. XLA:CPU's sigmoid is slow, and so are separate
    activations per gate (measured, LSTM forward loop at B50 H128 T50: 4.3 ms -> 2.0 ms)."""
    H = x.shape[-1] // len(sigmoid_blocks)
    scale = tf.repeat(tf.constant([0.5 if s else 1.0 for s in sigmoid_blocks], x.dtype), H)
    shift = tf.repeat(tf.constant([0.5 if s else 0.0 for s in sigmoid_blocks], x.dtype), H)
    return scale * tf.tanh(scale * x) + shift


class _LSTM:
    """Gates i, f, g, o (PyTorch's order); state (h, c)."""

    gates, state_parts, saved_parts, recorded_parts = 4, 2, 6, 4

    @staticmethod
    def forward(xw, hw, state):
        h, c_prev = state
        gates = _activate(xw + hw, (True, True, False, True))
        i, f, g, o = tf.split(gates, 4, axis=-1)
        c = f * c_prev + i * g
        tanh_c = tf.tanh(c)
        # The backward's factors, computed here where the gates and tanh(c) are at hand instead
        # of in prepare, which re-read them for all T steps (measured, one 2x512 batch group on
        # one Zen 4 core: -1.5% time; GRU -2.5% from its parts' own tapes alone).
        # Gate pre-activation gradients are the last four factors times dc (i, f, g) or dh (o).
        factors = (o * (1.0 - tanh_c * tanh_c), f, g * i * (1.0 - i), c_prev * f * (1.0 - f), i * (1.0 - g * g),
                   tanh_c * o * (1.0 - o))
        return (o * tanh_c, c), factors

    @staticmethod
    def prepare(saved, prev):
        return saved

    @staticmethod
    def step(factors, dnew):
        dc_dh, f, di, df, dg, do = factors
        dh, dc = dnew
        dc = dc + dh * dc_dh
        dz = tf.concat([dc * di, dc * df, dc * dg, dh * do], axis=-1)
        return dz, (0.0, dc * f), dz

    @staticmethod
    def finish(factors, dz):
        return dz, dz


class _GRU:
    """Gates z (update), r (reset), n (candidate), with the reset gate applied after the
    recurrent matmul (cuDNN/PyTorch style) so that h @ W_h is one matmul for all gates.
    One bias per gate (no separate recurrent bias): h' = (1 - z) * n + z * h."""

    gates, state_parts, saved_parts, recorded_parts = 3, 1, 4, 1

    @staticmethod
    def forward(xw, hw, state):
        (h,) = state
        xz, xr, xn = tf.split(xw, 3, axis=-1)
        hz, hr, hn = tf.split(hw, 3, axis=-1)
        z, r = tf.split(_activate(tf.concat([xz + hz, xr + hr], axis=-1), (True, True)), 2, axis=-1)
        n = tf.tanh(xn + r * hn)
        return ((1.0 - z) * n + z * h,), (z, r, n, hn)

    @staticmethod
    def prepare(saved, prev):
        z, r, n, hn = saved
        # Every gate gradient is dh times a factor: d/dz, d/dr (through n) and d/dn; the
        # gradient w.r.t. hn is d/dn times r.
        dn = (1.0 - z) * (1.0 - n * n)
        dz = (prev[0] - n) * z * (1.0 - z)
        dr = dn * hn * r * (1.0 - r)
        return z, dz, dr, dn, dn * r

    @staticmethod
    def _gate_gradients(dh, dz, dr, d_last):
        """dh times the factors of z, r and the last block (n, or hn for dhw), as one [..., 3H]."""
        return tf.concat([dh * dz, dh * dr, dh * d_last], axis=-1)

    @staticmethod
    def step(factors, dnew):
        z, dz, dr, _, dn_r = factors
        (dh,) = dnew
        return _GRU._gate_gradients(dh, dz, dr, dn_r), (dh * z,), dh

    @staticmethod
    def finish(factors, dh):
        _, dz, dr, dn, dn_r = factors
        return _GRU._gate_gradients(dh, dz, dr, dn), _GRU._gate_gradients(dh, dz, dr, dn_r)


class _RNN:
    """Elman RNN: h' = tanh(x @ W_x + b + h @ W_h)."""

    gates, state_parts, saved_parts, recorded_parts = 1, 1, 1, 1

    @staticmethod
    def forward(xw, hw, state):
        h = tf.tanh(xw + hw)
        return (h,), (h,)

    @staticmethod
    def prepare(saved, prev):
        return (1.0 - saved[0] * saved[0],)

    @staticmethod
    def step(factors, dnew):
        dz = dnew[0] * factors[0]
        return dz, (0.0,), dz

    @staticmethod
    def finish(factors, dz):
        return dz, dz


_CELLS = {"lstm": _LSTM, "gru": _GRU, "rnn": _RNN}


def _xla_update_slice():
    """XLA's in-place dynamic_update_slice(buffer, update, start) when the graph being traced is
    compiled by XLA (tf.function(jit_compile=True)), else None. TensorFlow has no public API for
    either; where the internal ones are gone, None, and callers take their plain formulation."""
    try:
        from tensorflow.compiler.tf2xla.python import xla
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util
        in_xla = control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph())
        return xla.dynamic_update_slice if in_xla else None
    except (ImportError, AttributeError):
        return None


def _time_steps(x: tf.Tensor) -> tf.Tensor | int:
    # A static length keeps TensorArray sizes compile-time constants for XLA.
    return x.shape[0] if x.shape[0] is not None else tf.shape(x)[0]


def _blocks(w: tf.Tensor, count: int, axis: int = 1) -> list[tf.Tensor]:
    """w split along axis into `count` (at most its length there) near-equal blocks."""
    n = w.shape[axis]
    count = min(count, n)
    return tf.split(w, [n // count + (i < n % count) for i in range(count)], axis=axis)


def _blockwise_matmul(x: tf.Tensor, w_blocks: list[tf.Tensor]) -> tf.Tensor:
    """x @ concat(w_blocks) as one matmul per block. Inside a loop, XLA:CPU runs one
    [B, H] x [H, G*H] matmul on a single thread but independent matmuls side by side on
    both cores (measured, Xeon with 2 cores, 2x512 LSTM train step: per-gate blocks in the
    forward +12%, the backward's in two halves +4% more; 2x128 unchanged)."""
    return tf.concat([tf.matmul(x, w) for w in w_blocks], axis=-1)


def _recurrent_layer(cell, xw: tf.Tensor, w_h: tf.Tensor, state0: tf.Tensor):
    """Runs one layer over a sequence.

    xw: [T, B, G*H] time-major input projection (bias included); w_h: [H, G*H];
    state0: [S, B, H], all of one dtype (float32, or float16 under mixed precision).
    Returns (outputs h_t [T, B, H], final state [S, B, H]).
    """

    @tf.custom_gradient
    def layer(xw, w_h, state0):
        T = _time_steps(xw)
        parts = cell.state_parts
        B, H = state0.shape[1:]
        w_h_gates = _blocks(w_h, cell.gates)
        # The dW_h matmul's left operand, h_{t-1} transposed for all steps ([H, T*B]), which
        # under XLA the loop writes in place step by step: transposing all T*B rows after the
        # loop is a slow copy (measured, 2x512 LSTM on Zen 4: 10.7 ms of copies per step and
        # batch group become 3.3 ms of writes). Without XLA every write would copy the buffer.
        update_slice = _xla_update_slice() if isinstance(T, int) and B is not None else None
        h_prev_t_slot = (tf.zeros([H, T * B], xw.dtype),) if update_slice else ()  # a loop variable, or none

        def fwd(t, state, tapes, *h_prev_t_slot):
            if update_slice:
                h_prev_t_slot = (update_slice(h_prev_t_slot[0], tf.transpose(state[0]), [0, t * B]),)
            new, saved = cell.forward(xw[t], _blockwise_matmul(state[0], w_h_gates), state)
            tapes = tuple(tape.write(t, part) for tape, part in zip(tapes, new + saved))
            return (t + 1, new, tapes) + h_prev_t_slot

        _, final, tapes, *h_prev_t_slot = tf.while_loop(
            lambda t, *_: t < T,
            fwd,
            (0, tuple(tf.unstack(state0, parts)),
             tuple(tf.TensorArray(xw.dtype, size=T, element_shape=[B, H]) for _ in range(parts + cell.saved_parts)))
            + h_prev_t_slot,
            maximum_iterations=T,
        )
        # One [T, B, H] tape per state part and saved part: stacking (h, c) per step cost copies
        # (measured -3% at 2x512).
        tapes = tuple(tape.stack() for tape in tapes)
        states, saved = tapes[:parts], tapes[parts:]
        final = tf.stack(final)

        def grad(d_outputs, d_final):
            if d_outputs is None:
                d_outputs = tf.zeros_like(states[0])
            if d_final is None:
                d_final = tf.zeros_like(final)
            prev_states = tuple(
                tf.concat([s0[None], s[:-1]], axis=0) for s0, s in zip(tf.unstack(state0, parts), states)
            )
            factors = cell.prepare(saved, prev_states)
            # Transposed once, not per step (measured: a per-step transpose_b is ~5% slower); as
            # the transposes of w_h's row halves, which XLA:CPU copies 2.3x faster than column
            # slices of w_h^T (measured, [512, 2048] on Zen 4).
            w_h_t_halves = [tf.transpose(rows) for rows in _blocks(w_h, 2, axis=0)]

            def bwd(t, dstate, records):
                dnew = (dstate[0] + d_outputs[t],) + dstate[1:]
                dhw, dprev, record = cell.step(tuple(f[t] for f in factors), dnew)
                dh_prev = dprev[0] + _blockwise_matmul(dhw, w_h_t_halves)
                return t - 1, (dh_prev,) + tuple(dprev[1:]), records.write(t, record)

            _, dstate0, records = tf.while_loop(
                lambda t, *_: t >= 0,
                bwd,
                (T - 1, tuple(tf.unstack(d_final, parts)),
                 tf.TensorArray(xw.dtype, size=T, element_shape=[B, cell.recorded_parts * H])),
                maximum_iterations=T,
            )
            dxw, dhw = cell.finish(factors, records.stack())
            # The whole point of the hand-written backward: one [H, T*B] x [T*B, G*H] matmul.
            # Without the loop's in-place copy, its left operand is prev_states[0] transposed,
            # assembled afresh from its two blocks: a transpose of prev_states[0] itself XLA
            # would fold into the dot.
            h_prev_t = h_prev_t_slot[0] if h_prev_t_slot else _transposed_concat(
                [state0[0], tf.reshape(states[0][:-1], [-1, H])], axis=0)
            dw_h = tf.matmul(h_prev_t, tf.reshape(dhw, [-1, w_h.shape[1]]))
            return dxw, dw_h, tf.stack(dstate0)

        return (states[0], final), grad

    return layer(xw, w_h, state0)


def _transposed_concat(blocks: list[tf.Tensor], axis: int) -> tf.Tensor:
    """concat(blocks, axis)^T of 2-D blocks, built as the concat of their transposes: the left
    operand x^T of a weight-gradient matmul x^T @ dy over B*T rows. On an AVX2 EPYC (Milan)
    XLA:CPU's dot that contracts the leading axis of both operands (transpose_a) ran at half the
    speed of a plain one, copy included ([5000, 512]^T x [5000, 2048]: 33 -> 58 GFLOP/s on one
    thread, 83 -> 103 on two). On a Zen 4 EPYC the transposed dot was the faster (195 vs 163) but
    the whole step gained only at 2x512 and lost at 2x128, so the copy stays. A lone transpose
    XLA folds back into the dot; the concat keeps it a copy."""
    return tf.concat([tf.transpose(b) for b in blocks], axis=1 - axis)


@tf.custom_gradient
def _linear(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor):
    """x @ w + b for all B*T rows at once, whose backward gets db out of the dW matmul as
    [x, 1]^T @ dy. XLA:CPU runs the plain reduction of dy over B*T rows slowly (measured: the
    train step 15% faster at 2x128), and autodiff of [x, 1] @ [w; b] would instead produce an
    odd-width dx [B*T, I+1], a matmul 25% slower than the aligned one here (2x512 profile)."""

    def grad(dy):
        dwb = tf.matmul(_transposed_concat([x, tf.ones_like(x[:, :1])], axis=1), dy)
        return tf.matmul(dy, w, transpose_b=True), dwb[:-1], dwb[-1]

    return tf.matmul(x, w) + b, grad


@tf.custom_gradient
def _output_layer(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor):
    """x @ w + b for all B*T rows (x [N, H], w [H, V]): the logits. The weight gradient is a dot
    that contracts the N axis of both x and dy [N, V]; XLA:CPU runs it about twice as fast when
    the operand it reads transposed is the narrow one (measured, Zen 4, one thread, N=2500, H=512:
    x^T dy 7.6 ms and (dy^T x)^T 4.0 ms at V=65; 70 and 72 ms at V=2,500). So with fewer symbols
    than hidden units it takes (dy^T x)^T, transposed as a concat of blocks, which XLA cannot
    fold back into the slow dot (a lone transpose it does fold)."""

    def grad(dy):
        if w.shape[1] < w.shape[0]:
            dw = _transposed_concat(_blocks(tf.matmul(dy, x, transpose_a=True), 2, axis=0), axis=0)
        else:
            dw = tf.matmul(x, dy, transpose_a=True)
        return tf.matmul(dy, w, transpose_b=True), dw, tf.reduce_sum(dy, axis=0)

    return tf.matmul(x, w) + b, grad


# ---------------------------------------------------------------------------------------
# Model


class CharRNN(tf.Module):
    def __init__(self, config: ModelConfig, seed: int = 0):
        super().__init__(name="char_rnn")
        self.config = config
        self.cell = _CELLS[config.model]
        cfg, G, H = config, self.cell.gates, config.rnn_size
        counter = itertools.count()

        def next_seed():
            # stateless_* with (seed, k): the same seed gives the same weights on every run.
            return tf.constant([seed, next(counter)], tf.int64)

        def glorot(shape):
            limit = math.sqrt(6.0 / (shape[0] + shape[1]))
            return tf.random.stateless_uniform(shape, next_seed(), -limit, limit)

        def orthogonal(n, blocks):
            # One orthogonal [H, H] block per gate keeps each gate's recurrence well conditioned.
            out = []
            for _ in range(blocks):
                q, r = tf.linalg.qr(tf.random.stateless_normal([n, n], next_seed()))
                out.append(q * tf.sign(tf.linalg.diag_part(r))[None, :])
            return tf.concat(out, axis=1)

        self.embedding = tf.Variable(glorot([cfg.vocab_size, cfg.embedding_size]), name="embedding")
        self.w_x, self.w_h, self.b = [], [], []
        for layer in range(cfg.num_layers):
            fan_in = cfg.embedding_size if layer == 0 else H
            self.w_x.append(tf.Variable(glorot([fan_in, G * H]), name=f"w_x_{layer}"))
            self.w_h.append(tf.Variable(orthogonal(H, G), name=f"w_h_{layer}"))
            # LSTM forget-gate bias 1: remember by default early in training.
            bias = [0.0] * (G * H) if cfg.model != "lstm" else [0.0] * H + [1.0] * H + [0.0] * (2 * H)
            self.b.append(tf.Variable(bias, name=f"b_{layer}"))
        self.w_out = tf.Variable(glorot([H, cfg.vocab_size]), name="w_out")
        self.b_out = tf.Variable(tf.zeros([cfg.vocab_size]), name="b_out")

    @property
    def state_size(self) -> tuple[int, int, int]:
        """(num_layers, S, H); the state tensor is [num_layers, S, B, H], S = 2 for lstm (h, c)."""
        return (self.config.num_layers, self.cell.state_parts, self.config.rnn_size)

    def initial_state(self, batch_size: int | tf.Tensor) -> tf.Tensor:
        L, S, H = self.state_size
        return tf.zeros([L, S, batch_size, H], tf.float32)

    def _dropout(self, x, rate: float, training: bool, seed, site: int):
        if not training or rate == 0.0:
            return x
        if seed is None:
            raise ValueError("training with dropout needs dropout_seed (a [2] int tensor)")
        # Folding in the site gives every dropout layer its own mask from one seed per step.
        site_seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), site)
        return tf.nn.experimental.stateless_dropout(x, rate, seed=site_seed)

    def _project(self, x: tf.Tensor, layer: int) -> tf.Tensor:
        """x [T, B, I] -> the layer's input projection xw [T, B, G*H], bias included, in x's dtype."""
        w, b = (tf.cast(v, x.dtype) for v in (self.w_x[layer], self.b[layer]))
        xw = _linear(tf.reshape(x, [-1, x.shape[-1]]), w, b)
        return tf.reshape(xw, [tf.shape(x)[0], tf.shape(x)[1], xw.shape[-1]])

    def _embed(self, ids: tf.Tensor, training: bool, dropout_seed, dtype: tf.DType) -> tf.Tensor:
        """ids [T, B] -> layer 0's input projection xw [T, B, G*H] in dtype."""
        cfg = self.config
        embedding = tf.cast(self.embedding, dtype)
        positions = ids.shape.num_elements()
        if (cfg.input_dropout == 0.0 or not training) and positions and cfg.vocab_size <= positions:
            # Embedding and projection fold into one [V, G*H] table: the three matmuls over
            # B*T rows (forward, dW, dx) become one over V rows and a gather, whose gradient
            # is a fast segment sum (measured: train step -7% at 2x128 and 2x512, V=65).
            w, b = (tf.cast(v, dtype) for v in (self.w_x[0], self.b[0]))
            return tf.gather(tf.matmul(embedding, w) + b, ids)
        x = self._dropout(tf.gather(embedding, ids), cfg.input_dropout, training, dropout_seed, 0)
        return self._project(x, 0)

    def __call__(
        self,
        ids: tf.Tensor,
        state: tf.Tensor,
        training: bool = False,
        dropout_seed: tf.Tensor | None = None,
        compute_dtype: tf.DType = tf.float32,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """ids [B, T] int32, state [L, S, B, H] -> (logits [B, T, V], new state).

        Dropout (training=True) draws its masks from dropout_seed ([2] ints) with stateless
        RNG, so a resumed run repeats exactly; XLA draws other masks than TF's own kernels,
        so the same seed gives the same masks only under the same jit_compile setting.
        compute_dtype float16 is mixed precision: the weights stay float32 (their gradients
        too) and are cast for the matmuls and the recurrence; logits and state come back float32.
        """
        cfg, H = self.config, self.config.rnn_size
        ids = tf.transpose(tf.convert_to_tensor(ids, tf.int32))  # time-major: the loop slices axis 0
        T, B = tf.shape(ids)[0], tf.shape(ids)[1]
        state = tf.cast(state, compute_dtype)
        new_state = []
        for layer in range(cfg.num_layers):
            xw = self._embed(ids, training, dropout_seed, compute_dtype) if layer == 0 else self._project(x, layer)
            x, final = _recurrent_layer(self.cell, xw, tf.cast(self.w_h[layer], compute_dtype), state[layer])
            new_state.append(final)
            x = self._dropout(x, cfg.dropout, training, dropout_seed, layer + 1)
        x = tf.reshape(tf.transpose(x, [1, 0, 2]), [-1, H])  # [B*T, H], transposed while narrow
        logits = _output_layer(x, tf.cast(self.w_out, compute_dtype), tf.cast(self.b_out, compute_dtype))
        # The softmax and the loss in float32: float16 logits lose the small probabilities.
        return tf.cast(tf.reshape(logits, [B, T, cfg.vocab_size]), tf.float32), tf.cast(tf.stack(new_state), tf.float32)

    def step(self, ids: tf.Tensor, state: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One inference step: ids [B] int32, state [L, S, B, H] -> (logits [B, V], new state)."""
        x = tf.gather(self.embedding, ids)
        new_state = []
        for layer in range(self.config.num_layers):
            prev = tuple(tf.unstack(state[layer], self.cell.state_parts))
            xw = tf.matmul(x, self.w_x[layer]) + self.b[layer]
            new, _ = self.cell.forward(xw, tf.matmul(prev[0], self.w_h[layer]), prev)
            new_state.append(tf.stack(new))
            x = new[0]
        return tf.matmul(x, self.w_out) + self.b_out, tf.stack(new_state)


# ---------------------------------------------------------------------------------------
# Generation. The per-symbol loop runs inside one XLA-compiled tf.while_loop (about 40x
# faster than a Python call per symbol). To avoid recompiling for every n, the compiled
# chunk has a fixed capacity and a run-time length; an outer graph loops over chunks.

_CHUNK = 512  # symbols per compiled chunk; the outer loop overhead is per chunk, not per symbol


def _filter_logits(logits: tf.Tensor, top_k: tf.Tensor, top_p: tf.Tensor) -> tf.Tensor:
    """Sets logits outside the top_k and outside the top_p nucleus (of the top_k) to -inf. The cut is by
    value, as in most samplers: a symbol tied with the last one kept is kept too (exact ties are rare in
    a trained model's float32 logits)."""
    V = logits.shape[-1]
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    k = tf.where(top_k > 0, tf.minimum(top_k, V), V)
    in_k = tf.range(V) < k
    ranked = tf.where(in_k, ranked, -math.inf)
    # Keep a symbol while the probability mass ranked above it is below top_p; the first is always
    # kept. top_p 1 keeps all: in float32 the mass above the least likely symbols can round to 1.
    mass_before = tf.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)
    # (A top_p too small for float32 arrives as 0: the first still has to be kept.)
    keep = in_k & ((mass_before < top_p) | (top_p >= 1.0) | (tf.range(V) == 0))
    threshold = tf.reduce_min(tf.where(keep, ranked, math.inf), axis=-1, keepdims=True)
    return tf.where(logits < threshold, -math.inf, logits)


def rng_seed(seed: int | tf.Tensor, k: int | tf.Tensor) -> tf.Tensor:
    """The [2] seed of a stateless random op for draw k under a 64-bit seed. Under XLA those ops
    read only the low 32 bits of each element, so [seed, k] would give seeds 1 and 2**32 + 1 the
    same numbers: the seed's two halves seed a 32-bit draw that stands for all of it."""
    return tf.stack([mixed_seed(seed), tf.cast(k, tf.int64)])


def mixed_seed(seed: int | tf.Tensor) -> tf.Tensor:
    """rng_seed's first element: a 32-bit draw seeded by the 64-bit seed's two halves."""
    seed = tf.cast(seed, tf.int64)
    halves = tf.stack([tf.bitwise.bitwise_and(seed, 0xFFFFFFFF),
                       tf.bitwise.bitwise_and(tf.bitwise.right_shift(seed, 32), 0xFFFFFFFF)])
    return tf.cast(tf.random.stateless_uniform([], halves, minval=None, maxval=None, dtype=tf.uint32), tf.int64)


class SamplingOptions(NamedTuple):
    """How generation picks each next id, as tensors, so that new values never retrace (_options
    checks and makes them; tf.function takes the tuple as one argument)."""
    temperature: tf.Tensor  # float32: divides the logits
    top_k: tf.Tensor  # int32, 0: off
    top_p: tf.Tensor  # float32, 1.0: off
    mode: tf.Tensor  # int32: 0 argmax, 1 sample, 2 sample only at word starts (see _pick)
    seed: tf.Tensor  # int64; in a compiled chunk, mixed_seed of it (see _compiled_chunk)
    space_id: tf.Tensor  # int32, -1 for a vocabulary without a space
    initial_ids: tf.Tensor  # int32 [k]: under --unit jamo, the initial consonants
    vowel_ids: tf.Tensor  # int32 [k]: and the vowels

    @staticmethod
    def signature() -> "SamplingOptions":
        scalar = lambda dtype: tf.TensorSpec([], dtype)
        ids = tf.TensorSpec([None], tf.int32)
        return SamplingOptions(scalar(tf.float32), scalar(tf.int32), scalar(tf.float32), scalar(tf.int32),
                               scalar(tf.int64), scalar(tf.int32), ids, ids)


def _pick(logits, last_ids, in_word_start, step, opts: SamplingOptions) -> tuple[tf.Tensor, tf.Tensor]:
    """Next ids [N] from logits [N, V], and whether they are inside the first character after a
    space, but not its end (mode 2 samples there); the random draw depends only on (seed, step).
    opts.seed: mixed_seed of the 64-bit seed, so that the draw is rng_seed(seed, step)'s."""
    temperature, top_k, top_p, mode, space_id = opts.temperature, opts.top_k, opts.top_p, opts.mode, opts.space_id
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)

    def sample():
        scaled = logits / tf.maximum(temperature, 1e-6)
        scaled = tf.cond(
            (top_k > 0) | (top_p < 1.0), lambda: _filter_logits(scaled, top_k, top_p), lambda: scaled
        )
        # Exponential race: argmax_i p_i / E_i with E_i ~ Exp(1) picks i with probability p_i.
        # One log per symbol where Gumbel-max needs two (measured: sampling 45% cheaper under
        # XLA); stateless_categorical is no option, XLA does not compile it with 64-bit seeds.
        u = tf.random.stateless_uniform(
            tf.shape(scaled), tf.stack([opts.seed, tf.cast(step, tf.int64)]), minval=1e-20, maxval=1.0
        )
        p = tf.exp(scaled - tf.reduce_max(scaled, axis=-1, keepdims=True))
        return tf.argmax(p / -tf.math.log(u), axis=-1, output_type=tf.int32)

    sampled = tf.cond(mode == 0, lambda: greedy, sample)
    # Mode 2 (char-rnn's --sample 2): sample only at word starts, i.e. right after a space: the
    # whole first character, which under --unit jamo is an initial, its vowel and a final.
    use_sample = (mode == 1) | ((mode == 2) & ((last_ids == space_id) | in_word_start))
    nxt = tf.where(use_sample, sampled, greedy)
    return nxt, _in_word_start(tf.stack([last_ids, nxt], 1), mode, space_id, opts.initial_ids, opts.vowel_ids,
                               in_word_start)


def _is_in(ids, group):
    return tf.reduce_any(tf.equal(ids[:, None], group[None, :]), axis=1)


# What pads ids before a prime's start: no symbol, and not space_id's -1 (a vocabulary without a space).
NO_SYMBOL = -2


def _in_word_start(ids, mode, space_id, initial_ids, vowel_ids, before=None) -> tf.Tensor:
    """Whether text that ends in ids [N, k] (k >= 2) is inside a word's first character but not at
    its end, which mode 2 samples whole: an initial after a space, and a vowel after that initial
    (a final may follow). before: whether it was so one symbol earlier, when ids hold two."""
    ids = tf.pad(ids, [[0, 0], [1, 0]], constant_values=NO_SYMBOL)  # a third symbol from the end, or none
    third, second, last = ids[:, -3], ids[:, -2], ids[:, -1]
    started = (second == space_id) & _is_in(last, initial_ids)
    was_started = (third == space_id) & _is_in(second, initial_ids) if before is None else before
    return (mode == 2) & (started | (was_started & _is_in(second, initial_ids) & _is_in(last, vowel_ids)))


def _compiled_chunk(model: CharRNN, state, last_ids, in_word_start, n, offset, opts: SamplingOptions):
    """Up to _CHUNK steps (n at run time): ids [N, _CHUNK] (first n valid), state, last ids, and
    whether they are inside a word's first character (see _pick)."""

    # The seed is mixed once per chunk, not per step: per step, that second random op took 40% of
    # a 2x128 model's sampling time (32k against 56k chars/s, one stream, on a 2-core Xeon).
    opts = opts._replace(seed=mixed_seed(opts.seed))

    def body(i, state, last, in_word_start, ids):
        logits, state = model.step(last, state)
        nxt, in_word_start = _pick(logits, last, in_word_start, offset + i, opts)
        return i + 1, state, nxt, in_word_start, ids.write(i, nxt)

    _, state, last, in_word_start, ids = tf.while_loop(
        lambda i, *_: i < n,
        body,
        (0, state, last_ids, in_word_start, tf.TensorArray(tf.int32, size=_CHUNK, element_shape=last_ids.shape)),
        maximum_iterations=_CHUNK,
    )
    return tf.transpose(ids.stack()), state, last, in_word_start


def feed_steps(model: CharRNN, state: tf.Tensor, ids: tf.Tensor, n: "int | tf.Tensor",
               max_steps: int | None = None) -> tf.Tensor:
    """The state after feeding the first n ids of each row of ids [N, T] one step at a time (a prime:
    not through __call__, the training pass, which keeps every step's gate values for a backward pass)."""

    def body(i, state):
        return i + 1, model.step(ids[:, i], state)[1]

    return tf.while_loop(lambda i, _: i < n, body, (0, state), maximum_iterations=max_steps)[1]


def _chunks(chunk_fn, state, last_ids, in_word_start, n, offset, opts):
    """The outer loop: ceil(n / _CHUNK) compiled chunks, concatenated to ids [N, n]; also the state
    and in_word_start after them."""
    num_chunks = tf.maximum((n + _CHUNK - 1) // _CHUNK, 1)  # n = 0: one empty chunk gives the stack a shape

    def body(j, state, last, in_word_start, out):
        ids, state, last, in_word_start = chunk_fn(state, last, in_word_start, tf.minimum(n - j * _CHUNK, _CHUNK),
                                                   offset + j * _CHUNK, opts)
        return j + 1, state, last, in_word_start, out.write(j, ids)

    _, state, last, in_word_start, out = tf.while_loop(
        lambda j, *_: j < num_chunks,
        body,
        (0, state, last_ids, in_word_start, tf.TensorArray(tf.int32, size=num_chunks, element_shape=[None, _CHUNK])),
    )
    N = tf.shape(last_ids)[0]
    ids = tf.reshape(tf.transpose(out.stack(), [1, 0, 2]), [N, num_chunks * _CHUNK])[:, :n]
    return ids, state, in_word_start


class _Generator:
    """The tf.functions of one model, built once so repeated calls never retrace. They reach the
    model through a weak reference: the cache entry must not keep its own key alive."""

    def __init__(self, model: CharRNN):
        L, S, H = model.state_size
        model_ref = weakref.ref(model)  # called while tracing, when the caller holds the model
        scalar = lambda dtype: tf.TensorSpec([], dtype)
        ids = tf.TensorSpec([None], tf.int32)
        opts = SamplingOptions.signature()
        state = tf.TensorSpec([L, S, None, H], tf.float32)
        flags = tf.TensorSpec([None], tf.bool)
        primes = tf.TensorSpec([None, None], tf.int32)
        chunk = graph_function(lambda *a: _compiled_chunk(model_ref(), *a), jit_compile=True)
        feed = graph_function(lambda state, ids, n: feed_steps(model_ref(), state, ids, n, _CHUNK), jit_compile=True)

        def from_state(state, last_ids, in_word_start, n, offset, opts):
            return _chunks(chunk, state, last_ids, in_word_start, n, offset, opts)

        def prime_state(prime_ids):
            # The prime is fed but its last symbol, which the first generated step consumes, in compiled
            # chunks, as generation runs (through __call__, a 100,000-character prime of 4 samples took
            # 1.9 GB at 2x128, and each prime length compiled anew).
            N, P = tf.shape(prime_ids)[0], tf.shape(prime_ids)[1] - 1
            num_chunks = (P + _CHUNK - 1) // _CHUNK
            chunks = tf.reshape(tf.pad(prime_ids[:, :-1], [[0, 0], [0, num_chunks * _CHUNK - P]]),
                                [N, num_chunks, _CHUNK])

            def body(j, state):
                return j + 1, feed(state, chunks[:, j], tf.minimum(P - j * _CHUNK, _CHUNK))

            _, state = tf.while_loop(lambda j, _: j < num_chunks, body, (0, model_ref().initial_state(N)))
            return state, prime_ids[:, -1]

        def from_prime(prime_ids, n, opts):
            state, last = prime_state(prime_ids)
            in_word_start = prime_word_start(prime_ids, opts.mode, opts.space_id, opts.initial_ids, opts.vowel_ids)
            return _chunks(chunk, state, last, in_word_start, n, 0, opts)[0]

        self.from_state = graph_function(
            from_state, input_signature=(state, ids, flags, scalar(tf.int32), scalar(tf.int32), opts)
        )
        self.prime_state = graph_function(prime_state, input_signature=(primes,))
        self.from_prime = graph_function(from_prime, input_signature=(primes, scalar(tf.int32), opts))


_GENERATORS: "weakref.WeakKeyDictionary[CharRNN, _Generator]" = weakref.WeakKeyDictionary()


def _generator(model: CharRNN) -> _Generator:
    if model not in _GENERATORS:
        _GENERATORS[model] = _Generator(model)
    return _GENERATORS[model]


def _prime_tensor(prime_ids, vocab_size: int) -> tf.Tensor:
    prime_ids = tf.convert_to_tensor(prime_ids, tf.int32)
    if prime_ids.shape.rank != 2 or prime_ids.shape[1] == 0:
        raise ValueError(f"prime_ids must be [N, P] with P >= 1, got shape {prime_ids.shape}")
    # Out of range, a gather fails deep in the graph, or (the last id, under XLA) is clamped in silence.
    if prime_ids.shape[0]:
        low, high = int(tf.reduce_min(prime_ids)), int(tf.reduce_max(prime_ids))
        if not 0 <= low <= high < vocab_size:
            raise ValueError(f"prime_ids must be ids of the vocabulary, 0 to {vocab_size - 1}; got {low} to {high}")
    return prime_ids


def _options(n, temperature, top_k, top_p, mode, seed, space_id, initial_ids, vowel_ids) -> tuple[tf.Tensor,
                                                                                                 SamplingOptions]:
    """Checks the arguments and makes them tensors, so new values never retrace."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= temperature < math.inf:  # NaN drew the last id every step; below 0, silently greedy
        raise ValueError(f"temperature must be finite and >= 0 (0: the most likely id), got {temperature}")
    if mode not in (0, 1, 2):
        raise ValueError(f"mode must be 0 (argmax), 1 (sample) or 2 (sample after space), got {mode}")
    if top_k < 0 or not 0.0 < top_p <= 1.0:  # top_p 0 keeps nothing: every draw would be NaN
        raise ValueError(f"top_k must be >= 0 and top_p in (0, 1], got {top_k} and {top_p}")
    return tf.constant(n, tf.int32), SamplingOptions(
        tf.constant(temperature, tf.float32), tf.constant(top_k, tf.int32), tf.constant(top_p, tf.float32),
        tf.constant(mode, tf.int32), tf.constant(seed, tf.int64), tf.constant(space_id, tf.int32),
        tf.constant(initial_ids, tf.int32, shape=[len(initial_ids)]),
        tf.constant(vowel_ids, tf.int32, shape=[len(vowel_ids)]),
    )


def generate(
    model: CharRNN,
    prime_ids: tf.Tensor,
    n: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    mode: int = 1,
    seed: int = 0,
    space_id: int = -1,
    initial_ids: Sequence[int] = (),
    vowel_ids: Sequence[int] = (),
) -> tf.Tensor:
    """Feeds prime_ids [N, P] (P >= 1) and returns the next n ids [N, n] int32.

    mode: 0 argmax, 1 sample, 2 sample only right after space_id (argmax elsewhere): the whole
    first character, which under --unit jamo is the initial of initial_ids, the vowel of
    vowel_ids after it, and what follows that vowel.
    temperature divides the logits (finite, >= 0; 0: the most likely id); top_k (0 = off) and top_p
    (1.0 = off) filter them. prime_ids are ids of the model's vocabulary.
    The same seed gives the same ids.
    """
    n, opts = _options(n, temperature, top_k, top_p, mode, seed, space_id, initial_ids, vowel_ids)
    return _generator(model).from_prime(_prime_tensor(prime_ids, model.config.vocab_size), n, opts)


def prime_word_start(prime_ids: "tf.Tensor | Sequence[Sequence[int]]", mode: "int | tf.Tensor",
                     space_id: "int | tf.Tensor", initial_ids: "Sequence[int] | tf.Tensor",
                     vowel_ids: "Sequence[int] | tf.Tensor") -> tf.Tensor:
    """Whether each prime [N, P] ends inside a word's first character (a space, an initial and
    maybe its vowel), for mode 2's first step (generate_chunk's in_word_start)."""
    padded = tf.pad(tf.convert_to_tensor(prime_ids, tf.int32), [[0, 0], [1, 0]], constant_values=NO_SYMBOL)  # >= 2
    as_ids = lambda x: tf.reshape(tf.convert_to_tensor(x, tf.int32), [-1])  # a list (maybe empty) or a tensor
    return _in_word_start(padded, tf.convert_to_tensor(mode, tf.int32), tf.convert_to_tensor(space_id, tf.int32),
                          as_ids(initial_ids), as_ids(vowel_ids))


def prime_state(model: CharRNN, prime_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Feeds prime_ids [N, P] (P >= 1) but their last symbol: returns (state, last_ids [N]), where
    generate_chunk() goes on exactly as generate() would from the same prime (under mode 2, given
    in_word_start=prime_word_start(prime_ids, ...))."""
    return _generator(model).prime_state(_prime_tensor(prime_ids, model.config.vocab_size))


def generate_chunk(
    model: CharRNN,
    state: tf.Tensor,
    last_ids: tf.Tensor,
    n: int,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    mode: int = 1,
    seed: int = 0,
    space_id: int = -1,
    initial_ids: Sequence[int] = (),
    vowel_ids: Sequence[int] = (),
    in_word_start: tf.Tensor | None = None,
    offset: int = 0,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Continues generation from (state [L, S, N, H], last_ids [N]): returns (ids [N, n], state,
    in_word_start [N]).

    To stream: start from prime_state() with in_word_start=prime_word_start() of the prime (None:
    outside a word), then pass ids[:, -1], the returned state and in_word_start to the next call,
    and offset = the number of symbols generated so far, so the random stream (and mode 2's place
    in a word) continues exactly as in one generate() call with the same seed.
    """
    n, opts = _options(n, temperature, top_k, top_p, mode, seed, space_id, initial_ids, vowel_ids)
    last_ids = tf.convert_to_tensor(last_ids, tf.int32)
    in_word_start = tf.zeros_like(last_ids, tf.bool) if in_word_start is None else in_word_start
    return _generator(model).from_state(
        tf.convert_to_tensor(state, tf.float32), last_ids, in_word_start, n, tf.constant(offset, tf.int32), opts,
    )
