"""The gated nODE's fixed-grid Runge–Kutta loop, with a hand-written backward.

One stage of the field, for stage states ``Y`` (batch, H) and the precomputed input
terms ``P = W_x x + b`` (batch, width [+ H]) of ``F``'s first layer [and the gate]::

    pre = P + Y W_hᵀ
    o_0 = pre[:, :width],   A_l = relu(o_{l−1}),   o_l = A_l W_lᵀ + b_l     (l = 1..m)
    F   = o_m  (tanh(o_m) with flow_activation="tanh")
    D   = g F − Y  (leak)   or   g F                 (g = 1 without a gain)
    k   = G ⊙ D,   G = sigmoid(pre[:, width:])      (gated; else k = D)
    dh/ds = k / τ

and one step of the explicit tableau ``(a, b)`` with ``c = Δs / τ`` (τ folded into
the step)::

    Y_0 = z_n,   Y_i = z_n + c Σ_{j<i} a_ij k_j,   z_{n+1} = z_n + c Σ_i b_i k_i

Each combination is one matrix–vector product over the rows ``[z_n, k_0, k_1, ...]``.
The forward runs without autograd (:class:`_GatedRK`) and keeps, per stage, ``Y``,
the ReLU outputs ``A_l``, ``G``, ``G ⊙ (1 − G) ⊙ D = k (1 − G)`` and ``F`` (with a
gain or tanh). The backward sweeps the steps in reverse with ``λ = dL/dz_{n+1}``
(readouts added where cases end), for ``i = S − 1, ..., 0``::

    v_i    = c (b_i λ + Σ_{m>i} a_mi dY_m)                   (dL/dk_i)
    dD     = v_i ⊙ G,   dpre[:, width:] = v_i ⊙ k_i (1 − G)
    dO_m   = g dD (⊙ (1 − F²) with tanh),   dO_{l−1} = (dO_l W_l) ⊙ [A_l > 0]
    dpre[:, :width] = dO_0,   dY_i = dpre W_h − dD  (− dD only with leak)

then ``λ ← λ + Σ_i dY_i``. The parameter gradients are products over all stages of a
chunk at once (``dpre``, ``dO_l`` and ``dD`` kept per stage)::

    [dW_h, dW_x, db] = Σ dpreᵀ [Y, x, 1],   dW_l = Σ dO_lᵀ A_l,   db_l = Σ dO_l,
    dg = Σ dD ⊙ F

so the loop holds about seven small operations per stage forward and six backward,
none of them recorded by autograd (the autograd loop of
:func:`~skfwp.nn.fast_solver.integrate_fixed_grid` records about 25 per stage).

**Memory.** The steps go in chunks of ``max(⌈√n_steps⌉, FIXED_GRID_MEMORY / step
bytes)`` steps (:data:`skfwp.nn.fast_solver.FIXED_GRID_MEMORY`, as for
:func:`~skfwp.nn.fast_solver.integrate_fixed_grid`). A run of one chunk keeps its
buffers for the backward; a longer one keeps only each chunk's first state, and the
backward recomputes each chunk's forward before sweeping it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from . import fast_solver

__all__ = ["flow_layers", "integrate_gated"]


def flow_layers(flow):
    """``(hidden, tanh)`` of a flow built by :func:`skfwp.nn.layers.mlp`, or None.

    ``hidden``: the ``nn.Linear`` layers after ``F``'s first one, each behind an
    ``nn.ReLU``; ``tanh``: whether an ``nn.Tanh`` ends ``F``. None for any other stack
    of modules, which :func:`integrate_gated` does not cover.
    """
    modules = list(flow)
    tanh = bool(modules) and type(modules[-1]) is nn.Tanh
    modules = modules[:-1] if tanh else modules
    linears, relus = modules[::2], modules[1::2]
    if (
        len(modules) % 2 == 0
        or any(type(m) is not nn.Linear for m in linears)
        or any(type(m) is not nn.ReLU for m in relus)
    ):
        return None
    return linears[1:], tanh


class _Spec(fast_solver._HandSpec):
    """The non-tensor settings of one call: the plan, ``F``'s shape and the chunks."""

    def __init__(self, plan, width, gated, leak, tanh, tau, step_bytes, need_grad):
        super().__init__(plan, step_bytes, need_grad)
        self.width, self.gated, self.leak, self.tanh, self.tau = width, gated, leak, tanh, tau


_readout = fast_solver._add_readout  # cases along dim 0


class _Loop:
    """The loop over one call's steps, forward and backward, on detached tensors."""

    def __init__(self, spec, x, w_input, bias, w_state, gain, hidden):
        self.spec, self.x, self.w_input, self.bias = spec, x, w_input, bias
        self.w_state, self.gain = w_state, gain
        self.hidden = list(zip(hidden[::2], hidden[1::2], strict=True))  # (W_l, b_l)
        self.keep_f = spec.tanh or gain is not None  # F is kept per stage
        self._coefficients = {}

    def coefficients(self, n):
        """Step ``n``'s combination vectors: stage states, update, stage adjoints."""
        c = self.spec.dt[n] / self.spec.tau
        if c not in self._coefficients:
            self._coefficients[c] = fast_solver._rk_vectors(self.spec.plan.tableau, c, self.x)
        return self._coefficients[c]

    def forward_chunk(self, z, n0, n1, out=None):
        """Steps ``n0:n1`` from ``z``: the state ``z_{n1}`` (a copy) and the chunk's buffers.

        Buffers of shape (n, S, batch, ·) (step-major) hold ``[x, 1]``, ``pre`` (which
        the backward overwrites with ``dpre``), ``Y``, ``A_l``, ``G`` and ``F``; ``ZK``
        (n + 1, S + 1, batch, H) the rows ``[z_n, k_0, ..., k_{S−1}]`` of each step, the
        ``k_i`` overwritten with ``k_i (1 − G)`` at the end. Adds the readouts to ``out``
        when given.
        """
        spec, plan, width, hidden = self.spec, self.spec.plan, self.spec.width, self.hidden
        S, n, (B, H) = len(plan.tableau[2]), n1 - n0, z.shape
        X1 = z.new_empty(n, S, B, self.x.shape[-1] + 1)  # [x, 1] at every stage
        X1[..., -1] = 1
        for i, x in enumerate(plan.stages(self.x, n0, n1)):
            X1[:, i, :, :-1] = x
        pre = X1 @ torch.cat([self.w_input, self.bias[:, None]], 1).T  # (n, S, B, width [+ H])

        def new(size):
            return z.new_empty(n, S, B, size)

        buf = {"X1": X1, "pre": pre, "A": [new(W.shape[1]) for W, _ in hidden], "Y": new(H)}
        buf["G"] = new(H) if spec.gated else None
        buf["F"] = new(H) if self.keep_f else None
        ZK = buf["ZK"] = z.new_empty(n + 1, S + 1, B, H)
        ZK[0, 0] = z
        # every stage's views at once (stage i of step s at s * S + i): indexing a tensor
        # costs more than the small operations themselves
        pre_v, pre_f, Y, G, F_ = _views(pre, pre[..., :width], buf["Y"], buf["G"], buf["F"])
        A = _views(*buf["A"])
        Y_flat = _views(buf["Y"].flatten(2))[0]
        zk = ZK.flatten(0, 1).unbind(0)  # row r of step s at s * (S + 1) + r
        rows = ZK.flatten(2)  # (n + 1, S + 1, B H)
        prefixes = [None] + [rows[:, : i + 1].transpose(1, 2).unbind(0) for i in range(1, S)]
        full, z_next = rows[:-1].transpose(1, 2).unbind(0), rows[1:, 0].unbind(0)
        pre_g = _views(pre[..., width:])[0] if spec.gated else None
        buf["views"] = {
            "pre": pre_v,
            "pre_f": pre_f,
            "pre_g": pre_g,
            "G": G,
            "F": F_,
            "A": A,
            "zk": zk,
        }
        # transposed weights laid out contiguously: the products run faster so
        w_state_t = self.w_state.T.contiguous()
        hidden_t = [(W.T.contiguous(), b) for W, b in hidden]
        last = len(hidden) - 1
        # leak without gain or tanh: k = (b_m − y) + A_m W_mᵀ, one product and no sub
        fused = spec.leak and not self.keep_f and bool(hidden)
        coefficients = [self.coefficients(n0 + s) for s in range(n)]
        tanh, gain, leak, gated = spec.tanh, self.gain, spec.leak, spec.gated
        readouts = plan.readout_at if out is not None else {}
        for s in range(n):
            stage_coef, update, _ = coefficients[s]
            for i in range(S):
                j, k = s * S + i, zk[s * (S + 1) + 1 + i]
                if i:
                    y = Y[j]
                    torch.mv(prefixes[i][s], stage_coef[i], out=Y_flat[j])
                else:
                    y = zk[s * (S + 1)]
                pre_v[j].addmm_(y, w_state_t)
                o = pre_f[j]
                for h, (W_t, b) in enumerate(hidden_t):
                    a = torch.clamp_min(o, 0, out=A[h][j])
                    if h < last:
                        o = torch.addmm(b, a, W_t, out=A[h + 1][j])
                    elif fused:
                        o = torch.sub(b, y, out=k).addmm_(a, W_t)
                    else:
                        o = torch.addmm(b, a, W_t, out=k if F_ is None else F_[j])
                if tanh:
                    o = torch.tanh(o, out=F_[j])
                elif F_ is not None and o is not F_[j]:
                    o = F_[j].copy_(o)
                if gain is not None:
                    torch.mul(o, gain, out=k)
                    if leak:
                        k.sub_(y)
                elif leak and not fused:
                    torch.sub(o, y, out=k)
                elif o is not k:
                    k.copy_(o)
                if gated:
                    k.mul_(torch.sigmoid(pre_g[j], out=G[j]))
            torch.mv(full[s], update, out=z_next[s])
            if n0 + s + 1 in readouts:
                _readout(out, zk[(s + 1) * (S + 1)], plan, n0 + s + 1)
        if spec.gated:  # k (1 − G) = G (1 − G) D, for the gate's gradient
            K = ZK[:-1, 1:]  # the backward needs no k: overwritten in place
            K.addcmul_(K, buf["G"], value=-1)
        return ZK[n, 0].clone(), buf

    def backward_chunk(self, buf, n0, n1, lam, grad_out, grads):
        """Sweep steps ``n1 − 1, ..., n0`` back from ``lam = dL/dz_{n1}``; returns ``dL/dz_{n0}``.

        Adds the chunk's parameter gradients to ``grads`` (a dict of tensors).
        """
        spec, plan, hidden = self.spec, self.spec.plan, self.hidden
        S, n, (B, H) = len(plan.tableau[2]), n1 - n0, lam.shape
        m, gain, gated = len(hidden), self.gain, spec.gated
        dpre = buf["pre"]  # its values are no longer needed
        dO = [lam.new_empty(n, S, B, W.shape[0]) for W, _ in hidden]
        dD_all = lam.new_empty(n, S, B, H) if gain is not None else None
        v, tmp = lam.new_empty(B, H), lam.new_empty(B, H)
        v_flat = v.view(-1)
        dA = [lam.new_empty(B, W.shape[1]) for W, _ in hidden]
        views = buf["views"]  # the forward's, of the same buffers (pre: now dpre)
        dpre_v, dpre_f, dpre_g = views["pre"], views["pre_f"], views["pre_g"]
        G, F_, A = views["G"], views["F"], views["A"]
        (dD_v,), zk = _views(dD_all), views["zk"]  # zk: k (1 − G) after the forward
        dO_v = _views(*dO)
        # dL/dO_m: stored where the weight gradient of F's last layer needs it
        dO_last = dO_v[-1] if m else dpre_f
        # ungated, without gain or tanh: dL/dk is dD = dO_m, written there directly
        direct = not gated and gain is None and not spec.tanh and m > 0
        R = [lam.new_empty(S + 1, B, H), lam.new_empty(S + 1, B, H)]
        R[0][0] = lam
        slots = [r.unbind(0) for r in R]
        prefixes = [
            [r.flatten(1)[: S - i].T for i in range(S)] for r in R
        ]  # rows [λ, dY_{S−1}, ..., dY_{i+1}]
        hidden_w = [W for W, _ in hidden]
        w_state = self.w_state.contiguous()
        coefficients = [self.coefficients(n0 + s) for s in range(n)]
        tanh, leak, reverse_layers = spec.tanh, spec.leak, list(range(m - 1, -1, -1))
        for s in range(n - 1, -1, -1):
            p = (n - 1 - s) % 2
            adjoint, slot, prefix = coefficients[s][2], slots[p], prefixes[p]
            for i in range(S - 1, -1, -1):
                j = s * S + i
                d = dpre_v[j]
                if direct:
                    dD = dO_last[j]
                    torch.mv(prefix[i], adjoint[i], out=dD.view(-1))
                else:
                    torch.mv(prefix[i], adjoint[i], out=v_flat)
                    out = dD_v[j] if gain is not None else tmp if tanh else dO_last[j]
                    if gated:
                        dD = torch.mul(v, G[j], out=out)
                        torch.mul(v, zk[s * (S + 1) + 1 + i], out=dpre_g[j])
                    else:
                        dD = out.copy_(v)
                    dF = dD
                    if gain is not None:
                        dF = torch.mul(dD, gain, out=tmp if tanh else dO_last[j])
                    if tanh:  # dO = dF (1 − F²)
                        f = F_[j]
                        torch.addcmul(dF, torch.mul(dF, f, out=v), f, value=-1, out=dO_last[j])
                for h in reverse_layers:
                    torch.mm(dO_v[h][j], hidden_w[h], out=dA[h])
                    torch.ops.aten.threshold_backward.grad_input(
                        dA[h], A[h][j], 0, grad_input=dO_v[h - 1][j] if h else dpre_f[j]
                    )
                if leak:
                    torch.addmm(dD, d, w_state, beta=-1, out=slot[S - i])
                else:
                    torch.mm(d, w_state, out=slot[S - i])
            torch.sum(R[p], 0, out=slots[1 - p][0])
            if n0 + s in plan.readout_at:
                _readout(slots[1 - p][0], grad_out, plan, n0 + s)
        self._parameter_grads(buf, dpre, dO, dD_all, grads, n0, n1)
        return slots[n % 2][0].clone()

    def _parameter_grads(self, buf, dpre, dO, dD_all, grads, n0, n1):
        """The chunk's weight gradients, each one product over all its stages."""
        Y, H = buf["Y"], buf["Y"].shape[-1]
        Y[:, 0] = buf["ZK"][:-1, 0]  # stage 0 is at the step's start
        flat_dpre = dpre.flatten(0, 2)
        # [dW_h, dW_x, db] = Σ dpreᵀ [Y, x, 1]
        grads["first"][:, :H].addmm_(flat_dpre.T, Y.flatten(0, 2))
        grads["first"][:, H:].addmm_(flat_dpre.T, buf["X1"].flatten(0, 2))
        for j in range(len(self.hidden)):
            flat = dO[j].flatten(0, 2)
            grads["hidden"][2 * j].addmm_(flat.T, buf["A"][j].flatten(0, 2))
            grads["hidden"][2 * j + 1] += flat.sum(0)
        if dD_all is not None:
            grads["gain"] += (dD_all * buf["F"]).sum()
        if grads.get("x") is not None:
            dX = dpre @ self.w_input  # (n, S, B, K)
            for i, view in enumerate(self.spec.plan.stages(grads["x"], n0, n1)):
                view += dX[:, i]


def _views(*buffers):
    """Each buffer (n, S, ...) as a tuple of its views ``[s, i]`` (at ``s * S + i``), or None."""
    return [None if b is None else b.flatten(0, 1).unbind(0) for b in buffers]


class _GatedRK(torch.autograd.Function):
    """``h(T_i)`` of the gated nODE on the fixed grid (module docstring).

    Inputs: ``h0`` (batch, H); ``x`` (n_times, batch, K), the path at ``plan.times``;
    ``w_input`` (width [+ H], K), ``bias`` (width [+ H]) and ``w_state`` (width [+ H],
    H), the first layers of ``F`` [and the gate] split by their inputs; ``gain`` (a
    0-dim tensor or None); ``hidden``: ``W_1, b_1, ..., W_m, b_m``. ``spec``: not
    differentiable.
    """

    @staticmethod
    def forward(ctx, spec, h0, x, w_input, bias, w_state, gain, *hidden):
        loop = _Loop(spec, x, w_input, bias, w_state, gain, hidden)
        out = torch.zeros_like(h0)
        _readout(out, h0, spec.plan, 0)
        z, saved = h0, []
        for n0, n1 in spec.chunks:
            start = z
            z, buf = loop.forward_chunk(z, n0, n1, out)
            if spec.need_grad:
                saved.append(buf if spec.keep else start)
        ctx.save_for_backward(h0, x, w_input, bias, w_state, gain, *hidden)
        ctx.spec, ctx.saved = spec, saved
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        h0, x, w_input, bias, w_state, gain, *hidden = ctx.saved_tensors
        spec = ctx.spec
        loop = _Loop(spec, x, w_input, bias, w_state, gain, hidden)
        grad_out = grad_out.contiguous()
        H, K = w_state.shape[1], w_input.shape[1]
        grads = {
            "first": w_input.new_zeros(len(w_input), H + K + 1),  # [dW_h, dW_x, db]
            "hidden": [torch.zeros_like(p) for p in hidden],
            "gain": None if gain is None else torch.zeros_like(gain),
            "x": torch.zeros_like(x) if ctx.needs_input_grad[2] else None,
        }
        lam = torch.zeros_like(h0)
        _readout(lam, grad_out, spec.plan, spec.plan.n_steps)
        for (n0, n1), saved in zip(reversed(spec.chunks), reversed(ctx.saved), strict=True):
            buf = saved if spec.keep else loop.forward_chunk(saved, n0, n1)[1]
            lam = loop.backward_chunk(buf, n0, n1, lam, grad_out, grads)
        return (
            None,
            lam,
            grads["x"],
            grads["first"][:, H:-1],
            grads["first"][:, -1],
            grads["first"][:, :H],
            grads["gain"],
            *grads["hidden"],
        )


def integrate_gated(
    h0, x, plan, w_state, w_input, bias, hidden=(), *, width, gated, leak, tanh, tau, gain=None
):
    """The gated nODE's ``h(T_i)`` on the fixed grid of ``plan``, hand-written backward.

    Parameters
    ----------
    h0 : Tensor of shape (batch, H)
    x : Tensor of shape (n_times, batch, K)
        The input path at ``plan.times``.
    plan : StagePlan
    w_state, w_input, bias : Tensor
        The first layers of ``F`` and (if ``gated``) the gate, stacked, split into their
        state and input parts: shapes (width [+ H], H), (width [+ H], K), (width [+ H],).
    hidden : sequence of (Tensor, Tensor)
        ``(W_l, b_l)`` of ``F``'s later layers, each behind a ReLU.
    width : int
        Output width of ``F``'s first layer.
    gated, leak, tanh : bool
    tau : float
    gain : Tensor of shape () or None

    Returns
    -------
    Tensor of shape (batch, H)
        ``h`` at each case's own final knot, as torchdiffeq's fixed-grid solver gives it.
    """
    hidden = [t for layer in hidden for t in layer]
    tensors = (h0, x, w_input, bias, w_state, gain, *hidden)
    need_grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
    S, B, H = len(plan.tableau[2]), len(h0), h0.shape[-1]
    rows = (
        2 * len(w_state)
        + x.shape[-1]
        + 6 * H
        + 2 * sum(w.shape[0] + w.shape[1] for w in hidden[::2])
    )
    step_bytes = S * B * rows * h0.element_size()
    spec = _Spec(plan, width, gated, leak, tanh, float(tau), step_bytes, need_grad)
    return _GatedRK.apply(spec, *tensors)
