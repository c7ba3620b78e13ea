"""The Neural CDE's fixed-grid Runge–Kutta loop, with a hand-written backward.

``G`` Neural CDEs run side by side (``G = 1``: one model; ``G = 2``: the two directions
of a bidirectional pair, :func:`skfwp.nn.ncde.forward_pair`), each with its own
weights: states ``z`` of shape (G, batch, H), weights ``W_l`` (G, out, in), biases
``b_l`` (G, out), every linear layer one product per group. One stage of the field,
for stage states ``Y`` (G, batch, H) and the path's derivative ``ẋ = dX/ds`` at the
stage time (G, batch, K)::

    o_0 = Y W_0ᵀ + b_0,   A_l = relu(o_{l−1}),   o_l = A_l W_lᵀ + b_l     (l = 1..m)
    M   = tanh(o_m)                    (G, batch, H K), read as (G, batch, H, K)
    k   = M ẋ,   k_h = Σ_c M_hc ẋ_c    (G, batch, H)

with ``m`` the number of hidden layers of ``f``'s MLP (0, 1 or 2 in the estimators;
any number here). One step of the explicit tableau ``(a, b)``, step ``Δs``::

    Y_0 = z_n,   Y_i = z_n + Δs Σ_{j<i} a_ij k_j,   z_{n+1} = z_n + Δs Σ_i b_i k_i

each combination one matrix–vector product over the rows ``[z_n, k_0, k_1, ...]``
(:func:`skfwp.nn.fast_solver._rk_vectors`). The forward runs without autograd
(:class:`_CDERK`) and keeps, per stage, ``Y``, the ReLU outputs ``A_l`` and, formed for
a whole chunk at once after its loop, ``P = (1 − M²) ⊙ ẋ`` (``ẋ`` broadcast over the
``H`` rows; (G, batch, H, K)). The backward sweeps the steps in reverse with
``λ = dL/dz_{n+1}`` (readouts added where cases end), for ``i = S − 1, ..., 0``::

    v_i      = Δs (b_i λ + Σ_{m>i} a_mi dY_m)                  (dL/dk_i, (G, batch, H))
    dO_m     = v_i ⊗ ẋ ⊙ (1 − M²) = v_i[..., None] P         flattened to (G, batch, H K)
    dO_{l−1} = (dO_l W_l) ⊙ [A_l > 0],   dY_i = dO_0 W_0

then ``λ ← λ + Σ_i dY_i``. The parameter gradients are products over all stages of a
chunk at once, per group (``dO_l`` kept per stage, ``A_0 = Y``)::

    dW_l = Σ dO_lᵀ A_l,   db_l = Σ dO_l,   and, when ẋ needs one,  dL/dẋ = Σ_h v_h M_h

(``M`` is then kept as well); ``dO_m`` overwrites ``P`` in place. With one hidden layer
a stage makes six calls forward (``mv``, ``baddbmm``, ``relu`` and ``tanh`` in place,
two ``bmm``) and five backward (``mv``, ``mul_``, two ``bmm``, ``threshold_backward``),
plus an ``mv`` per step, none recorded by autograd (the autograd loop of
:func:`~skfwp.nn.fast_solver.integrate_fixed_grid` records about a dozen nodes per
stage, each with its own backward calls). Every product is a ``bmm`` over the groups,
for ``G = 1`` as well (on one thread it beats ``mm`` at these sizes). The layers after
the first read their input with a column of ones, ``[A_l, 1] [W_lᵀ; b_l]``: no bias to
broadcast, and ``[dW_l, db_l]`` is one product; the layer before writes that column
itself (an extra output with weights 0 and bias 1, or weight 1 on its own input's ones).

**Memory.** As :mod:`skfwp.nn.gated_fast`: chunks of ``max(⌈√n_steps⌉,
FIXED_GRID_MEMORY / step bytes)`` steps (:data:`skfwp.nn.fast_solver.FIXED_GRID_MEMORY`);
one chunk keeps its buffers for the backward, several keep each chunk's first state and
the backward recomputes each chunk's forward before sweeping it. A second backward
through the same graph (``retain_graph=True``) recomputes as well: the first one
overwrote the kept ``P``.
"""

from __future__ import annotations

import itertools

import torch
from torch.autograd.function import once_differentiable

from . import fast_solver

__all__ = ["integrate_cde"]


_Spec = fast_solver._HandSpec


def _readout(out, state, plan, n):
    """``out[:, i] += readout[i, n] * state[:, i]`` for the cases read out at state ``n``."""
    fast_solver._add_readout(out, state, plan, n, dim=1)


def _groups(t):
    """A buffer (n, S, G, batch, d) as (G, n S batch, d): each group's stages stacked."""
    return t.movedim(2, 0).reshape(t.shape[2], -1, t.shape[-1])


def _per_stage(t):
    """A buffer (n, S, ...) as the tuple of its views ``[s, i]`` (at ``s * S + i``)."""
    return t.flatten(0, 1).unbind(0)


class _Loop:
    """The loop over one call's steps, forward and backward, on detached tensors.

    Every product is a ``bmm`` over the groups (per stage, (G, batch, ·) views), for
    ``G = 1`` as well: on one thread it beats ``mm`` at these sizes. The layers after
    the first read their input with a column of ones, ``[A_l, 1]``, and their weights
    as ``[W_lᵀ; b_l]``: no bias to broadcast, and ``[dW_l, db_l]`` is one product.
    """

    def __init__(self, spec, dX, params, keep_m):
        self.spec, self.dX, self.keep_m = spec, dX, keep_m
        weights, biases = params[::2], params[1::2]
        self.w = [W.contiguous() for W in weights]  # (G, out, in)
        G, m = weights[0].shape[0], len(weights) - 1
        # each layer's weights for its input [A, 1] (the first: Y, with the bias b_0),
        # with a last column that makes the ones of the next layer's input (not the last)
        self.w_t, self.b0 = [], biases[0][:, None]  # b_0: (G, 1, out [+ 1])
        for h, (W, b) in enumerate(zip(weights, biases, strict=True)):
            w_t = W.transpose(1, 2) if h == 0 else torch.cat([W.transpose(1, 2), b[:, None]], 1)
            if h < m:  # [W_lᵀ, 0; b_l, 1] or [W_0ᵀ, 0] with [b_0, 1]
                w_t = torch.cat([w_t, w_t.new_zeros(G, w_t.shape[1], 1)], 2)
                if h:
                    w_t[:, -1, -1] = 1
                else:
                    self.b0 = torch.cat([self.b0, self.b0.new_ones(G, 1, 1)], 2)
            self.w_t.append(w_t.contiguous())
        self.widths = [W.shape[1] for W in weights]  # out: hidden widths, then H K
        self._coefficients = {}

    def coefficients(self, n):
        """Step ``n``'s combination vectors: stage states, update, stage adjoints."""
        c = self.spec.dt[n]
        if c not in self._coefficients:
            self._coefficients[c] = fast_solver._rk_vectors(self.spec.plan.tableau, c, self.dX)
        return self._coefficients[c]

    def forward_chunk(self, z, n0, n1, out=None):
        """Steps ``n0:n1`` from ``z``: the state ``z_{n1}`` (a copy) and the chunk's buffers.

        Buffers of shape (n, S, G, batch, ·) (step-major) hold ``ẋ``, ``Y``,
        ``[A_l, 1]`` and ``M`` (overwritten with ``P = (1 − M²) ⊙ ẋ`` at the end; ``M``
        itself kept in ``"M_kept"`` when ``ẋ`` needs a gradient); ``ZK`` (n + 1, S + 1,
        G, batch, H) the rows ``[z_n, k_0, ..., k_{S−1}]`` of each step. Adds the
        readouts to ``out`` when given.
        """
        plan, widths = self.spec.plan, self.widths
        S, n, (G, B, H) = len(plan.tableau[2]), n1 - n0, z.shape
        K = self.dX.shape[-1]
        dXs = z.new_empty(n, S, G, B, K)  # ẋ at every stage
        for i, x in enumerate(plan.stages(self.dX, n0, n1)):
            dXs[:, i] = x
        Y = z.new_empty(n, S, G, B, H)
        A = [z.new_empty(n, S, G, B, w + 1) for w in widths[:-1]]  # [A_l, 1]
        M = z.new_empty(n, S, G, B, widths[-1])
        ZK = z.new_empty(n + 1, S + 1, G, B, H)
        ZK[0, 0] = z
        # every stage's views at once (stage i of step s at s * S + i): indexing a tensor
        # costs more than the small operations themselves
        Y_v, Y_flat = _per_stage(Y), _per_stage(Y.flatten(2))
        A_v = [_per_stage(a) for a in A]  # [o_l, 1], then [A_l, 1] = relu([o_l, 1])
        outs = [*A_v, _per_stage(M)]
        M3 = M.view(n * S, G * B, H, K).unbind(0)
        x3 = dXs.view(n * S, G * B, K, 1).unbind(0)
        zk = _per_stage(ZK)  # row r of step s at s * (S + 1) + r
        k3 = ZK.view(-1, G * B, H, 1).unbind(0)
        rows = ZK.flatten(2)  # (n + 1, S + 1, G B H)
        prefixes = [None] + [rows[:, : i + 1].transpose(1, 2).unbind(0) for i in range(1, S)]
        full, z_next = rows[:-1].transpose(1, 2).unbind(0), rows[1:, 0].unbind(0)
        later = list(zip(self.w_t[1:], A_v, outs[1:], strict=True))  # layers 1..m
        w0_t, b0, out0 = self.w_t[0], self.b0, outs[0]
        coefficients = [self.coefficients(n0 + s) for s in range(n)]
        readouts = plan.readout_at if out is not None else {}
        for s in range(n):
            stage_coef, update, _ = coefficients[s]
            for i in range(S):
                j = s * S + i
                if i:
                    torch.mv(prefixes[i][s], stage_coef[i], out=Y_flat[j])
                    y = Y_v[j]
                else:
                    y = zk[s * (S + 1)]
                o = torch.baddbmm(b0, y, w0_t, out=out0[j])
                for W_t, a, o_next in later:  # relu (the ones stay), then [A, 1] [Wᵀ; b]
                    a[j].clamp_min_(0)
                    o = torch.bmm(a[j], W_t, out=o_next[j])
                o.tanh_()
                torch.bmm(M3[j], x3[j], out=k3[s * (S + 1) + 1 + i])
            torch.mv(full[s], update, out=z_next[s])
            if n0 + s + 1 in readouts:
                _readout(out, ZK[s + 1, 0], plan, n0 + s + 1)
        buf = {"dX": dXs, "Y": Y, "A": A, "ZK": ZK}
        if self.spec.need_grad:
            if self.keep_m:
                buf["M_kept"] = M.clone()
            M = M.view(n, S, G, B, H, K)
            buf["P"] = M.mul_(M).neg_().add_(1).mul_(dXs.unsqueeze(-2))  # (1 − M²) ⊙ ẋ
        return ZK[n, 0].clone(), buf

    def backward_chunk(self, buf, n0, n1, lam, grad_out, grads):
        """Sweep steps ``n1 − 1, ..., n0`` back from ``lam = dL/dz_{n1}``; returns ``dL/dz_{n0}``.

        Adds the chunk's parameter gradients (and ``ẋ``'s) to ``grads``.
        """
        plan, widths = self.spec.plan, self.widths
        S, n, (G, B, H) = len(plan.tableau[2]), n1 - n0, lam.shape
        m = len(widths) - 1
        # dO_m overwrites P, stage by stage: no new buffer of H K per stage
        dO = [lam.new_empty(n, S, G, B, w) for w in widths[:-1]] + [buf["P"].flatten(-2)]
        dO_v = [_per_stage(d) for d in dO]
        A_v = [_per_stage(a[..., :-1]) for a in buf["A"]]
        P4 = _per_stage(buf["P"])
        if self.keep_m:  # v_i kept for dL/dẋ
            V = lam.new_empty(n, S, G, B, H)
            V_flat, V4 = _per_stage(V.flatten(2)), _per_stage(V.unsqueeze(-1))
        else:  # v_i in one scratch vector
            V, v = None, lam.new_empty(G, B, H, 1)
            V_flat, V4 = [v.view(-1)] * (n * S), [v] * (n * S)
        dA = [lam.new_empty(G, B, w) for w in widths[:-1]]  # dL/dA_l, one stage
        R = [lam.new_empty(S + 1, G, B, H), lam.new_empty(S + 1, G, B, H)]
        R[0][0] = lam
        slots = [r.unbind(0) for r in R]
        prefixes = [[r.flatten(1)[: S - i].T for i in range(S)] for r in R]
        # rows [λ, dY_{S−1}, ..., dY_{i+1}]
        coefficients = [self.coefficients(n0 + s) for s in range(n)]
        w, reverse_layers = self.w, list(range(m, 0, -1))
        threshold_backward = torch.ops.aten.threshold_backward.grad_input
        for s in range(n - 1, -1, -1):
            p = (n - 1 - s) % 2
            adjoint, slot, prefix = coefficients[s][2], slots[p], prefixes[p]
            for i in range(S - 1, -1, -1):
                j = s * S + i
                torch.mv(prefix[i], adjoint[i], out=V_flat[j])
                P4[j].mul_(V4[j])  # dO_m = v ⊗ ẋ ⊙ (1 − M²)
                for h in reverse_layers:
                    torch.bmm(dO_v[h][j], w[h], out=dA[h - 1])
                    threshold_backward(dA[h - 1], A_v[h - 1][j], 0, grad_input=dO_v[h - 1][j])
                torch.bmm(dO_v[0][j], w[0], out=slot[S - i])  # dY_i
            torch.sum(R[p], 0, out=R[1 - p][0])
            _readout(R[1 - p][0], grad_out, plan, n0 + s)
        self._parameter_grads(buf, dO, V, grads, n0, n1)
        return R[n % 2][0].clone()

    def _parameter_grads(self, buf, dO, V, grads, n0, n1):
        """The chunk's weight gradients, each one product per group over all its stages."""
        Y = buf["Y"]
        Y[:, 0] = buf["ZK"][:-1, 0]  # stage 0 is at the step's start
        d = _groups(dO[0])
        grads["W"][0].baddbmm_(d.transpose(1, 2), _groups(Y))
        grads["b"][0] += d.sum(1)
        for dWb, d, a in zip(grads["Wb"], dO[1:], buf["A"], strict=True):  # [dW_l, db_l]
            dWb.baddbmm_(_groups(d).transpose(1, 2), _groups(a))
        if grads["x"] is not None:  # dL/dẋ = Σ_h v_h M_h
            M = buf["M_kept"].unflatten(-1, (V.shape[-1], -1))
            dX = (V.unsqueeze(-1) * M).sum(-2)  # (n, S, G, batch, K)
            for i, view in enumerate(self.spec.plan.stages(grads["x"], n0, n1)):
                view += dX[:, i]


class _CDERK(torch.autograd.Function):
    """``z(T_i)`` of ``G`` Neural CDEs side by side on the fixed grid (module docstring).

    Inputs: ``z0`` (G, batch, H); ``dX`` (n_times, G, batch, K), ``ẋ`` at
    ``plan.times``; ``W_0, b_0, ..., W_m, b_m``, each ``W_l`` (G, out, in), ``b_l``
    (G, out). ``spec``: not differentiable.
    """

    @staticmethod
    def forward(ctx, spec, z0, dX, *params):
        keep_m = spec.need_grad and ctx.needs_input_grad[2]
        loop = _Loop(spec, dX, params, keep_m)
        out = torch.zeros(z0.shape, dtype=z0.dtype, device=z0.device)
        _readout(out, z0, spec.plan, 0)
        z, saved = z0, []
        for n0, n1 in spec.chunks:
            start = z
            z, buf = loop.forward_chunk(z, n0, n1, out)
            if spec.need_grad:  # the first chunk's start is z0, saved below
                saved.append(buf if spec.keep else start if n0 else None)
        ctx.save_for_backward(z0, dX, *params)
        ctx.spec, ctx.saved, ctx.keep_m = spec, saved, keep_m
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        z0, dX, *params = ctx.saved_tensors
        spec = ctx.spec
        loop = _Loop(spec, dX, params, ctx.keep_m)
        grad_out = grad_out.contiguous()
        weights = params[::2]
        W0 = weights[0]
        grads = {  # layer 0: dW_0, db_0; the later layers: [dW_l, db_l] (G, out, in + 1)
            "W": [W0.new_zeros(W0.shape)],
            "b": [W0.new_zeros(W0.shape[:2])],
            "Wb": [W.new_zeros(W.shape[0], W.shape[1], W.shape[2] + 1) for W in weights[1:]],
            "x": torch.zeros_like(dX) if ctx.needs_input_grad[2] else None,
        }
        lam = torch.zeros(z0.shape, dtype=z0.dtype, device=z0.device)
        _readout(lam, grad_out, spec.plan, spec.plan.n_steps)
        chunks = ctx.saved
        if spec.keep:  # the sweep overwrites the kept buffers (P with dO_m): a second
            ctx.saved = [None]  # backward (retain_graph=True) recomputes them from z0
        for (n0, n1), saved in zip(reversed(spec.chunks), reversed(chunks), strict=True):
            if not isinstance(saved, dict):  # a chunk's first state (None: z0): recompute
                saved = loop.forward_chunk(z0 if saved is None else saved, n0, n1)[1]
            lam = loop.backward_chunk(saved, n0, n1, lam, grad_out, grads)
        params_grads = [grads["W"][0], grads["b"][0]]
        for dWb in grads["Wb"]:
            params_grads += [dWb[..., :-1], dWb[..., -1]]
        return None, lam, grads["x"], *params_grads


def integrate_cde(z0, dX, plan, weights, biases):
    """``z(T_i)`` of ``G`` Neural CDEs on the fixed grid of ``plan``, hand-written backward.

    The field of group ``g`` is ``f_g(z) ẋ`` with ``f_g(z) = tanh(MLP_g(z))`` reshaped
    to (H, K), ``MLP_g`` the linear layers ``weights[l][g], biases[l][g]`` with a ReLU
    between each two (module docstring).

    Parameters
    ----------
    z0 : Tensor of shape (G, batch, H)
    dX : Tensor of shape (n_times, G, batch, K)
        The path's derivative ``ẋ = dX/ds`` at ``plan.times``.
    plan : StagePlan
    weights : sequence of Tensor
        ``W_0, ..., W_m``, each of shape (G, out, in): ``in = H`` for ``W_0``,
        ``out = H K`` for ``W_m``.
    biases : sequence of Tensor
        ``b_0, ..., b_m``, each of shape (G, out).

    Returns
    -------
    Tensor of shape (G, batch, H)
        ``z`` at each case's own final knot, as torchdiffeq's fixed-grid solver gives it.
    """
    G, B, H = z0.shape
    K = dX.shape[-1]
    weights, biases = list(weights), list(biases)
    shapes_ok = (
        len(weights) == len(biases) >= 1
        and dX.shape[1:3] == (G, B)
        and weights[0].shape[2] == H
        and weights[-1].shape[1] == H * K
        and all(W.shape[0] == G and W.dim() == 3 for W in weights)
        and all(b.shape == W.shape[:2] for W, b in zip(weights, biases, strict=True))
        and all(a.shape[1] == b.shape[2] for a, b in itertools.pairwise(weights))
    )
    if not shapes_ok:
        raise ValueError(
            "integrate_cde: inconsistent shapes: z0 "
            f"{tuple(z0.shape)}, dX {tuple(dX.shape)}, weights "
            f"{[tuple(W.shape) for W in weights]}, biases {[tuple(b.shape) for b in biases]}."
        )
    params = [t for pair in zip(weights, biases, strict=True) for t in pair]
    tensors = (z0, dX, *params)
    need_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    S = len(plan.tableau[2])
    # per stage and case: ẋ, Y, k, v, the A_l and dO_l, P and dO_m (and M, if kept)
    rows = K + 3 * H + 2 * sum(W.shape[1] for W in weights[:-1]) + 3 * H * K
    step_bytes = S * G * B * rows * z0.element_size()
    spec = _Spec(plan, step_bytes, need_grad)
    return _CDERK.apply(spec, *tensors)
