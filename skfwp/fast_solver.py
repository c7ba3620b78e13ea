"""The fast solver: fixed-step Runge–Kutta for rank-one affine matrix ODEs.

Solves, for each batch element and head, the matrix ODE ::

    dS/ds = beta(s) (p(s) − S q(s)) q(s)ᵀ        (decay=True:  delta-rule form)
    dS/ds = beta(s) p(s) q(s)ᵀ                    (decay=False: Hebbian form)

``S`` of shape ``(d, d)``, whose coefficients ``p, q`` (d,) and ``beta`` () are known
functions of ``s`` that do not depend on ``S``: the field is affine in ``S``. The
continuous FWP rules (:mod:`skfwp.nn.fwp`) take this form.

It reproduces the generic path (:func:`skfwp.solver.integrate` with torchdiffeq's
fixed-grid solvers) up to float rounding:

- **Grid.** torchdiffeq's: ``0, h, 2h, ...`` up to the batch's last final knot, with
  the last point moved onto it (:func:`fixed_grid`). Each case ``i`` is read at its
  own final knot ``T_i``, linearly interpolated within a step as torchdiffeq does.
- **Stages.** The same Butcher tableaux and stage times (:data:`TABLEAUS`); note that
  torchdiffeq's ``"rk4"`` is the 3/8 rule, stages at ``s_n + {0, 1/3, 2/3, 1} h``.
  The caller evaluates the coefficients at every distinct stage time at once
  (:class:`StagePlan`): one batched slow-net call instead of one per stage.
- **One step is affine.** Stage ``i`` moves along ``e_i = beta_i (p_i − Y_i q_i)`` from
  the stage state ``Y_i = S + h Σ_j a_ij e_j q_jᵀ``, so ``e_i = α_i − S μ_i`` with ::

      α_i = beta_i p_i − Σ_{j<i} c_ij α_j,   μ_i = beta_i q_i − Σ_{j<i} c_ij μ_j,
      c_ij = beta_i h a_ij (q_j · q_i)

  and ``S_{n+1} = S_n + h Σ_i b_i e_i q_iᵀ``. Transposed, ``P = Sᵀ``::

      P_{n+1} = P_n + Q_n (B_n − V_n P_n)

  with ``Q_n`` (d x r) the columns ``h b_i q_i``, ``B_n`` and ``V_n`` (r x d) the rows
  ``α_iᵀ`` and ``μ_iᵀ``, for the ``r`` stages with ``b_i != 0`` (r = 4 for rk4).
  ``Q, B, V`` come from elementwise operations, vectorised over many steps
  (:func:`_step_factors`); the sequential loop is two small batched products per
  step. (``P`` rather than ``S``: MKL's batched GEMM is 2–7x faster with the thin
  ``r x d`` factor on the left.)
- **Backward.** A hand-written adjoint of the discrete recurrence
  (:class:`_AffineRecurrence`), swept backwards with ``G_n = dL/dP_n``::

      E_n = B_n − V_n P_n,   dE_n = Q_nᵀ G_{n+1},   G_n = G_{n+1} − V_nᵀ dE_n (+ readout)
      dL/dB_n = dE_n,   dL/dV_n = −dE_n P_nᵀ,   dL/dQ_nᵀ = E_n G_{n+1}ᵀ

  the last two vectorised over a chunk; ordinary autograd through
  :func:`_step_factors` then gives the gradients of ``p, q, beta``. States are kept
  when they fit in :data:`STATE_MEMORY_BUDGET`; otherwise only the first state of
  each chunk of ``C ≈ √n_steps`` steps is kept and the chunk is recomputed, so memory
  grows as ``√n_steps`` states, not ``n_steps``.
- **Hebbian form.** Without decay, ``S(T_i) = S(0) + Σ_n (S_{n+1} − S_n)`` is one
  weighted sum over every stage: no loop at all.
"""

from __future__ import annotations

import math

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "FAST_METHODS",
    "STATE_MEMORY_BUDGET",
    "TABLEAUS",
    "StagePlan",
    "fixed_grid",
    "integrate_rank_one",
]

#: Butcher tableaux ``(c, a, b)`` of torchdiffeq's fixed-grid methods, in the form its
#: step functions compute them. ``"rk4"`` is torchdiffeq's ``rk4``: the 3/8 rule
#: (``rk4_alt_step_func``), not the classic RK4.
TABLEAUS = {
    "euler": ((0.0,), ((),), (1.0,)),
    "midpoint": ((0.0, 0.5), ((), (0.5,)), (0.0, 1.0)),
    "rk4": (
        (0.0, 1 / 3, 2 / 3, 1.0),
        ((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
        (1 / 8, 3 / 8, 3 / 8, 1 / 8),
    ),
}
FAST_METHODS = tuple(TABLEAUS)

#: Bytes of solver states the backward may keep; beyond it, chunks are recomputed.
STATE_MEMORY_BUDGET = 256 * 2**20


def fixed_grid(t_end, step_size, dtype, device=None):
    """torchdiffeq's fixed-step grid on ``[0, t_end]``: ``0, h, 2h, ...``, last point ``t_end``.

    The same tensor operations as torchdiffeq's ``_grid_constructor_from_step_size``,
    in the same dtype, so that the grids agree bit for bit.
    """
    t = torch.tensor([0.0, t_end], dtype=dtype, device=device)
    n_points = torch.ceil((t[-1] - t[0]) / step_size + 1).item()
    grid = torch.arange(0, n_points, dtype=dtype, device=device) * step_size + t[0]
    grid[-1] = t[-1]
    return grid


class StagePlan:
    """Where the fast solver needs the field's coefficients, and where it reads out.

    Parameters
    ----------
    ends : LongTensor of shape (batch,)
        Each case's final knot ``T_i``.
    method : {"euler", "midpoint", "rk4"}
    step_size : float or None
        In knot units; None: 1.
    dtype : torch.dtype
        Of the solver state (torchdiffeq builds its grid in it).

    Attributes
    ----------
    times : Tensor of shape (n_times,)
        Every distinct stage time: the grid points, then each interior stage.
    index : LongTensor of shape (n_steps, n_stages)
        ``times[index[n, i]]`` is stage ``i`` of step ``n``.
    dt : Tensor of shape (n_steps,)
        Step sizes (the last step may be shorter).
    readout : Tensor of shape (batch, n_steps + 1)
        ``S(T_i) = Σ_n readout[i, n] S_n``: 1 at a grid point, or torchdiffeq's linear
        interpolation weights between two.
    readout_at : dict
        The same, sparse: ``n -> (cases, weights)`` for each state ``n`` read out.
    tableau : tuple
        ``(c, a, b)`` from :data:`TABLEAUS`.
    """

    def __init__(self, ends, method, step_size, dtype):
        if method not in TABLEAUS:
            raise ValueError(f"method={method!r} has no fast solver; choose one of {FAST_METHODS}.")
        device = ends.device
        step = 1.0 if step_size is None else float(step_size)
        t_end = float(ends.max())
        grid = fixed_grid(t_end, step, dtype, device)
        n_steps = len(grid) - 1
        t0, dt = grid[:-1], grid[1:] - grid[:-1]
        c, _, _ = self.tableau = TABLEAUS[method]
        # stage times exactly as torchdiffeq's step functions compute them
        interior = [t0 + dt * ci for ci in c if 0.0 < ci < 1.0]
        self.times = torch.cat([grid, *interior])
        steps = torch.arange(n_steps, device=device)
        columns, k = [], 0
        for ci in c:
            if ci == 0.0:
                columns.append(steps)
            elif ci == 1.0:
                columns.append(steps + 1)
            else:
                k += 1
                columns.append(steps + k * n_steps + 1)
        self.index = torch.stack(columns, dim=1)  # (n_steps, n_stages)
        self.dt = dt
        self.readout = self._readout_weights(ends.to(dtype), grid)
        cases, states = torch.nonzero(self.readout, as_tuple=True)
        self.readout_at = {}
        for n in torch.unique(states).tolist():
            rows = cases[states == n]
            self.readout_at[n] = (rows, self.readout[rows, n])

    @staticmethod
    def _readout_weights(t, grid):
        """torchdiffeq's output at ``t``: the first step whose end reaches it, interpolated."""
        n_steps = len(grid) - 1
        # first n with grid[n + 1] >= t (the grid may end non-monotonically, as torchdiffeq's)
        step = (grid[1:, None] >= t[None, :]).to(torch.uint8).argmax(0)  # (batch,)
        t0, t1 = grid[step], grid[step + 1]
        slope = (t - t0) / (t1 - t0)
        slope = torch.where(t == t0, 0.0, torch.where(t == t1, 1.0, slope))
        weights = torch.zeros(len(t), n_steps + 1, dtype=t.dtype, device=t.device)
        rows = torch.arange(len(t), device=t.device)
        weights[rows, step] = 1 - slope
        weights[rows, step + 1] += slope
        return weights

    @property
    def n_steps(self):
        return self.index.shape[0]


def _step_factors(p, q, beta, dt, tableau):
    """``Q, B, V`` of the steps ``P_{n+1} = P_n + Q_n (B_n − V_n P_n)`` (module docstring).

    ``p, q`` of shape (n, n_stages, *batch, d), ``beta`` (n, n_stages, *batch) and
    ``dt`` (n,) give ``Q`` of shape (n, *batch, d, r) and ``B, V`` (n, *batch, r, d).
    """
    _, a, b = tableau
    h = dt.view(-1, *[1] * (beta.dim() - 2))  # (n, 1, ..., 1), broadcasts like beta_i
    p, q, beta = p.unbind(1), q.unbind(1), beta.unbind(1)
    alphas, mus = [], []
    for i, beta_i in enumerate(beta):
        alpha_i = beta_i.unsqueeze(-1) * p[i]
        mu_i = beta_i.unsqueeze(-1) * q[i]
        for j, a_ij in enumerate(a[i]):
            c_ij = ((a_ij * h) * beta_i * (q[j] * q[i]).sum(-1)).unsqueeze(-1)
            alpha_i = alpha_i - c_ij * alphas[j]
            mu_i = mu_i - c_ij * mus[j]
        alphas.append(alpha_i)
        mus.append(mu_i)
    used = [i for i, b_i in enumerate(b) if b_i != 0.0]
    Q = torch.stack([(b[i] * h).unsqueeze(-1) * q[i] for i in used], dim=-1)
    B = torch.stack([alphas[i] for i in used], dim=-2)
    V = torch.stack([mus[i] for i in used], dim=-2)
    return Q, B, V


def _chunk_factors(p, q, beta, plan, n0, n1):
    """:func:`_step_factors` of steps ``n0:n1``, flattened to (n, batch * h, ., .)."""
    index = plan.index[n0:n1]
    factors = _step_factors(p[index], q[index], beta[index], plan.dt[n0:n1], plan.tableau)
    return [f.flatten(1, -3) for f in factors]


def _add_readout(out, state, plan, n):
    """``out[i] += readout[i, n] * state[i]`` for the cases ``i`` read out at state ``n``."""
    if n in plan.readout_at:
        cases, weights = plan.readout_at[n]
        out[cases] += weights.view(-1, *[1] * (state.dim() - 1)) * state[cases]


def _run(P, Q, B, V, states, E, plan, n0, out=None):
    """Steps ``n0, n0 + 1, ...`` from ``P``: ``E_n = B_n − V_n P_n``, ``P_{n+1} = P_n + Q_n E_n``.

    Writes ``P_n`` into ``states`` and ``E_n`` into ``E`` (buffers of shape
    (n, batch * h, ., .)), adds the readouts to ``out`` when given, and returns the
    state after the last step.
    """
    n = len(E)
    states[0] = P
    for i in range(n):
        torch.baddbmm(B[i], V[i], states[i], alpha=-1, out=E[i])
        P = torch.baddbmm(states[i], Q[i], E[i], out=states[i + 1] if i + 1 < n else None)
        if out is not None:
            _add_readout(out, P.view(out.shape), plan, n0 + i + 1)
    return P


class _AffineRecurrence(torch.autograd.Function):
    """``P_{n+1} = P_n + Q_n (B_n − V_n P_n)``, read out as ``Σ_n readout[:, n] P_n``.

    Inputs: ``P0`` (batch, h, d, d) and the stage values ``p, q`` (n_times, batch, h, d),
    ``beta`` (n_times, batch, h), from which :func:`_step_factors` builds ``Q, B, V``
    chunk by chunk. See the module docstring.
    """

    @staticmethod
    def forward(ctx, P0, p, q, beta, plan, chunk_size, keep_states):
        d = P0.shape[-1]
        P = P0.reshape(-1, d, d)  # (batch * h, d, d)
        out = torch.zeros_like(P0)
        _add_readout(out, P0, plan, 0)
        chunks = [
            (n0, min(n0 + chunk_size, plan.n_steps)) for n0 in range(0, plan.n_steps, chunk_size)
        ]
        keep = keep_states and any(ctx.needs_input_grad[:4])
        saved = []
        for n0, n1 in chunks:
            Q, B, V = _chunk_factors(p, q, beta, plan, n0, n1)
            states, E = P.new_empty(n1 - n0, *P.shape), torch.empty_like(B)
            saved.append((states, E) if keep else P)
            P = _run(P, Q, B, V, states, E, plan, n0, out)
        ctx.save_for_backward(P0, p, q, beta)
        ctx.plan, ctx.chunks, ctx.saved, ctx.keep = plan, chunks, saved, keep
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        P0, p, q, beta = ctx.saved_tensors
        plan, shape, d = ctx.plan, P0.shape, P0.shape[-1]
        grad_out = grad_out.contiguous()
        grads = [torch.zeros_like(x, memory_format=torch.contiguous_format) for x in (p, q, beta)]
        G = torch.zeros_like(P0)  # dL/dP_n at n = n_steps
        _add_readout(G, grad_out, plan, plan.n_steps)
        G = G.view(-1, d, d)
        for (n0, n1), saved in zip(reversed(ctx.chunks), reversed(ctx.saved), strict=True):
            index = plan.index[n0:n1]
            with torch.enable_grad():
                stage = [x[index].detach().requires_grad_() for x in (p, q, beta)]
                factors = _step_factors(*stage, plan.dt[n0:n1], plan.tableau)
            Q, B, V = (f.detach().flatten(1, -3) for f in factors)  # (n, batch * h, ., .)
            if ctx.keep:
                states, E = saved
            else:  # recompute the chunk from its first state
                states, E = G.new_empty(n1 - n0, *G.shape), torch.empty_like(B)
                _run(saved, Q, B, V, states, E, plan, n0)
            # sweep back: G_next[i] = dL/dP_{n0+i+1}, dE[i] = dL/dE_{n0+i}
            G_next, dE = torch.empty_like(states), torch.empty_like(E)
            G_next[-1] = G
            for i in range(n1 - n0 - 1, -1, -1):
                torch.bmm(Q[i].transpose(-1, -2), G_next[i], out=dE[i])
                into = G_next[i - 1] if i > 0 else None
                G = torch.baddbmm(G_next[i], V[i].transpose(-1, -2), dE[i], alpha=-1, out=into)
                _add_readout(G.view(shape), grad_out, plan, n0 + i)
            grad_Q = (E @ G_next.transpose(-1, -2)).transpose(-1, -2)
            grad_V = -(dE @ states.transpose(-1, -2))
            stage_grads = torch.autograd.grad(
                factors,
                stage,
                [g.view(f.shape) for g, f in zip((grad_Q, dE, grad_V), factors, strict=True)],
            )
            flat_index = index.reshape(-1)
            for total, g in zip(grads, stage_grads, strict=True):
                total.index_add_(0, flat_index, g.flatten(0, 1))
        return G.view(shape), *grads, None, None, None


def _hebbian_sum(S0, p, q, beta, plan):
    """Without decay: ``S(T_i) = S0 + Σ_n w_in (S_{n+1} − S_n)``, ``w_in = Σ_{m>n} readout[i, m]``.

    Every step's increment is a known sum over its stages, so this is one weighted
    sum over the stage times, with no loop.
    """
    _, _, b = plan.tableau
    after = plan.readout[:, 1:].flip(1).cumsum(1).flip(1)  # (batch, n_steps): w_in
    weights = p.new_zeros(p.shape[:2])  # (n_times, batch)
    for i, b_i in enumerate(b):
        if b_i != 0.0:
            weights.index_add_(0, plan.index[:, i], (after * (b_i * plan.dt)).T)
    rate = weights.unsqueeze(-1) * beta  # (n_times, batch, h)
    return S0 + torch.einsum("tbh,tbhd,tbhe->bhde", rate, p, q)


def integrate_rank_one(S0, p, q, beta, plan, *, decay=True, keep_states=None, chunk_size=None):
    """Solve ``dS/ds = beta (p − S q) qᵀ`` (or ``beta p qᵀ``) and read each case at ``T_i``.

    Parameters
    ----------
    S0 : Tensor of shape (batch, h, d, d)
        The state at ``s = 0``.
    p, q : Tensor of shape (n_times, batch, h, d)
        The coefficients at ``plan.times`` (time-major).
    beta : Tensor of shape (n_times, batch, h)
    plan : StagePlan
    decay : bool
        False for the Hebbian form ``dS/ds = beta p qᵀ``.
    keep_states : bool or None
        Keep every state for the backward instead of recomputing chunk by chunk;
        None: when they fit in :data:`STATE_MEMORY_BUDGET`.
    chunk_size : int or None
        Steps per chunk. None: all steps when ``keep_states``, else ``⌈√n_steps⌉``,
        so that ``2 √n_steps`` states are held at a time.

    Returns
    -------
    Tensor of shape (batch, h, d, d)
        ``S(T_i)`` for each case ``i``, as torchdiffeq's fixed-grid solver gives it.
    """
    if not decay:
        return _hebbian_sum(S0, p, q, beta, plan)
    if keep_states is None:
        keep_states = plan.n_steps * S0.numel() * S0.element_size() <= STATE_MEMORY_BUDGET
    if chunk_size is None:  # one chunk when every state is kept anyway
        chunk_size = plan.n_steps if keep_states else math.ceil(math.sqrt(plan.n_steps))
    P0 = S0.transpose(-1, -2)  # the recurrence runs on P = Sᵀ
    P = _AffineRecurrence.apply(P0, p, q, beta, plan, max(int(chunk_size), 1), keep_states)
    return P.transpose(-1, -2)
