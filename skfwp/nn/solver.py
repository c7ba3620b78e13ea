"""The one solver wrapper: integrate a vector field along a :class:`ControlPath`.

Solves ``z(s) = z(0) + ∫_0^s f(r, z(r), X) dr`` with torchdiffeq and returns, for each
case ``i``, ``z(T_i)`` at its own final knot (or, with ``all_knots=True``, the whole
trajectory at every knot, for analysis and plots). A CDE ``dz = g(z) dX`` is the special
case ``f = g(z) · dX/ds`` (what ``torchcde.cdeint`` does internally).

Fixed-step methods use ``step_size`` in knot units (``None``: 1, one step per
observation); adaptive methods use ``rtol`` / ``atol``. Euler (every stage at its
step's start) reads the input path at the step's end instead: the step from ``s_n``
sees ``X(s_{n+1})`` (:data:`skfwp.nn.fast_solver.INPUT_AHEAD_METHODS`; design choice:
otherwise each case's last observation, which the path holds only on its last piece,
never reaches the state at step 1). The solution is only
requested at the distinct final knots of the batch, so memory does not grow with the
number of knots unless back-propagation needs it.
"""

from __future__ import annotations

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from .fast_solver import INPUT_AHEAD_METHODS, fixed_grid, use_fast_path

__all__ = [
    "FIXED_STEP_METHODS",
    "METHODS",
    "ModelField",
    "check_method",
    "integrate",
    "solve",
]

FIXED_STEP_METHODS = ("euler", "midpoint", "heun3", "rk4", "explicit_adams", "implicit_adams")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun", "tsit5")
METHODS = FIXED_STEP_METHODS + ADAPTIVE_METHODS


def check_method(method):
    """Raise a ValueError listing :data:`METHODS` unless ``method`` is one of them.

    Parameters
    ----------
    method : str

    Examples
    --------
    >>> from skfwp.nn.solver import check_method
    >>> check_method("rk4")
    >>> check_method("rk9")
    Traceback (most recent call last):
    ...
    ValueError: method='rk9' is not a known solver; choose one of ('euler', ...
    """
    if method not in METHODS:
        raise ValueError(f"method={method!r} is not a known solver; choose one of {METHODS}.")


class ModelField(nn.Module):
    """A model's ``forward_field(s, z, path)`` as the field module :func:`integrate` takes.

    Its parameters are the model's, which is what the adjoint method needs to see.

    Parameters
    ----------
    model : nn.Module
        Has a method ``forward_field(s, z, path)`` returning ``dz/ds``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skfwp.nn.solver import ModelField
    >>> class Decay(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.rate = nn.Parameter(torch.tensor(2.0))
    ...     def forward_field(self, s, z, path):
    ...         return -self.rate * z
    >>> field = ModelField(Decay())
    >>> field(0.0, torch.ones(1, 3), None), len(list(field.parameters()))
    (tensor([[-2., -2., -2.]], grad_fn=<MulBackward0>), 1)
    """

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, s, z, path):
        return self.model.forward_field(s, z, path)


class _InputAhead:
    """A path read one solver step ahead: ``X(s)`` becomes ``X(min(s + h, t_end))``.

    The shift is taken on the solver's fixed grid, ``s − s_n + s_{n+1}`` for ``s`` in
    ``[s_n, s_{n+1})``, so that a stage at a step's start ``s_n`` reads the path at
    exactly the step's end ``s_{n+1}`` (a knot stays a knot, whatever the rounding of
    ``s_n + h``). Every other attribute is the path's.
    """

    def __init__(self, path, grid):
        self.path, self.grid = path, grid

    def _ahead(self, s):
        s = torch.as_tensor(s, dtype=self.grid.dtype, device=self.grid.device)
        last = len(self.grid) - 1
        n = torch.searchsorted(self.grid, s.reshape(1), right=True).clamp(1, last) - 1
        ahead = self.grid[n + 1] + (s.reshape(1) - self.grid[n])
        return torch.minimum(ahead, self.grid[last]).reshape(s.shape)

    def evaluate(self, s):
        return self.path.evaluate(self._ahead(s))

    def derivative(self, s):
        return self.path.derivative(self._ahead(s))

    def __getattr__(self, name):
        return getattr(self.path, name)


class _BoundField(nn.Module):
    """``f(s, z)`` for torchdiffeq: a field module bound to one batch's path."""

    def __init__(self, field, path, state_shape):
        super().__init__()
        self.field = field
        self.path = path
        self.state_shape = state_shape

    def forward(self, s, z):
        batch = z.shape[0]
        dz = self.field(s, z.view(batch, *self.state_shape), self.path)
        return dz.reshape(batch, -1)


def integrate(
    field,
    z0,
    path,
    *,
    method="rk4",
    step_size=None,
    rtol=1e-3,
    atol=1e-4,
    adjoint=False,
    all_knots=False,
):
    """Solve the field from ``z0`` and return the state at each case's final knot.

    Parameters
    ----------
    field : nn.Module
        Called as ``field(s, z, path)`` with ``s`` a scalar tensor and ``z`` of the
        shape of ``z0``; returns ``dz/ds`` of the same shape.
    z0 : Tensor of shape (batch, *state_shape)
    path : ControlPath
    method, step_size, rtol, atol, adjoint
        As the estimators' parameters of the same names.
    all_knots : bool, default=False
        Return the solution at every knot ``s = 0, 1, ..., t_end`` of the batch
        instead. Past its own ``T_i`` a case's path is constant, so the caller cuts
        each trajectory at ``path.ends``.

    Returns
    -------
    Tensor of shape (batch, *state_shape)
        ``z(T_i)`` for each case ``i``; with ``all_knots``, of shape
        ``(batch, n_knots, *state_shape)``, ``z(k)`` for each knot ``k``.

    Examples
    --------
    ``dz/ds = −z`` from ``z(0) = 1``, for two cases ending at knots 4 and 2: each is
    read at its own end, ``exp(−T_i)``.

    >>> import numpy as np, torch
    >>> from skfwp.path import InputPath
    >>> from skfwp.nn.solver import integrate
    >>> X = np.zeros((2, 1, 5)); X[1, :, 3:] = np.nan
    >>> lengths = np.array([5, 3])
    >>> path = InputPath().fit(X, lengths).transform(
    ...     X, lengths, dtype=torch.float64).batch([0, 1])
    >>> decay = lambda s, z, path: -z
    >>> z = integrate(decay, torch.ones(2, 1, dtype=torch.float64), path, step_size=0.1)
    >>> np.allclose(z[:, 0].numpy(), np.exp(-np.array([4.0, 2.0])), rtol=1e-5)
    True
    """
    check_method(method)
    batch, state_shape = z0.shape[0], z0.shape[1:]
    if all_knots:
        times = torch.arange(int(path.t_end) + 1, device=path.ends.device)
    else:
        times, slot = torch.unique(path.ends, sorted=True, return_inverse=True)
        if int(times[0]) != 0:
            times = torch.cat([times.new_zeros(1), times])
            slot = slot + 1
    if len(times) == 1:  # every case is a single observation
        return z0.unsqueeze(1) if all_knots else z0
    options = {}
    if method in FIXED_STEP_METHODS:
        options["step_size"] = 1.0 if step_size is None else float(step_size)
    if method in INPUT_AHEAD_METHODS:
        path = _InputAhead(
            path, fixed_grid(float(times[-1]), options["step_size"], z0.dtype, z0.device)
        )
    bound = _BoundField(field, path, state_shape)
    kwargs = {"method": method, "options": options, "rtol": rtol, "atol": atol}
    t = times.to(z0.dtype)
    if adjoint:
        params = tuple(p for p in field.parameters() if p.requires_grad)
        zs = odeint_adjoint(bound, z0.reshape(batch, -1), t, adjoint_params=params, **kwargs)
    else:
        zs = odeint(bound, z0.reshape(batch, -1), t, **kwargs)
    if all_knots:
        return zs.transpose(0, 1).reshape(batch, len(times), *state_shape)
    # zs: (len(times), batch, state) -> each case at its own final knot
    z_end = zs[slot, torch.arange(batch, device=zs.device)]
    return z_end.view(batch, *state_shape)


def solve(field, z0, path, fast, solver_backend="auto", **solver_options):
    """``z(T_i)`` by a model's fixed-grid fast path where it applies, else :func:`integrate`.

    Parameters
    ----------
    field : nn.Module
        The generic path's field, as :func:`integrate` takes it.
    z0 : Tensor of shape (batch, *state_shape)
    path : ControlPath
    fast : callable
        ``fast(z0, path, method, step_size) -> z(T_i)``, the model's fast path.
    solver_backend : {"auto", "fast", "generic"}
        As :func:`skfwp.nn.fast_solver.use_fast_path` decides (a ValueError names the
        setting that prevents ``"fast"``).
    **solver_options
        ``method``, ``step_size``, ``rtol``, ``atol``, ``adjoint``.

    Returns
    -------
    Tensor of shape (batch, *state_shape)
    """
    method = solver_options.get("method", "rk4")
    if use_fast_path(solver_backend, method, solver_options.get("adjoint", False)):
        return fast(z0, path, method, solver_options.get("step_size"))
    return integrate(field, z0, path, **solver_options)
