"""Compiled (numba) CPU kernels for model.Trainer: each member's random draws, forward and backward.

With torch a step of the 2-4-12-6-3 net is ~40 kernel calls over small arrays; loops over each
member's points (points innermost, so they vectorise) do it in one call per pass (README, "Benchmark").

Randomness: one SplitMix64 stream per member (Steele, Lea & Flood 2014), a 64-bit state advanced by
the golden-ratio increment and hashed into each output. A member's draws depend only on its own seed
and settings, so member k of a stacked run is the single run with member k's seed.

Layout (as model.Trainer): theta (M, P) in nn.Linear order; activations feature-major, every layer's
rows of a member in one flat (M, rows * points) buffer; the layers are rows of an integer table
(FAN_IN ... KEEP_ROW below), so the kernels serve any depth.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
MIX1 = np.uint64(0xBF58476D1CE4E5B9)
MIX2 = np.uint64(0x94D049BB133111EB)
S30, S27, S31 = np.uint64(30), np.uint64(27), np.uint64(31)
S32, S40 = np.uint64(32), np.uint64(40)
LOW32 = np.uint64(0xFFFFFFFF)
LOW16 = np.uint64(0xFFFF)
TO_UNIT = np.float32(1.0 / (1 << 24))  # 24 random bits -> [0, 1), as torch.rand's float32


@njit(cache=True, nogil=True)
def _mix(z):
    """SplitMix64's output hash of a state."""
    z = (z ^ (z >> S30)) * MIX1
    z = (z ^ (z >> S27)) * MIX2
    return z ^ (z >> S31)


def seed_states(seeds) -> np.ndarray:
    """Each seed's initial state: the seed hashed, so that seeds 0, 1, 2 start far apart."""
    return np.array([_mix(np.uint64(int(seed) % (1 << 64)) ^ GOLDEN) for seed in seeds], dtype=np.uint64)


@njit(cache=True, nogil=True)
def _fill_uniforms(state, out, low, high):
    """out[i] = uniform in [low, high) from the stream's i+1-th output; returns the advanced state.
    The i-th state is state + i * GOLDEN: no carried dependency, so the loop vectorises."""
    span = np.float32(high - low)
    for i in range(out.size):
        out[i] = np.float32(_mix(state + np.uint64(i + 1) * GOLDEN) >> S40) * TO_UNIT * span + np.float32(low)
    return state + np.uint64(out.size) * GOLDEN


@njit(cache=True, nogil=True)
def uniforms(states, out):
    """out[m] = the next uniforms in [0, 1) of member m's stream (e.g. the initial weights)."""
    for m in range(states.shape[0]):
        states[m] = _fill_uniforms(states[m], out[m], 0.0, 1.0)


@njit(cache=True, nogil=True)
def _fill_keep(state, flat, cut, value):
    """Dropout factors: flat[i] = value where a 16-bit draw is >= cut, else 0; four draws per output."""
    quarter = (flat.size + 3) // 4
    zero = np.float32(0.0)
    for i in range(quarter):
        bits = _mix(state + np.uint64(i + 1) * GOLDEN)
        for k in range(4):
            index = k * quarter + i
            if index < flat.size:
                flat[index] = value if ((bits >> np.uint64(16 * k)) & LOW16) >= cut else zero
    return state + np.uint64(quarter) * GOLDEN


@njit(cache=True, nogil=True, inline="always")
def _draw_member(m, states, points, permute, cover, threshold, scale, x, orders, directions, keep):
    """Member m's draws for one step (see draw_step)."""
    splits = orders.shape[1]
    state = states[m]
    state = _fill_uniforms(state, x[m, 0, :points], -0.5, 0.5)
    state = _fill_uniforms(state, x[m, 1, :points], -0.5, 0.5)
    for s in range(1, splits):
        x[m, :, s * points:(s + 1) * points] = x[m, :, :points]
    if permute[m]:
        for s in range(splits):
            order = orders[m, s]
            for i in range(points):
                order[i] = i
            for i in range(points - 1, 0, -1):  # Fisher-Yates; j uniform in 0..i (Lemire's multiply-shift)
                state += GOLDEN
                j = ((_mix(state) >> S32) * np.uint64(i + 1)) >> S32
                order[i], order[j] = order[j], order[i]
    if cover[m]:
        z, longitude = directions[m, 2], directions[m, 0]
        state = _fill_uniforms(state, z, -1.0, 1.0)
        state = _fill_uniforms(state, longitude, 0.0, 2.0 * np.pi)
        for t in range(z.size):
            radius = np.sqrt(max(np.float32(1.0) - z[t] * z[t], np.float32(0.0)))
            angle = longitude[t]
            directions[m, 0, t] = radius * np.cos(angle)
            directions[m, 1, t] = radius * np.sin(angle)
    if threshold[m] > 0:
        state = _fill_keep(state, keep[m].reshape(-1), np.uint64(threshold[m]), np.float32(scale[m]))
    states[m] = state


@njit(cache=True, nogil=True)
def draw_step(states, points, permute, cover, threshold, scale, x, orders, directions, keep):
    """One training step's draws for every member, in a fixed order per member: `points` uniform
    points of the square into x[m] (repeated per split); if permute[m], a permutation per split
    (Fisher-Yates); if cover[m], uniform unit vectors (z uniform in [-1, 1], by Archimedes, and a
    uniform longitude); if threshold[m] > 0, the dropout factors keep[m] (scale[m] or 0)."""
    for m in range(x.shape[0]):
        _draw_member(m, states, points, permute, cover, threshold, scale, x, orders, directions, keep)


@njit(cache=True, nogil=True, fastmath=True)
def _dense(weight, bias, inputs, out):
    """out[j, p] = bias[j] + sum_i weight[j, i] inputs[i, p] (a layer, feature-major)."""
    for j in range(weight.shape[0]):
        row = out[j]
        row[:] = bias[j]
        for i in range(weight.shape[1]):
            w, source = weight[j, i], inputs[i]
            for p in range(row.size):
                row[p] += w * source[p]


@njit(cache=True, nogil=True, fastmath=True)
def _dense_transposed(weight, grads, out):
    """out[i, p] = sum_j weight[j, i] grads[j, p] (a layer's gradient with respect to its input)."""
    for i in range(weight.shape[1]):
        row = out[i]
        row[:] = 0.0
        for j in range(weight.shape[0]):
            w, source = weight[j, i], grads[j]
            for p in range(row.size):
                row[p] += w * source[p]


@njit(cache=True, nogil=True, fastmath=True)
def _layer_grads(grads, inputs, weight_grad, bias_grad):
    """weight_grad[j, i] = sum_p grads[j, p] inputs[i, p]; bias_grad[j] = sum_p grads[j, p]."""
    for j in range(grads.shape[0]):
        row = grads[j]
        bias_grad[j] = row.sum()
        for i in range(inputs.shape[0]):
            source, total = inputs[i], np.float32(0.0)
            for p in range(row.size):
                total += row[p] * source[p]
            weight_grad[j, i] = total


# Columns of the layer table (model._layer_table), one row per linear layer, the output layer last:
# fan-in, width, where weight and bias start in theta's row, first input and output row in the
# activations (rows 0-1: the points), ReLU after it, first row of its dropout factors (-1: none).
FAN_IN, WIDTH, WEIGHT, BIAS, INPUT_ROW, OUTPUT_ROW, RELU, KEEP_ROW = range(8)


@njit(cache=True, nogil=True, inline="always")
def _rows(flat, start, count, n):
    """Rows start .. start + count of a member's (rows * n) buffer, as a (count, n) view."""
    return flat[start * n:(start + count) * n].reshape((count, n))


@njit(cache=True, nogil=True, inline="always")
def _parameters(row, layer):
    """One layer's weight (width, fan_in) and bias (width,) in a member's row of theta (or its gradient)."""
    fan_in, width, start, bias = layer[FAN_IN], layer[WIDTH], layer[WEIGHT], layer[BIAS]
    return row[start:start + width * fan_in].reshape((width, fan_in)), row[bias:bias + width]


@njit(cache=True, nogil=True, inline="always")
def _has_factor(layer, use_keep):
    return layer[RELU] == 1 or (use_keep and layer[KEEP_ROW] >= 0)


# No fastmath here: with it the normalisation's division was rewritten in a way that rounded a
# few outputs differently in a stacked run than alone (measured: 24 of 6000 by one ulp), and a
# member of a batch would no longer be, bit for bit, the single run with its seed.
@njit(cache=True, nogil=True, inline="always")
def _forward_member(m, theta, table, x, keep, use_keep, acts, factors, norm, u):
    """Member m's map of x[m] (2, n) to unit vectors u[m] (3, n): per layer h = W h + b, then
    h *= f with f = [h > 0] (ReLU) * keep (dropout) kept for backward; u = o / |o| (F.normalize)."""
    n, last = x.shape[2], table.shape[0] - 1
    _rows(acts[m], 0, 2, n)[:] = x[m]
    for index in range(last + 1):
        layer = table[index]
        width = layer[WIDTH]
        weight, bias = _parameters(theta[m], layer)
        out = u[m] if index == last else _rows(acts[m], layer[OUTPUT_ROW], width, n)
        _dense(weight, bias, _rows(acts[m], layer[INPUT_ROW], layer[FAN_IN], n), out)
        if not _has_factor(layer, use_keep):
            continue
        factor = _rows(factors[m], layer[OUTPUT_ROW], width, n)
        relu, dropout, first_keep = layer[RELU] == 1, use_keep and layer[KEEP_ROW] >= 0, layer[KEEP_ROW]
        for j in range(width):
            hidden, f = out[j], factor[j]
            for p in range(n):
                kept = keep[m, first_keep + j, p] if dropout else np.float32(1.0)
                f[p] = kept if hidden[p] > 0 or not relu else np.float32(0.0)
                hidden[p] *= f[p]
    out, lengths = u[m], norm[m]
    for p in range(n):
        length = max(np.sqrt(out[0, p] * out[0, p] + out[1, p] * out[1, p] + out[2, p] * out[2, p]),
                     np.float32(1e-12))
        lengths[p] = length
        out[0, p] /= length
        out[1, p] /= length
        out[2, p] /= length


@njit(cache=True, nogil=True)
def forward(theta, table, x, keep, use_keep, acts, factors, norm, u):
    """Every member's map of its points x (M, 2, n) to unit vectors u (M, 3, n) (_forward_member)."""
    for m in range(theta.shape[0]):
        _forward_member(m, theta, table, x, keep, use_keep, acts, factors, norm, u)


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _backward_member(m, theta, table, use_keep, acts, factors, norm, u, du, grads, grad):
    """grad[m] = d(member m's loss)/d(theta[m]) from du[m] (3, n), overwritten with d/do =
    (du - u (u . du)) / |o|; then per layer, top down: times its factor, its gradients, to its input."""
    n, last = du.shape[2], table.shape[0] - 1
    out, grads_out, lengths = u[m], du[m], norm[m]
    for p in range(n):
        dot = out[0, p] * grads_out[0, p] + out[1, p] * grads_out[1, p] + out[2, p] * grads_out[2, p]
        for c in range(3):
            grads_out[c, p] = (grads_out[c, p] - out[c, p] * dot) / lengths[p]
    for index in range(last, -1, -1):
        layer = table[index]
        width = layer[WIDTH]
        grads_here = grads_out if index == last else _rows(grads[m], layer[OUTPUT_ROW], width, n)
        if index < last and _has_factor(layer, use_keep):
            factor = _rows(factors[m], layer[OUTPUT_ROW], width, n)
            for j in range(width):
                grads_here[j] *= factor[j]
        weight_grad, bias_grad = _parameters(grad[m], layer)
        _layer_grads(grads_here, _rows(acts[m], layer[INPUT_ROW], layer[FAN_IN], n), weight_grad, bias_grad)
        if index > 0:
            weight, _ = _parameters(theta[m], layer)
            _dense_transposed(weight, grads_here, _rows(grads[m], layer[INPUT_ROW], layer[FAN_IN], n))


@njit(cache=True, nogil=True, fastmath=True)  # _backward_member is inlined here, with these flags
def backward(theta, table, use_keep, acts, factors, norm, u, du, grads, grad):
    """grad (M, P) = d(sum of the members' losses)/d(theta), given du (M, 3, n) (_backward_member)."""
    for m in range(theta.shape[0]):
        _backward_member(m, theta, table, use_keep, acts, factors, norm, u, du, grads, grad)


@njit(cache=True, nogil=True, inline="always")
def _article_member(m, u, orders, weight, total, du):
    """The article's loss of member m into total[m], its gradient into du[m]: per split, pairs
    from orders[m, s], S_s = sum_i a_i . b_i, loss = w sum_s S_s^2, d/da_i = 2 w S_s b_i."""
    splits, points = orders.shape[1], orders.shape[2]
    half = points // 2
    du[m] = 0.0
    total[m] = 0.0
    if weight[m] == 0:  # no article loss: its permutations were never drawn
        return
    loss = np.float32(0.0)
    for s in range(splits):
        order, base = orders[m, s], s * points
        pairs = np.float32(0.0)
        for i in range(half):
            a, b = base + order[i], base + order[half + i]
            pairs += u[m, 0, a] * u[m, 0, b] + u[m, 1, a] * u[m, 1, b] + u[m, 2, a] * u[m, 2, b]
        loss += pairs * pairs
        factor = np.float32(2.0 * weight[m]) * pairs
        for i in range(half):
            a, b = base + order[i], base + order[half + i]
            for c in range(3):
                du[m, c, a] = factor * u[m, c, b]
                du[m, c, b] = factor * u[m, c, a]
    total[m] = np.float32(weight[m]) * loss


@njit(cache=True, nogil=True)
def article_losses(u, orders, weight, total, du):
    """The article's loss (total, (M,)) and its gradient du (M, 3, n) of every member (_article_member)."""
    for m in range(u.shape[0]):
        _article_member(m, u, orders, weight, total, du)


@njit(cache=True, nogil=True, fastmath=True)
def nearest_points(directions, u, use, best, nearest):
    """For members with use[m]: best[m, t] = max_p directions[m, :, t] . u[m, :, p], nearest[m, t]
    its first arg max. Directions innermost: a branch-free select that vectorises."""
    for m in range(u.shape[0]):
        if not use[m]:
            continue
        a, b, c = directions[m, 0], directions[m, 1], directions[m, 2]
        top, index = best[m], nearest[m]
        top[:] = -np.inf
        index[:] = 0
        for p in range(u.shape[2]):
            x, y, z = u[m, 0, p], u[m, 1, p], u[m, 2, p]
            for t in range(a.size):
                dot = a[t] * x + b[t] * y + c[t] * z
                better = dot > top[t]
                top[t] = dot if better else top[t]
                index[t] = p if better else index[t]


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _exp_nonpositive(x):
    """exp(x) for x <= 0 in multiply-adds only, so a loop of it vectorises (libm's does not):
    (e^(x/64))^64 by a degree-7 Taylor polynomial; relative error < 1e-5 for x >= -24, x clamped to [-80, 0]."""
    r = max(min(x, np.float32(0.0)), np.float32(-80.0)) * np.float32(1.0 / 64.0)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + np.float32(1.0)
    p = p * r + np.float32(1.0)
    for _ in range(6):
        p = p * p
    return p


@njit(cache=True, nogil=True, fastmath=True)
def uniformity_losses(u, temperature, weight, total, du):
    """Wang & Isola's uniformity loss of members with weight[m] > 0: total[m] += w log(mean over
    i != j of E_ij), E_ij = exp(2t (u_i.u_j - 1)) for unit vectors; du[m] += (4 t w / Z) sum_j E_ij u_j
    with Z = sum E_ij. Each pair is computed once (i < j) and counted for both points."""
    for m in range(u.shape[0]):
        if weight[m] == 0:
            continue
        count = u.shape[2]
        x, y, z = u[m, 0], u[m, 1], u[m, 2]  # whole rows: contiguous, so the loops vectorise
        sx, sy, sz = np.zeros(count, np.float32), np.zeros(count, np.float32), np.zeros(count, np.float32)
        two_t = np.float32(2.0 * temperature[m])
        pairs = np.float32(0.0)
        weights = np.empty(count, np.float32)
        for i in range(count):
            xi, yi, zi = x[i], y[i], z[i]
            row, rx, ry, rz = np.float32(0.0), np.float32(0.0), np.float32(0.0), np.float32(0.0)
            # the points after i as slices, looped from 0: written as range(i + 1, count) the
            # compiler does not vectorise these loops (measured: 10x slower)
            xs, ys, zs, ws = x[i + 1:], y[i + 1:], z[i + 1:], weights[i + 1:]
            for j in range(ws.size):
                e = _exp_nonpositive(two_t * (xi * xs[j] + yi * ys[j] + zi * zs[j] - np.float32(1.0)))
                ws[j] = e
                row += e
                rx += e * xs[j]
                ry += e * ys[j]
                rz += e * zs[j]
            sxs, sys_, szs = sx[i + 1:], sy[i + 1:], sz[i + 1:]
            for j in range(ws.size):
                sxs[j] += ws[j] * xi
                sys_[j] += ws[j] * yi
                szs[j] += ws[j] * zi
            sx[i] += rx
            sy[i] += ry
            sz[i] += rz
            pairs += row
        normaliser = np.float32(2.0) * pairs  # Z: every unordered pair twice
        total[m] += np.float32(weight[m]) * np.float32(np.log(max(normaliser, np.float32(1e-30)) / (count * (count - 1))))
        scale = np.float32(2.0) * two_t * np.float32(weight[m]) / max(normaliser, np.float32(1e-30))
        for i in range(count):
            du[m, 0, i] += scale * sx[i]
            du[m, 1, i] += scale * sy[i]
            du[m, 2, i] += scale * sz[i]
