"""Gated neural ODEs (Kim, Can & Krishnamurthy, ICML 2023) and the plain neural ODE.

The hidden state ``h`` in R^H is driven by the input path ``x(s) = X(s)`` (an
input-driven ODE, not a CDE)::

    dh/ds = (1/τ) G ⊙ (−h + F(h, x))          gated=True  (gnODE)
    dh/ds = (1/τ) (−h + F(h, x))              gated=False (nODE)
    G     = sigmoid(W_g h + U_g x + b_g)      gate: an adaptive time constant per unit
    F     = MLP([h, x])                       flow field, ReLU hidden layers

Options from the gnODE authors' code: ``leak=False`` drops the ``−h`` term
(``dh/ds = G ⊙ F / τ``); ``gain=True`` multiplies ``F`` by a learned scalar ``g``
(initially 1); ``flow_activation="tanh"`` puts a tanh on ``F``'s output, so that
``flow_layers=()`` gives the minimal GRU's candidate ``F = tanh(W [h, x] + b)``;
``init="critical"`` rescales ``F``'s last linear layer so that the Jacobian of
``−h + F`` at ``h = 0, x = 0`` has its rightmost eigenvalue on the imaginary axis
(real part 0, the edge of stability; :meth:`GatedNODE.critical_scale`).

The released discrete update ``h_t = (1 − z_t) ⊙ h_{t−1} + z_t ⊙ F(h_{t−1}, x_t)``
is this model with ``method="euler"``, ``step_size=1``, ``τ = 1`` on a linear path
without log-signature windows: the Euler step reads the input at its step's end
(:mod:`skfwp.nn.solver`), so step ``t`` sees ``x_t``, and ``z_t = G(h_{t−1}, x_t)``.

``τ`` is in units of the observation index ``s`` (``τ = 1``: one observation). The
gate lies in ``(0, 1)``, so the zeros of ``dh/ds`` (the fixed points for a fixed
input) are those of ``−h + F`` whether gated or not; the gate only changes how fast,
and along which directions, the state moves towards them.

Initial state and readout::

    h(0)   = W_0 x(0) + b_0
    outputs = W_c h(T_i) + b_c                at each case's own final knot T_i

Solvers (``solver_backend``): the fast path (:func:`skfwp.nn.gated_fast.integrate_gated`;
methods euler, midpoint, rk4 without adjoint) splits the first layers of ``F`` and of
the gate into their state and input parts, ``W [h, x] = W_h h + W_x x``, evaluates
``x(s)`` and the input parts ``W_x x(s) + b`` of both for every stage time in one
batched call, and steps ``h`` with only ``W_h h`` and the rest of the field in the
loop, whose backward is written by hand. The generic path
(:func:`skfwp.nn.solver.integrate`) evaluates the whole field at each stage. Both give
the same logits and gradients up to float rounding.

With a state as small as ``H = 2`` the learned dynamics can be drawn:
:meth:`GatedNODE.fixed_points` finds the zeros of the field and
:meth:`GatedNODE.trajectory` returns ``h(s)`` at every knot (see
:mod:`skfwp.plotting`).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F

from .fast_solver import StagePlan, integrate_fixed_grid
from .gated_fast import flow_layers, integrate_gated
from .layers import mlp
from .solver import ModelField, integrate, solve

__all__ = ["FLOW_ACTIVATIONS", "INITS", "GatedNODE", "find_fixed_points"]

FLOW_ACTIVATIONS = {None: None, "tanh": nn.Tanh}  # F's output nonlinearity
INITS = ("default", "critical")


class GatedNODE(nn.Module):
    """Gated (or plain) neural ODE: ``dh/ds = G ⊙ (−h + F(h, x)) / τ``.

    Parameters
    ----------
    n_channels : int
        Channels ``K`` of the input path (time channel included).
    n_outputs : int
        Width of the final linear layer ``output``: classes, or regression targets.
    hidden_size : int
        ``H``, the dimension of the state (1 and 2 work).
    flow_layers : tuple of int
        Widths of the ReLU hidden layers of ``F``; ``()`` makes ``F`` affine.
    tau : float
        Time constant ``τ > 0`` in observation-index units.
    gated : bool
        False drops the gate (``G = 1``): the plain neural ODE.
    leak : bool
        False drops the ``−h`` term.
    gain : bool
        True multiplies ``F`` by a learned scalar ``g`` (``self.gain``, initially 1).
    flow_activation : {None, "tanh"}
        Nonlinearity on ``F``'s output (None: ``F``'s last layer is linear).
    init : {"default", "critical"}
        "critical" rescales ``F``'s last linear layer at construction
        (:meth:`critical_scale`); "default" keeps PyTorch's initialisation.

    Notes
    -----
    ``forward(path, solver_backend="auto", **solver_options)`` returns outputs of shape
    ``(batch, n_outputs)`` (a classifier's logits, a regressor's standardised targets);
    the solver's state is ``h`` of shape ``(batch, H)``. ``solver_backend``: ``"fast"``
    (module docstring; a ValueError names the setting that prevents it), ``"generic"``
    or ``"auto"`` (fast where it applies).

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import InputPath
    >>> X, lengths = np.random.default_rng(0).normal(size=(3, 2, 6)), np.array([6, 6, 4])
    >>> ip = InputPath().fit(X, lengths)
    >>> path = ip.transform(X, lengths).batch([0, 1, 2])
    >>> model = GatedNODE(ip.n_path_channels_, n_outputs=2, hidden_size=2, flow_layers=(8,))
    >>> model(path, method="rk4").shape, model.trajectory(path, method="rk4").shape
    (torch.Size([3, 2]), torch.Size([3, 6, 2]))
    """

    def __init__(
        self,
        n_channels,
        n_outputs,
        hidden_size=32,
        flow_layers=(64,),
        tau=1.0,
        gated=True,
        leak=True,
        gain=False,
        flow_activation=None,
        init="default",
    ):
        super().__init__()
        if not tau > 0:
            raise ValueError(f"tau must be positive, got {tau}.")
        if flow_activation not in FLOW_ACTIVATIONS:
            raise ValueError(
                f"flow_activation={flow_activation!r} is not one of {tuple(FLOW_ACTIVATIONS)}."
            )
        if init not in INITS:
            raise ValueError(f"init={init!r} is not one of {INITS}.")
        self.tau, self.gated, self.leak = float(tau), bool(gated), bool(leak)
        self.initial = nn.Linear(n_channels, hidden_size)  # W_0, b_0
        final = FLOW_ACTIVATIONS[flow_activation]
        self.flow = mlp(hidden_size + n_channels, tuple(flow_layers), hidden_size, final=final)
        self.gate = nn.Linear(hidden_size + n_channels, hidden_size) if gated else None
        self.gain = nn.Parameter(torch.ones(())) if gain else None  # g
        self.output = nn.Linear(hidden_size, n_outputs)  # W_c, b_c
        if init == "critical":
            self.critical_scale()

    def drive(self, h, x):
        """The ungated field ``−h + g F(h, x)`` (``−h`` only if ``leak``), shape (..., H)."""
        return self._drive(self.flow(torch.cat([h, x], dim=-1)), h)

    def _drive(self, f, h):
        if self.gain is not None:
            f = self.gain * f
        return f - h if self.leak else f

    def velocity(self, h, x):
        """``dh/ds`` for states ``h`` (..., H) under inputs ``x`` (..., K)."""
        dh = self.drive(h, x)
        if self.gated:
            dh = torch.sigmoid(self.gate(torch.cat([h, x], dim=-1))) * dh
        return dh / self.tau

    @torch.no_grad()
    def critical_scale(self, n_iter=20):
        """Rescale ``F``'s last linear layer: the Jacobian of ``−h + F`` at 0 at the edge.

        With ``A = ∂F/∂h`` at ``h = 0, x = 0`` (the standardised data's mean), the
        Jacobian of ``−h + F`` is ``A − I``; the last layer's weight is multiplied by
        ``c`` until ``max Re eig(A) = 1``, so the rightmost eigenvalue of ``A − I`` has
        real part 0. Without an output nonlinearity ``A`` is linear in ``c`` and one
        step is exact; with tanh the step repeats (``n_iter`` at most). If no
        eigenvalue of ``A`` has a positive real part, no positive ``c`` reaches the
        edge, and the spectral radius of ``A`` is set to 1 instead; if ``A = 0`` (every
        ReLU unit of ``F`` off at the origin) nothing is rescaled and a warning says so.
        The gate, the gain and ``leak`` do not enter. Returns the Jacobian's rightmost
        real part.
        """
        last = [m for m in self.flow if isinstance(m, nn.Linear)][-1]
        H = last.out_features
        x = last.weight.new_zeros((1, self.flow[0].in_features - H))

        def top():
            jac = _batch_jacobian(
                lambda h: self.flow(torch.cat([h, x], dim=-1)), x.new_zeros(1, H)
            )[0]
            eig = torch.linalg.eigvals(jac)
            return eig.real.max().item(), eig.abs().max().item()

        for _ in range(n_iter):
            right, radius = top()
            target = right if right > 0 else radius
            if target == 0:
                warnings.warn(
                    "init='critical': F does not depend on h at h = 0, x = 0 (its ReLU units "
                    "are off there), so no rescaling reaches the edge of stability; the "
                    "default initialisation is kept.",
                    stacklevel=3,
                )
                break
            if abs(target - 1) < 1e-10:
                break
            last.weight.mul_(1 / target)
        return top()[0] - 1

    def forward_field(self, s, h, path):
        """``dh/ds`` at time ``s`` of ``path``; ``h`` of shape (batch, H)."""
        return self.velocity(h, path.evaluate(s))

    def initial_state(self, path):
        """``h(0) = W_0 x(0) + b_0``, shape (batch, H)."""
        return self.initial(path.evaluate(0.0))

    def trajectory(self, path, **solver_options):
        """``h`` at every knot ``s = 0, 1, ..., t_end``, shape (batch, n_knots, H).

        Case ``i``'s trajectory is meaningful up to its own final knot ``path.ends[i]``.
        """
        return integrate(
            ModelField(self), self.initial_state(path), path, all_knots=True, **solver_options
        )

    def forward(self, path, solver_backend="auto", **solver_options):
        h0 = self.initial_state(path)
        h_end = solve(
            ModelField(self), h0, path, self.integrate_fast, solver_backend, **solver_options
        )
        return self.output(h_end)

    def integrate_fast(self, h0, path, method="rk4", step_size=None):
        """``h(T_i)`` on the fixed grid, shape (batch, H).

        The input parts ``W_x x + b`` of ``F``'s first layer and of the gate come from
        one batched call per run of steps; each stage then computes ``W_h h`` (one
        matrix product for both), the rest of ``F`` and the gate. A flow built by
        :func:`skfwp.nn.layers.mlp` (every setting of this class) runs in
        :func:`skfwp.nn.gated_fast.integrate_gated`, whose backward is written by hand;
        any other ``self.flow`` (a replaced module) in
        :func:`skfwp.nn.fast_solver.integrate_fixed_grid`, by autograd.
        """
        if int(path.ends.max()) == 0:  # every case is a single observation
            return h0
        H = h0.shape[-1]
        layers = [self.flow[0]] + ([self.gate] if self.gated else [])
        width = self.flow[0].out_features
        weight = torch.cat([layer.weight for layer in layers])  # (width [+ H], H + K)
        bias = torch.cat([layer.bias for layer in layers])
        w_state, w_input = weight[:, :H], weight[:, H:]
        plan = StagePlan(path.ends, method, step_size, h0.dtype)
        x = path.evaluate(plan.times).transpose(0, 1)  # (n_times, batch, K)
        flow = flow_layers(self.flow)
        if flow is not None:
            hidden, tanh = flow
            return integrate_gated(
                h0,
                x,
                plan,
                w_state,
                w_input,
                bias,
                [(layer.weight, layer.bias) for layer in hidden],
                width=width,
                gated=self.gated,
                leak=self.leak,
                tanh=tanh,
                tau=self.tau,
                gain=self.gain,
            )
        rest = self.flow[1:]

        def prepare(x):
            return (F.linear(x, w_input, bias),)

        def field(h, terms):
            (h,), (pre,) = h, terms
            pre = torch.addmm(pre, h, w_state.T)
            dh = self._drive(rest(pre[:, :width]), h)
            if self.gated:
                dh = torch.sigmoid(pre[:, width:]) * dh
            return (dh / self.tau,)

        step_bytes = len(plan.tableau[0]) * (3 * len(weight) + 6 * H) * h0.element_size()
        inputs = tuple(self.parameters())
        (h_end,) = integrate_fixed_grid(
            field, (h0,), (x,), plan, prepare=prepare, step_bytes=step_bytes, inputs=inputs
        )
        return h_end

    def fixed_points(self, x, seeds, **options):
        """Fixed points of the field under a constant input ``x`` (K,), from ``seeds`` (n, H).

        Solves ``−h + g F(h, x) = 0`` (:meth:`drive`; the zeros of ``dh/ds``, since
        ``0 < G < 1``) by :func:`find_fixed_points`; ``options`` go there. Stability is
        read from the Jacobian of ``dh/ds`` itself, gate included.

        Returns
        -------
        points : Tensor of shape (m, H)
        stable : BoolTensor of shape (m,)
            Every eigenvalue of the Jacobian of ``dh/ds`` has a negative real part.
        speed : Tensor of shape (m,)
            ``|dh/ds|`` at each point (close to 0 for a converged point).
        """
        x = torch.as_tensor(x, dtype=seeds.dtype, device=seeds.device)

        def drive(h):
            return self.drive(h, x.expand(len(h), -1))

        def field(h):
            return self.velocity(h, x.expand(len(h), -1))

        points = find_fixed_points(drive, seeds, **options)
        jac = _batch_jacobian(field, points)
        stable = torch.linalg.eigvals(jac).real.lt(0).all(dim=-1)
        speed = field(points).detach().norm(dim=-1)
        return points, stable, speed


def _batch_jacobian(func, h):
    """Jacobians of a row-wise ``func`` (n, H) -> (n, H) at each row, shape (n, H, H)."""
    h = h.detach().requires_grad_(True)
    with torch.enable_grad():
        out = func(h)
        rows = [
            torch.autograd.grad(out[:, i].sum(), h, retain_graph=True)[0]
            for i in range(out.shape[1])
        ]
    return torch.stack(rows, dim=1).detach()  # (n, H_out, H_in)


def find_fixed_points(func, seeds, n_steps=100, tol=1e-6, damping=1e-6, merge=1e-3):
    """Zeros of a row-wise map ``func`` (n, H) -> (n, H), by damped Newton from ``seeds``.

    Each seed takes ``n_steps`` Levenberg–Marquardt steps
    ``h ← h − (JᵀJ + λ I)⁻¹ Jᵀ func(h)``, with ``λ = damping · (1 + |func(h)|²)``
    (fewer when every seed has converged); the points where ``|func(h)| < tol`` are
    kept and those closer than ``merge`` to a kept point are dropped as duplicates.

    Parameters
    ----------
    func : callable
        Maps states (n, H) to (n, H) row by row.
    seeds : Tensor of shape (n, H)
    n_steps : int
    tol : float
        Residual ``|func(h)|`` below which a point counts as a zero.
    damping : float
    merge : float
        Distance below which two zeros are the same.

    Returns
    -------
    Tensor of shape (m, H), m <= n
        The distinct zeros found, ordered by residual.

    Examples
    --------
    >>> import torch
    >>> from skfwp.nn.gated import find_fixed_points
    >>> seeds = torch.linspace(-3, 3, 7, dtype=torch.float64)[:, None]
    >>> find_fixed_points(lambda h: h**3 - h, seeds).flatten().sort().values
    tensor([-1.,  0.,  1.], dtype=torch.float64)
    """
    h = seeds.detach().clone()
    eye = torch.eye(h.shape[1], dtype=h.dtype, device=h.device)
    for _ in range(n_steps):
        jac = _batch_jacobian(func, h)  # (n, H, H)
        with torch.no_grad():
            r = func(h)
            if r.norm(dim=-1).max() < 1e-3 * tol:  # every seed has converged
                break
            jt = jac.transpose(1, 2)
            lam = damping * (1 + (r * r).sum(-1))[:, None, None]
            step = torch.linalg.solve(jt @ jac + lam * eye, (jt @ r[..., None]))[..., 0]
            h = h - step
    with torch.no_grad():
        residual = func(h).norm(dim=-1)
    ok = torch.isfinite(residual) & (residual < tol)
    h, residual = h[ok], residual[ok]
    h = h[residual.argsort()]
    kept = []
    for point in h:
        if all((point - other).norm() >= merge for other in kept):
            kept.append(point)
    return torch.stack(kept) if kept else h.new_zeros((0, h.shape[1]))
