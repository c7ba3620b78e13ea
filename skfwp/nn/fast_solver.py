"""The fast solver: fixed-step Runge–Kutta for rank-one affine matrix ODEs.

Solves, for each batch element and head, the matrix ODE ::

    dS/ds = beta(s) (p(s) − S q(s)) q(s)ᵀ        (decay=True:  delta-rule form)
    dS/ds = beta(s) p(s) q(s)ᵀ                    (decay=False: Hebbian form)

``S`` of shape ``(d, d)``, whose coefficients ``p, q`` (d,) and ``beta`` () are known
functions of ``s`` that do not depend on ``S``: the field is affine in ``S``. The
continuous FWP rules (:mod:`skfwp.nn.delta`) take this form.

It reproduces the generic path (:func:`skfwp.nn.solver.integrate` with torchdiffeq's
fixed-grid solvers) up to float rounding:

- **Grid.** torchdiffeq's: ``0, h, 2h, ...`` up to the batch's last final knot, with
  the last point moved onto it (:func:`fixed_grid`). Each case ``i`` is read at its
  own final knot ``T_i``, linearly interpolated within a step as torchdiffeq does.
- **Stages.** The same Butcher tableaux and stage times (:data:`TABLEAUS`); note that
  torchdiffeq's ``"rk4"`` is the 3/8 rule, stages at ``s_n + {0, 1/3, 2/3, 1} h``.
  Euler reads the input path at its step's end ``s_{n+1}`` (:data:`INPUT_AHEAD_METHODS`,
  as :func:`skfwp.nn.solver.integrate` does), so that the last observation is read.
  The caller evaluates the coefficients at every distinct stage time at once
  (:class:`StagePlan`): one batched slow-net call instead of one per stage.
- **One step is affine.** Stage ``i`` moves along ``e_i = beta_i (p_i − Y_i q_i)`` from
  the stage state ``Y_i = S + h Σ_j a_ij e_j q_jᵀ``, so ``e_i = beta_i (α_i − S μ_i)``
  with ::

      α_i = p_i − Σ_{j<i} c_ij α_j,   μ_i = q_i − Σ_{j<i} c_ij μ_j,
      c_ij = h a_ij beta_j (q_j · q_i)

  and ``S_{n+1} = S_n + h Σ_i b_i e_i q_iᵀ``. Transposed, ``P = Sᵀ``::

      P_{n+1} = P_n + Q_n R_n (B_n − V_n P_n)

  with ``Q_n`` (d x r) the columns ``h b_i q_i``, ``R_n`` the diagonal of rates
  ``beta_i``, ``B_n`` and ``V_n`` (r x d) the rows ``α_iᵀ`` and ``μ_iᵀ``, for the ``r``
  stages with ``b_i != 0`` (r = 4 for rk4). ``Q, B, V`` come from elementwise
  operations vectorised over many steps (:func:`_step_factors`); the sequential loop
  is two small batched products per step. (``P`` rather than ``S``: MKL's batched GEMM
  is 2–7x faster with the thin ``r x d`` factor on the left. The rates stay out of
  ``B, V``: their gradient is then a product the sweep makes anyway, below.)
- **Backward.** Written out, with no autograd graph (:class:`_AffineRecurrence`).
  First the adjoint of the discrete recurrence, swept backwards with ``G_n = dL/dP_n``
  (:func:`_sweep_back`)::

      Ẽ_n = B_n − V_n P_n,   dE_n = Q_nᵀ G_{n+1},   G_n = G_{n+1} − V_nᵀ R_n dE_n (+ readout)
      dL/dB_n = R_n dE_n,   dL/dV_n = −R_n dE_n P_nᵀ,   dL/dQ_nᵀ = R_n Ẽ_n G_{n+1}ᵀ,
      dL/dbeta_i = (dE_n Ẽ_nᵀ)_ii

  then, vectorised over a chunk of steps, the vector-Jacobian product of the factors
  (:func:`_step_factors_backward`), which gives the gradients of ``p, q, beta``: the
  stages in reverse, ``dL/dα_j −= c_ij dL/dα_i`` (``μ`` alike), and the couplings'
  gradients ``−(dL/dα_i · α_j + dL/dμ_i · μ_j)`` from the ``r x r`` matrices
  ``dE_n Ẽ_nᵀ`` by a recursion on scalars, with no dot product over ``d``
  (``μ_j P_n = α_j − ẽ_j``).
- **Checkpoints.** The work goes in chunks of ``C`` steps (``C = max(⌈√n_steps⌉, 64)``,
  fewer for large states). When every step's state, ``Ẽ_n``, ``Q_n``, ``V_n``, rates
  and couplings fit in :data:`STATE_MEMORY`, the forward keeps them and the backward
  recomputes nothing; otherwise the forward keeps only each chunk's first state and
  the backward recomputes the chunk's factors and states, so memory grows as
  ``n_steps / C + C`` states, not ``n_steps``.
- **Hebbian form.** Without decay, ``S(T_i) = S(0) + Σ_n (S_{n+1} − S_n)`` is one
  weighted sum over every stage: no loop at all.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.autograd.function import once_differentiable

__all__ = [
    "CHUNK_MEMORY",
    "FAST_METHODS",
    "FIXED_GRID_MEMORY",
    "INPUT_AHEAD_METHODS",
    "SOLVER_BACKENDS",
    "STATE_MEMORY",
    "TABLEAUS",
    "StagePlan",
    "fixed_grid",
    "integrate_fixed_grid",
    "integrate_rank_one",
    "use_fast_path",
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
SOLVER_BACKENDS = ("auto", "fast", "generic")

#: Methods whose every stage sits at the start of its step (euler): they read the input
#: path one step ahead instead, ``X(s_{n+1})`` for the step from ``s_n`` (design
#: choice, issue 15). Read at ``s_n``, the last observation, which enters the path only
#: on the last piece ``[T_i − 1, T_i]``, would never reach the state at step 1. With
#: ``τ = 1`` this is the gated nODE's released update ``h_t = (1 − G) h_{t−1} + G F(h_{t−1},
#: x_t)``, and for a CDE at step 1 the Euler scheme in increments,
#: ``z_{n+1} = z_n + f(z_n) (x_{n+1} − x_n)``.
INPUT_AHEAD_METHODS = ("euler",)

#: Bytes of the per-chunk buffers (a state and its gradient per step) that bound the
#: chunk size for large states.
CHUNK_MEMORY = 128 * 2**20
#: Bytes of states and step factors the forward may keep for the backward, which then
#: recomputes nothing (:func:`_kept_bytes`).
STATE_MEMORY = 64 * 2**20


def fixed_grid(t_end, step_size, dtype, device=None):
    """torchdiffeq's fixed-step grid on ``[0, t_end]``: ``0, h, 2h, ...``, last point ``t_end``.

    The same tensor operations as torchdiffeq's ``_grid_constructor_from_step_size``,
    in the same dtype, so that the grids agree bit for bit.

    Parameters
    ----------
    t_end : float
    step_size : float
    dtype : torch.dtype
    device : torch.device, optional

    Examples
    --------
    >>> import torch
    >>> from skfwp.nn.fast_solver import fixed_grid
    >>> fixed_grid(1.0, 0.4, torch.float64)
    tensor([0.0000, 0.4000, 0.8000, 1.0000], dtype=torch.float64)
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
    offsets : tuple of int
        Stage ``i`` of step ``n`` is at ``times[offsets[i] + n]``: the stages of a run
        of steps are slices.
    dt : Tensor of shape (n_steps,)
        Step sizes (the last step may be shorter).
    readout : Tensor of shape (batch, n_steps + 1)
        ``S(T_i) = Σ_n readout[i, n] S_n``: 1 at a grid point, or torchdiffeq's linear
        interpolation weights between two.
    readout_at : dict
        The same, sparse: ``n -> (cases, weights)`` for each state ``n`` read out.
    tableau : tuple
        ``(c, a, b)`` from :data:`TABLEAUS`.

    Examples
    --------
    Two rk4 steps of 1 (stages at ``s_n + {0, 1/3, 2/3, 1}``); the case ending at knot
    1 is read at state 1:

    >>> import torch
    >>> from skfwp.nn.fast_solver import StagePlan
    >>> plan = StagePlan(torch.tensor([2, 1]), "rk4", None, torch.float64)
    >>> plan.n_steps, [round(t, 3) for t in plan.times.tolist()]
    (2, [0.0, 1.0, 2.0, 0.333, 1.333, 0.667, 1.667])
    >>> plan.readout.tolist()
    [[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
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
        offsets, k = [], 0
        for ci in c:
            if method in INPUT_AHEAD_METHODS:
                offsets.append(1)  # the input at the step's end
            elif ci in (0.0, 1.0):
                offsets.append(int(ci))  # a grid point: the step's start or end
            else:
                offsets.append(len(grid) + k * n_steps)
                k += 1
        self.offsets = tuple(offsets)
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
        return len(self.dt)

    def stages(self, x, n0, n1):
        """Stage values of steps ``n0:n1``: ``[x[offset + n0 : offset + n1]]`` per stage (views)."""
        return [x[offset + n0 : offset + n1] for offset in self.offsets]


def _used_stages(b):
    """The stages with ``b_i != 0``: the rows of a step's factors, in order."""
    return [i for i, b_i in enumerate(b) if b_i != 0.0]


def _step_factors(p, q, beta, dt, tableau):
    """``Q, R, B, V`` of the steps ``P_{n+1} = P_n + Q_n R_n (B_n − V_n P_n)`` (module docstring).

    ``p, q`` (per stage: (n, M, d), ``M`` = batch x heads), ``beta`` (per stage: (n, M))
    and ``dt`` (n,) give ``Q, B, V``, each of shape (n, r, M, d): the vectors ``h b_i q_i``,
    ``α_i`` and ``μ_i`` of the ``r`` stages with ``b_i != 0``, and ``R`` (n, M, r, 1),
    their rates ``beta_i``. The stage axis of ``Q, B, V`` comes before the batch so that
    each stage's vectors are one block; the step's matrices are strided views of it
    (:func:`_matrices`). Computed without autograd: the backward is
    :func:`_step_factors_backward`.

    Also returns what that backward reads: ``couplings``, for each pair ``j < i`` with
    ``a_ij != 0``, ``(c_ij, q_j · q_i)`` (each (n, M)), and ``unused``, ``j -> (α_j, μ_j)``
    for the stages with ``b_j = 0`` (midpoint's first, where they are ``p_j, q_j``).
    """
    _, a, b = tableau
    used = _used_stages(b)
    n, m, d = p[0].shape
    h = dt.view(-1, 1)  # (n, 1), broadcasts like beta_i
    Q, B, V = (p[0].new_empty(n, len(used), m, d) for _ in range(3))
    R = torch.stack([beta[i] for i in used], dim=-1).unsqueeze(-1)
    alphas, mus, couplings, unused = [], [], {}, {}
    scratch = p[0].new_empty(p[0].shape)
    for i in range(len(b)):
        row = used.index(i) if i in used else None
        into = (None, None) if row is None else (B[:, row], V[:, row])
        alpha_i, mu_i = p[i], q[i]
        for j, a_ij in enumerate(a[i]):
            if a_ij == 0.0:
                continue
            dot = torch.mul(q[j], q[i], out=scratch).sum(-1)
            c_ij = (a_ij * h) * beta[j] * dot
            if alpha_i is p[i]:  # the first coupling: into the stage's own vectors
                alpha_i = torch.addcmul(p[i], c_ij.unsqueeze(-1), alphas[j], value=-1, out=into[0])
                mu_i = torch.addcmul(q[i], c_ij.unsqueeze(-1), mus[j], value=-1, out=into[1])
            else:
                alpha_i.addcmul_(c_ij.unsqueeze(-1), alphas[j], value=-1)
                mu_i.addcmul_(c_ij.unsqueeze(-1), mus[j], value=-1)
            couplings[i, j] = c_ij, dot
        if row is None:
            unused[i] = alpha_i, mu_i
        else:
            if alpha_i is p[i]:  # no coupling: the stage's own values
                alpha_i, mu_i = into[0].copy_(p[i]), into[1].copy_(q[i])
            torch.mul((b[i] * h).unsqueeze(-1), q[i], out=Q[:, row])
        alphas.append(alpha_i)
        mus.append(mu_i)
    return (Q, R, B, V), (couplings, unused)


def _step_factors_backward(grads, K, p, q, beta, dt, tableau, saved, out):
    """Add the vector-Jacobian product of :func:`_step_factors` to ``out``.

    ``grads`` (from :func:`_sweep_back`): ``Ẽ_n G_{n+1}ᵀ``, ``dL/dB_n`` and ``−dL/dV_n``,
    each (n, M, r, d), the last two overwritten; ``K = dL/dE_n Ẽ_nᵀ`` (n, M, r, r), with
    ``Ẽ_n = B_n − V_n P_n``, ``E_n = R_n Ẽ_n``. ``saved``: :func:`_step_factors`' second
    output; ``out``: per stage, views of the gradients of ``p, q`` (n, M, d) and ``beta``
    (n, M), added to. The rates' gradient through ``R_n`` is ``K_ii``, and ``dL/dQ_n``'s
    row ``i`` is ``beta_i (Ẽ_n G_{n+1}ᵀ)_i``.

    Per step, with ``β̄`` for ``dL/dβ``: the stages are swept backwards, and
    ``ᾱ_i = dL/dα_i`` (``μ̄_i`` alike) is complete once every later stage is done::

        ᾱ_j −= c_ij ᾱ_i,   μ̄_j −= c_ij μ̄_i,   c̄_ij = −T_ij,   T_ij = ᾱ_i · α_j + μ̄_i · μ_j
        p̄_i += ᾱ_i,   q̄_i += μ̄_i + h b_i Q̄_i + D̄_ij q_j,   q̄_j += D̄_ij q_i
        β̄_j += c̄_ij h a_ij (q_j · q_i),   D̄_ij = c̄_ij h a_ij beta_j

    summed over the pairs ``j < i``. No dot product over ``d`` is needed for ``T_ij``
    when stage ``j`` is a row of the factors: as ``ᾱ_i = B̄_i − Σ_{k>i} c_ki ᾱ_k``,
    ``T_ij = B̄_i · α_j + V̄_i · μ_j − Σ_{k>i} c_ki T_kj``, and with ``B̄ = R_n dL/dE_n``,
    ``V̄ = −B̄ P_nᵀ`` and ``μ_j P_n = α_j − ẽ_j`` (``ẽ_j`` the row of ``Ẽ_n``) the first
    two terms are ``B̄_i · ẽ_j = beta_i K_ij``.
    """
    _, a, b = tableau
    used = _used_stages(b)
    couplings, unused = saved
    grad_Q, grad_B, minus_grad_V = grads
    grad_p, grad_q, grad_beta = out
    h = dt.view(-1, 1)
    row = {i: k for k, i in enumerate(used)}
    g_alpha = [grad_B[:, :, row[i]] if i in row else None for i in range(len(b))]
    g_mu = [minus_grad_V[:, :, row[i]] if i in row else None for i in range(len(b))]  # −μ̄_i
    scratch = p[0].new_empty(p[0].shape)
    T = {}
    for i in reversed(range(len(b))):
        if i in row:
            k = row[i]
            grad_q[i].addcmul_(((b[i] * h) * beta[i]).unsqueeze(-1), grad_Q[:, :, k])
            grad_beta[i] += K[:, :, k, k]
        ga, gm = g_alpha[i], g_mu[i]
        if ga is None:  # the stage reaches no factor
            continue
        for j in range(i):
            if j in unused:
                alpha_j, mu_j = unused[j]
                dots = torch.mul(ga, alpha_j, out=scratch).addcmul_(gm, mu_j, value=-1)
                T[i, j] = dots.sum(-1)
                continue
            t = beta[i] * K[:, :, row[i], row[j]] if i in row else torch.zeros_like(h)
            for k in range(i + 1, len(b)):
                if (k, i) in couplings and (k, j) in T:
                    t = t - couplings[k, i][0] * T[k, j]
            T[i, j] = t
        grad_p[i] += ga
        grad_q[i] -= gm
        for j, a_ij in enumerate(a[i]):
            if a_ij == 0.0:
                continue
            c_ij, dot_ij = couplings[i, j]
            minus_gc = T[i, j] * (a_ij * h)  # −c̄_ij h a_ij
            grad_beta[j].addcmul_(minus_gc, dot_ij, value=-1)
            g_dot = (minus_gc * beta[j]).neg_().unsqueeze(-1)  # D̄_ij
            grad_q[i].addcmul_(g_dot, q[j])
            grad_q[j].addcmul_(g_dot, q[i])
            for g, x in ((g_alpha, ga), (g_mu, gm)):
                if g[j] is None:
                    g[j] = torch.mul(c_ij.unsqueeze(-1), x).neg_()
                else:
                    g[j].addcmul_(c_ij.unsqueeze(-1), x, value=-1)


def _matrices(factor):
    """(n, r, M, d) -> (n, M, r, d): each step's ``r x d`` matrices (a view)."""
    return factor.transpose(1, 2)


def _stage_values(p, q, beta, plan, n0, n1):
    """Stage values of steps ``n0:n1``, per stage: ``p, q`` (n, M, d) and ``beta`` (n, M) (views).

    ``M`` flattens the batch and head axes. For the gradients of ``p, q, beta`` too: the
    views of contiguous tensors, added to in place.
    """
    vectors = [[x.view(n1 - n0, -1, x.shape[-1]) for x in plan.stages(y, n0, n1)] for y in (p, q)]
    return (*vectors, [x.view(n1 - n0, -1) for x in plan.stages(beta, n0, n1)])


def _chunk_run(P, stage, plan, n0, n1, out=None):
    """Steps ``n0:n1`` from ``P``, their factors built from their ``stage`` values
    (:func:`_stage_values`, :func:`_step_factors`) and run by :func:`_run`.

    Returns the state after the last step and the chunk's ``(states, E, factors,
    factor_saved)``: every ``P_n`` and ``Ẽ_n``, the factors ``Q_nᵀ, R_n, B_n, V_n`` as
    step matrices (:func:`_matrices`; ``R`` (n, M, r, 1) as it is) and what
    :func:`_step_factors_backward` reads. The forward and the backward's recomputation
    of a chunk both run it.
    """
    (Q, R, B, V), factor_saved = _step_factors(*stage, plan.dt[n0:n1], plan.tableau)
    factors = (_matrices(Q), R, _matrices(B), _matrices(V))
    states, E = P.new_empty(n1 - n0, *P.shape), factors[2].new_empty(factors[2].shape)
    P = _run(P, factors, states, E, plan, n0, out)
    return P, (states, E, factors, factor_saved)


def _kept_bytes(plan, P):
    """Bytes of every step's ``P_n``, ``Ẽ_n``, ``Q_n``, ``V_n``, ``R_n`` and couplings."""
    _, a, b = plan.tableau
    m, d = P.shape[0], P.shape[-1]
    r, pairs = len(_used_stages(b)), sum(a_ij != 0.0 for a_i in a for a_ij in a_i)
    unused = len(b) - r
    per_step = m * (d * d + 3 * r * d + r + 2 * pairs + 2 * unused * d)
    return plan.n_steps * per_step * P.element_size()


def _run(P, factors, states, E, plan, n0, out=None):
    """Steps ``n0, n0 + 1, ...`` from ``P``: ``P_{n+1} = P_n + Q_n R_n Ẽ_n``.

    ``Ẽ_n = B_n − V_n P_n``; ``factors``: ``Qt, R, B, V`` from :func:`_chunk_run`
    (``Qt`` holds ``Q_nᵀ``). Writes ``P_n`` into ``states`` and ``Ẽ_n`` into ``E``
    (buffers of shape (n, batch * h, ., d)), adds the readouts to ``out`` when given,
    and returns the state after the last step.
    """
    Qt, R, B, V = factors
    n = len(E)
    states[0] = P
    RE = torch.empty_like(E[0])
    Q = Qt.transpose(-1, -2).unbind(0)
    R, B, V, P_, E = (x.unbind(0) for x in (R, B, V, states, E))  # views, made once
    for i in range(n):
        torch.baddbmm(B[i], V[i], P_[i], alpha=-1, out=E[i])
        torch.mul(R[i], E[i], out=RE)
        P = torch.baddbmm(P_[i], Q[i], RE, out=P_[i + 1] if i + 1 < n else None)
        if out is not None:
            _add_readout(out, P.view(out.shape), plan, n0 + i + 1)
    return P


def _sweep_back(G, factors, states, E, plan, n0, grad_out):
    """The adjoint of :func:`_run` from ``G = dL/dP_{n1}``.

    ``dL/dE_n = Q_nᵀ G_{n+1}``, ``dL/dB_n = R_n dL/dE_n``, ``G_n = G_{n+1} − V_nᵀ dL/dB_n``,
    plus the readout of ``grad_out`` at state ``n``. Returns ``dL/dP_{n0}``; the
    products that :func:`_step_factors_backward` reads, each (n, M, r, d): ``Ẽ_n
    G_{n+1}ᵀ``, ``dL/dB_n`` and ``−dL/dV_n = dL/dB_n P_nᵀ``; and ``K = dL/dE_n Ẽ_nᵀ``
    (n, M, r, r). All are products of one step's matrices, done during the sweep while
    they are in cache.
    """
    grads = [torch.empty_like(E) for _ in range(3)]
    K = E.new_empty(*E.shape[:-1], E.shape[-2])
    grad_E, spare = torch.empty_like(E[0]), torch.empty_like(G)
    Qt, R, _, V = factors
    Qt, R, Vt, states, E, K_, (E_Gt, grad_B, minus_grad_V) = (
        Qt.unbind(0),
        R.unbind(0),
        V.transpose(-1, -2).unbind(0),
        states.transpose(-1, -2).unbind(0),
        E.unbind(0),
        K.unbind(0),
        [g.unbind(0) for g in grads],
    )
    for i in range(len(E) - 1, -1, -1):
        torch.bmm(Qt[i], G, out=grad_E)
        torch.bmm(grad_E, E[i].transpose(-1, -2), out=K_[i])
        torch.mul(R[i], grad_E, out=grad_B[i])
        torch.bmm(E[i], G.transpose(-1, -2), out=E_Gt[i])
        torch.bmm(grad_B[i], states[i], out=minus_grad_V[i])
        # out of place: an in-place baddbmm_ is one GEMM call per matrix
        G, spare = torch.baddbmm(G, Vt[i], grad_B[i], alpha=-1, out=spare), G
        _add_readout(G.view(grad_out.shape), grad_out, plan, n0 + i)
    return G, grads, K


class _AffineRecurrence(torch.autograd.Function):
    """``P_{n+1} = P_n + Q_n R_n (B_n − V_n P_n)``, read out as ``Σ_n readout[:, n] P_n``.

    Inputs: ``P0`` (batch, h, d, d) and the stage values ``p, q`` (n_times, batch, h, d),
    ``beta`` (n_times, batch, h), from which :func:`_step_factors` builds ``Q, R, B, V``
    chunk by chunk (``plan``, ``chunk_size``: not differentiable). The backward is
    written out: :func:`_sweep_back` through the steps, then
    :func:`_step_factors_backward` through the factors, chunk by chunk. See the module
    docstring.
    """

    @staticmethod
    def forward(ctx, P0, p, q, beta, plan, chunk_size):
        p, q, beta = (x.contiguous() for x in (p, q, beta))  # for the views of _stage_values
        d = P0.shape[-1]
        P = P0.reshape(-1, d, d)  # (batch * h, d, d)
        out = torch.zeros_like(P0)
        _add_readout(out, P0, plan, 0)
        chunks = [
            (n0, min(n0 + chunk_size, plan.n_steps)) for n0 in range(0, plan.n_steps, chunk_size)
        ]
        keep = _kept_bytes(plan, P) <= STATE_MEMORY
        saved = []  # per chunk: what its backward needs, or only its first state
        for n0, n1 in chunks:
            stage = _stage_values(p, q, beta, plan, n0, n1)
            first = P
            P, (states, E, factors, factor_saved) = _chunk_run(P, stage, plan, n0, n1, out)
            # keep what the backward reads (B_n only through Ẽ_n), or the chunk's first state
            kept = (states, E, (*factors[:2], None, factors[3]), factor_saved)
            saved.append(kept if keep else first)
        ctx.save_for_backward(P0, p, q, beta)
        ctx.plan, ctx.chunks, ctx.saved = plan, chunks, saved
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        P0, p, q, beta = ctx.saved_tensors
        plan, shape, d = ctx.plan, P0.shape, P0.shape[-1]
        grad_out = grad_out.contiguous()
        grads = [torch.zeros_like(x, memory_format=torch.contiguous_format) for x in (p, q, beta)]
        G = torch.zeros_like(P0, memory_format=torch.contiguous_format)  # dL/dP_n, n = n_steps
        _add_readout(G, grad_out, plan, plan.n_steps)
        G = G.view(-1, d, d)
        for (n0, n1), saved in zip(reversed(ctx.chunks), reversed(ctx.saved), strict=True):
            stage = _stage_values(p, q, beta, plan, n0, n1)
            if not isinstance(saved, tuple):  # recompute the chunk's factors and states
                _, saved = _chunk_run(saved, stage, plan, n0, n1)
            states, E, factors, factor_saved = saved
            G, step_grads, K = _sweep_back(G, factors, states, E, plan, n0, grad_out)
            _step_factors_backward(
                step_grads,
                K,
                *stage,
                plan.dt[n0:n1],
                plan.tableau,
                factor_saved,
                _stage_values(*grads, plan, n0, n1),
            )
        return G.view(shape), *grads, None, None


def _hebbian_sum(S0, p, q, beta, plan):
    """Without decay: ``S(T_i) = S0 + Σ_n w_in (S_{n+1} − S_n)``, ``w_in = Σ_{m>n} readout[i, m]``.

    Every step's increment is a known sum over its stages, so this is one weighted
    sum over the stage times, with no loop.
    """
    _, _, b = plan.tableau
    after = plan.readout[:, 1:].flip(1).cumsum(1).flip(1)  # (batch, n_steps): w_in
    weights = p.new_zeros(p.shape[:2])  # (n_times, batch)
    for b_i, rows in zip(b, plan.stages(weights, 0, plan.n_steps), strict=True):
        rows += (after * (b_i * plan.dt)).T
    rate = weights.unsqueeze(-1) * beta  # (n_times, batch, h)
    return S0 + torch.einsum("tbh,tbhd,tbhe->bhde", rate, p, q)


def integrate_rank_one(S0, p, q, beta, plan, *, decay=True, chunk_size=None):
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
    chunk_size : int or None
        Steps per checkpointed chunk; None: ``max(⌈√n_steps⌉, 64)``, fewer when a
        chunk's buffers would exceed :data:`CHUNK_MEMORY`.

    Returns
    -------
    Tensor of shape (batch, h, d, d)
        ``S(T_i)`` for each case ``i``, as torchdiffeq's fixed-grid solver gives it.
    """
    if not decay:
        return _hebbian_sum(S0, p, q, beta, plan)
    if chunk_size is None:
        state_bytes = S0.numel() * S0.element_size()
        chunk_size = min(
            max(math.ceil(math.sqrt(plan.n_steps)), 64), CHUNK_MEMORY // (2 * state_bytes)
        )
    P0 = S0.transpose(-1, -2)  # the recurrence runs on P = Sᵀ
    P = _AffineRecurrence.apply(P0, p, q, beta, plan, max(int(chunk_size), 1))
    return P.transpose(-1, -2)


# -- fixed-grid Runge–Kutta for any field whose input terms depend on the path only -----


def use_fast_path(solver_backend, method, adjoint):
    """Whether ``solver_backend`` runs a model's fast path for these solver settings.

    ``"auto"``: where it applies (``method`` in :data:`FAST_METHODS` and
    ``adjoint=False``; every model has a fast path for all its own settings);
    ``"generic"``: never; ``"fast"``: always, and a ValueError names the setting when
    it cannot.

    Parameters
    ----------
    solver_backend : {"auto", "fast", "generic"}
    method : str
    adjoint : bool

    Examples
    --------
    >>> from skfwp.nn.fast_solver import use_fast_path
    >>> use_fast_path("auto", "rk4", False), use_fast_path("auto", "dopri5", False)
    (True, False)
    >>> use_fast_path("fast", "rk4", True)
    Traceback (most recent call last):
    ...
    ValueError: solver_backend='fast' cannot be used: adjoint=True asks for ...
    """
    if solver_backend not in SOLVER_BACKENDS:
        raise ValueError(f"solver_backend={solver_backend!r} is not one of {SOLVER_BACKENDS}.")
    if solver_backend == "generic":
        return False
    reason = None
    if method not in FAST_METHODS:
        reason = f"method={method!r} is not one of the fast solver's methods {FAST_METHODS}"
    elif adjoint:
        reason = (
            "adjoint=True asks for torchdiffeq's continuous adjoint; the fast solver "
            "back-propagates through its discrete steps in bounded memory instead"
        )
    if reason is not None and solver_backend == "fast":
        raise ValueError(
            f"solver_backend='fast' cannot be used: {reason}. "
            "Use solver_backend='generic' or 'auto'."
        )
    return reason is None


#: Bytes that one chunk of :func:`integrate_fixed_grid` may keep for the backward (an
#: estimate); a longer run goes in checkpointed chunks.
FIXED_GRID_MEMORY = 256 * 2**20


def _fixed_grid_chunk(n_steps, step_bytes):
    """Steps per chunk of a fixed-grid run whose steps each keep ``step_bytes`` for the
    backward: ``max(⌈√n_steps⌉, FIXED_GRID_MEMORY // step_bytes)``, so a chunk stays within
    :data:`FIXED_GRID_MEMORY` unless √n_steps steps need more (then memory grows as √n)."""
    return max(math.ceil(math.sqrt(n_steps)), FIXED_GRID_MEMORY // max(step_bytes, 1))


class _HandSpec:
    """The non-tensor settings of one call of a hand-written loop (:mod:`skfwp.nn.gated_fast`,
    :mod:`skfwp.nn.ncde_fast`): the plan, its steps in chunks (:func:`_fixed_grid_chunk`
    for steps that keep ``step_bytes`` each), whether the one chunk's buffers serve the
    backward (``keep``) and the step sizes."""

    def __init__(self, plan, step_bytes, need_grad):
        self.plan, self.need_grad = plan, need_grad
        n = plan.n_steps
        chunk_size = _fixed_grid_chunk(n, step_bytes)
        self.chunks = [(n0, min(n0 + chunk_size, n)) for n0 in range(0, n, chunk_size)]
        self.keep = len(self.chunks) == 1  # one chunk: the forward's buffers serve the backward
        self.dt = plan.dt.tolist()


def _add_readout(out, state, plan, n, dim=0):
    """``out[i] += readout[i, n] * state[i]`` for the cases ``i`` read out at state ``n``,
    the cases along ``dim`` of ``out`` and ``state`` (0, or 1 behind a group axis)."""
    if n in plan.readout_at:
        cases, weights = plan.readout_at[n]
        weights = weights.view(-1, *[1] * (state.dim() - dim - 1))
        out.index_add_(dim, cases, weights * state.index_select(dim, cases))


def _rk_vectors(tableau, c, like):
    """One step's combination vectors for the explicit tableau ``(c_i, a, b)``, step ``c``.

    The loops of the hand-written backwards (:mod:`skfwp.nn.gated_fast`,
    :mod:`skfwp.nn.ncde_fast`) form each combination as one matrix–vector product over
    stacked rows. Returns ``(stage, update, adjoint)``, tensors of ``like``'s dtype and
    device: over the rows ``[z_n, k_0, ..., k_{i−1}]``, ``stage[i]`` gives
    ``Y_i = z_n + c Σ_{j<i} a_ij k_j`` (``stage[0]`` is None: ``Y_0 = z_n``); over
    ``[z_n, k_0, ..., k_{S−1}]``, ``update`` gives ``z_{n+1} = z_n + c Σ_i b_i k_i``;
    over ``[λ, dY_{S−1}, ..., dY_{i+1}]`` (``λ = dL/dz_{n+1}``, ``dY_m = dL/dY_m``),
    ``adjoint[i]`` gives ``dL/dk_i = c (b_i λ + Σ_{m>i} a_mi dY_m)``.
    """
    _, a, b = tableau
    S = len(b)

    def vec(values):
        return like.new_tensor(values)

    stage = [None] + [vec([1.0] + [c * a_ij for a_ij in a[i]]) for i in range(1, S)]
    update = vec([1.0] + [c * b_i for b_i in b])
    adjoint = [vec([c * b[i]] + [c * a[m][i] for m in range(S - 1, i, -1)]) for i in range(S)]
    return stage, update, adjoint


def _combine(z, terms):
    """``z + Σ_j w_j k_j`` part by part, for ``terms`` a list of ``(w_j, k_j)`` (tuples)."""
    out = []
    for p, zp in enumerate(z):
        for w, k in terms:
            zp = torch.add(zp, k[p], alpha=w)
        out.append(zp)
    return tuple(out)


def _rk_steps(field, z, terms, dt, tableau, plan, n0, out):
    """Steps ``n0, n0 + 1, ...`` of the explicit Runge–Kutta method ``tableau`` from ``z``.

    ``terms``: per input term, a tensor of shape (n_stages, n, batch, ...) (the stage
    values of the steps); ``dt``: their step sizes (floats). Stage ``i`` of a step is
    ``k_i = field(Y_i, terms_i)`` at ``Y_i = z + h Σ_j a_ij k_j``, and the step is
    ``z + h Σ_i b_i k_i``. Adds each state's readout to ``out`` (a list of parts).
    """
    _, a, b = tableau
    # one unbind per term: its backward stacks the stage gradients once, where indexing
    # would scatter each into a zero tensor of the whole chunk
    rows = [t.flatten(0, 1).unbind(0) for t in terms]  # row i * len(dt) + n
    for n, h in enumerate(dt):
        ks = []
        for i, a_i in enumerate(a):
            y = z
            if any(a_i):
                y = _combine(z, [(h * a_ij, ks[j]) for j, a_ij in enumerate(a_i) if a_ij])
            ks.append(field(y, tuple(r[i * len(dt) + n] for r in rows)))
        z = _combine(z, [(h * b_i, ks[i]) for i, b_i in enumerate(b) if b_i])
        if n0 + n + 1 in plan.readout_at:
            cases, weights = plan.readout_at[n0 + n + 1]
            for p, zp in enumerate(z):
                w = weights.view(-1, *[1] * (zp.dim() - 1))
                out[p] = out[p].index_add(0, cases, w * zp[cases])
    return z


class _Recomputed(torch.autograd.Function):
    """``run(*state)`` without a graph in the forward; the backward runs it again with one.

    ``inputs``: the leaf tensors (parameters) whose gradients ``run`` contributes to,
    directly or through tensors computed from them before the chunk; the backward
    differentiates the recomputed outputs with respect to them and to the state.
    Unlike :func:`torch.utils.checkpoint.checkpoint`, the forward records no
    autograd nodes at all: their many small long-lived allocations, between the
    chunk's freed state-sized tensors, kept the allocator from reusing the heap (an
    N-CODE step at T=18,000 peaked at 18 GB).
    """

    @staticmethod
    def forward(ctx, run, n_state, *tensors):
        ctx.run, ctx.n_state = run, n_state
        ctx.save_for_backward(*tensors[:n_state])
        ctx.inputs = tensors[n_state:]
        with torch.no_grad():
            return run(*tensors[:n_state])

    @staticmethod
    def backward(ctx, *grads):
        state = [z.detach().requires_grad_(True) for z in ctx.saved_tensors]
        inputs = [x for x in ctx.inputs if x.requires_grad]
        with torch.enable_grad():
            outs = ctx.run(*state)
        keep = [i for i, o in enumerate(outs) if o.requires_grad]
        # retain_graph: the recomputation reaches the leaves through tensors computed
        # before the chunks (weight slices, θ(0)), whose nodes every chunk shares
        got = torch.autograd.grad(
            [outs[i] for i in keep],
            state + inputs,
            [grads[i] for i in keep],
            allow_unused=True,
            retain_graph=True,
        )
        got = iter(got)
        state_grads = [next(got) for _ in state]
        input_grads = [next(got) if x.requires_grad else None for x in ctx.inputs]
        return None, None, *state_grads, *input_grads


def integrate_fixed_grid(field, z0, drive, plan, *, prepare=None, step_bytes=None, inputs=()):
    """Solve ``dz/ds = field(z, u(s))`` on the fixed grid of ``plan``; read each case at ``T_i``.

    The model's field depends on the input path only through input terms ``u(s)``
    (its input projections, ``dX/ds``, gate input terms), which are computed for many
    stage times in one batched call: the path quantities ``drive`` at every
    ``plan.times`` come in (time-major), ``prepare`` maps the stage values of a run of
    steps to the input terms at once, and the loop over steps holds only the state's
    own operations, with torchdiffeq's grid, tableaux and per-case readout
    (:class:`StagePlan`; euler reads the input at the step's end). The state is a
    tuple of tensors, each of shape (batch, ...).

    Long runs go in chunks of steps; with gradients on, each chunk's forward records
    no graph and its backward recomputes it (:class:`_Recomputed`), so memory grows
    with the chunk, not the series.
    A chunk has ``max(⌈√n_steps⌉, FIXED_GRID_MEMORY // (batch · step_bytes))`` steps.

    Parameters
    ----------
    field : callable
        ``field(z, u) -> dz/ds``: ``z`` and the result tuples of tensors of the
        state's shapes, ``u`` a tuple of input terms at one stage time, each
        (batch, ...).
    z0 : tuple of Tensor
        The state at ``s = 0``.
    drive : tuple of Tensor
        Path quantities at ``plan.times``, each of shape (n_times, batch, ...).
    plan : StagePlan
    prepare : callable or None
        ``prepare(*stage_drive) -> tuple of input terms``, each argument and result of
        shape (n_stages, n, batch, ...); None: the drive itself.
    step_bytes : int or None
        Estimated bytes one step keeps for the backward per case (None: four copies
        of the state per stage).
    inputs : sequence of Tensor
        The leaf tensors (the model's parameters) that ``field`` and ``prepare`` read
        from their closures, directly or through tensors computed from them before
        this call; needed when the run is chunked.

    Returns
    -------
    tuple of Tensor
        The state at each case's own final knot ``T_i``, each part (batch, ...).
    """
    z0 = tuple(z0)
    if step_bytes is None:
        per_case = sum(z.numel() // max(len(z), 1) for z in z0)
        step_bytes = 4 * len(plan.tableau[0]) * per_case * z0[0].element_size()
    batch = len(z0[0])
    n_steps = plan.n_steps
    size = _fixed_grid_chunk(n_steps, batch * step_bytes)
    dt = plan.dt.tolist()
    out = [torch.zeros_like(z) for z in z0]
    if 0 in plan.readout_at:
        cases, weights = plan.readout_at[0]
        for p, z in enumerate(z0):
            out[p] = out[p].index_add(0, cases, weights.view(-1, *[1] * (z.dim() - 1)) * z[cases])

    def chunk(n0, n1, *z):
        z = z[:parts]
        stage_drive = [torch.stack(plan.stages(x, n0, n1)) for x in drive]
        terms = tuple(stage_drive) if prepare is None else tuple(prepare(*stage_drive))
        acc = [torch.zeros_like(zp) for zp in z]
        z = _rk_steps(field, z, terms, dt[n0:n1], plan.tableau, plan, n0, acc)
        return (*z, *acc)

    z, parts = z0, len(z0)
    for n0 in range(0, n_steps, size):
        n1 = min(n0 + size, n_steps)
        if torch.is_grad_enabled() and size < n_steps:
            run = functools.partial(chunk, n0, n1)
            res = _Recomputed.apply(run, parts, *z, *drive, *inputs)
        else:
            res = chunk(n0, n1, *z)
        z = res[:parts]
        out = [o + r for o, r in zip(out, res[parts:], strict=True)]
    return tuple(out)
