"""What a fitted model's state does, as data: flow fields, fixed points, trajectories.

The computing half of :mod:`skfwp.plotting` (which only draws what these functions
return, as scikit-learn's ``DecisionBoundaryDisplay`` separates ``from_estimator`` from
``plot``). Needs no matplotlib. Every function takes a fitted estimator or a fitted
:class:`~sklearn.pipeline.Pipeline` ending in one; classifiers and regressors alike.

- :func:`trajectories`: each case's state ``h(s)`` at every knot up to its own end
  (gated neural ODE, N-CODE; any ``hidden_size``);
- :func:`flow_field`: the gated neural ODE's field ``dh/ds`` at a fixed input over a
  box of a two-dimensional state, and its fixed points;
- :func:`readout_map`: what the final linear layer reads at each point of that box
  (a classifier's class, a regressor's prediction).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from .base import StateTrajectoriesMixin
from .nn.gated import GatedNODE
from .nn.ncode import NCODE

__all__ = ["FixedPoints", "FlowField", "flow_field", "readout_map", "trajectories"]


class FixedPoints(NamedTuple):
    """Approximate fixed points of a flow field, as found by :func:`flow_field`.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.inspection import FixedPoints
    >>> fixed = FixedPoints(np.zeros((1, 2)), np.array([True]), np.array([1e-9]))
    >>> fixed.points.shape, bool(fixed.stable[0])
    ((1, 2), True)
    """

    #: ndarray of shape (n_points, 2): the states ``h*`` where ``dh/ds ≈ 0``.
    points: np.ndarray
    #: ndarray of shape (n_points,), bool: every Jacobian eigenvalue has negative real part.
    stable: np.ndarray
    #: ndarray of shape (n_points,): ``|dh/ds|`` at each point (near 0).
    speed: np.ndarray


class FlowField(NamedTuple):
    """A two-dimensional flow field on a grid, as computed by :func:`flow_field`."""

    #: ndarray of shape (grid,): the grid's ``h_1`` values.
    h1: np.ndarray
    #: ndarray of shape (grid,): the grid's ``h_2`` values.
    h2: np.ndarray
    #: ndarray of shape (grid, grid, 2): ``dh/ds`` at ``(h1[j], h2[i])`` in row ``i``,
    #: column ``j`` (matplotlib's ``meshgrid`` layout).
    velocity: np.ndarray
    #: The field's fixed points inside the box.
    fixed_points: FixedPoints
    #: ``(h1_min, h1_max, h2_min, h2_max)``: the box.
    bounds: tuple

    @property
    def speed(self):
        """``|dh/ds|`` on the grid, shape (grid, grid)."""
        return np.hypot(self.velocity[..., 0], self.velocity[..., 1])


def _final_step(estimator):
    """The fitted final estimator and the transform of the steps before it (or None)."""
    if isinstance(estimator, Pipeline):
        return estimator[-1], estimator[:-1].transform
    return estimator, None


def _state_model(estimator, module_types, caller, planar=True):
    """The final step, its preprocessing and a float64 CPU copy of its state model
    (:meth:`~skfwp.base.StateTrajectoriesMixin._state_module`, which refuses ensembles)."""
    est, transform = _final_step(estimator)
    check_is_fitted(est, "module_")
    has_state = isinstance(est, StateTrajectoriesMixin)
    model = est._state_module(caller) if has_state else est.module_
    if not isinstance(model, module_types):
        names = {GatedNODE: "gated neural ODE", NCODE: "N-CODE"}
        wanted = " or ".join(names[t] for t in module_types)
        raise ValueError(f"{caller} reads the state of a {wanted}; got {type(est).__name__}.")
    if planar and est.hidden_size != 2:
        raise ValueError(
            f"{caller} needs a two-dimensional state (hidden_size=2); this estimator has "
            f"hidden_size={est.hidden_size}."
        )
    return est, transform, model


def trajectories(estimator, X):
    """Each case's state from ``s = 0`` to its own final knot ``T_i``.

    For a gated neural ODE (``h``) or an N-CODE (``z``), classifier or regressor:
    :meth:`~skfwp.GatedNODEClassifier.trajectories` of the final step, after the
    pipeline's preprocessing of ``X``.

    Parameters
    ----------
    estimator : fitted gated nODE or N-CODE estimator, or Pipeline ending in one
    X : array-like of shape (n_cases, n_channels, n_timepoints)
        Raw input, as for ``estimator.predict``.

    Returns
    -------
    list of ndarray of shape (T_i + 1, hidden_size)
        One array per case, the state at every knot ``s = 0, 1, ..., T_i``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp import GatedNODERegressor
    >>> from skfwp.inspection import trajectories
    >>> X = np.random.default_rng(0).normal(size=(8, 1, 5))
    >>> reg = GatedNODERegressor(hidden_size=3, flow_layers=(4,), max_iter=2,
    ...                          random_state=0).fit(X, X[:, 0].sum(axis=1))
    >>> [t.shape for t in trajectories(reg, X[:2])]
    [(5, 3), (5, 3)]
    """
    est, transform = _final_step(estimator)
    return est.trajectories(X if transform is None else transform(X))


def _grid_states(bounds, grid):
    """``(h1, h2, states)``: the grid's axes and its points, shape (grid * grid, 2)."""
    x0, x1, y0, y1 = (float(b) for b in bounds)
    h1, h2 = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
    H1, H2 = np.meshgrid(h1, h2)  # rows along h2
    return h1, h2, torch.as_tensor(np.stack([H1.ravel(), H2.ravel()], axis=1))


def _fixed_input(est, x_fixed):
    """``x_fixed`` (None: zeros) as a float64 tensor, its shape checked against the path."""
    n_path = est.input_path_.n_path_channels_
    x = np.zeros(n_path) if x_fixed is None else np.asarray(x_fixed, dtype=float)
    if x.shape != (n_path,):
        raise ValueError(
            f"x_fixed must have shape ({n_path},): the estimator's input path has {n_path} "
            "channels (time, [observation intensities], data channels, [log-signature "
            f"terms]); got shape {x.shape}."
        )
    return torch.as_tensor(x, dtype=torch.float64)


def flow_field(estimator, x_fixed=None, *, bounds=(-3, 3, -3, 3), grid=30, n_seeds=8, tol=1e-6):
    """The flow ``dh/ds`` of a fitted two-dimensional gated neural ODE at a fixed input.

    For a constant input ``x_fixed``, the field ``f(h) = G ⊙ (−h + F(h, x_fixed)) / τ``
    of a gated nODE estimator (classifier or regressor) with ``hidden_size=2``,
    evaluated on a ``grid x grid`` grid over ``bounds``, and its fixed points there.

    Fixed points are found numerically: damped Newton steps on ``−h + F(h, x_fixed)``
    (whose zeros are those of ``f``, the gate being positive) from an
    ``n_seeds x n_seeds`` grid of seeds over the box, in float64; the points whose
    residual is below ``tol`` are kept, duplicates merged (see
    :func:`skfwp.nn.gated.find_fixed_points`), and the stability read from the
    eigenvalues of the Jacobian of ``f``.

    Parameters
    ----------
    estimator : fitted gated nODE estimator with hidden_size=2, or Pipeline ending in one
    x_fixed : array-like of shape (n_path_channels,), default=None
        The constant input, in the coordinates of the estimator's input path
        (``input_path_``): channel 0 is time (0 at a case's first observation, 1 at
        the end of the longest training case), then, with ``observation_intensity``,
        one cumulative count per data channel, then the data channels as the
        estimator sees them (after the pipeline's preprocessing, e.g. standardised),
        then any log-signature terms. None means zeros: time 0 and every data channel
        at 0 (e.g. "no pulse" in :func:`skfwp.datasets.make_flip_flop`).
    bounds : (h1_min, h1_max, h2_min, h2_max), default=(-3, 3, -3, 3)
    grid : int, default=30
        Grid points per axis.
    n_seeds : int, default=8
        Seeds per axis for the fixed-point search.
    tol : float, default=1e-6
        Largest residual ``|−h + F|`` of a reported fixed point.

    Returns
    -------
    FlowField

    Examples
    --------
    >>> from skfwp import GatedNODEClassifier
    >>> from skfwp.datasets import make_flip_flop
    >>> from skfwp.inspection import flow_field
    >>> X, y = make_flip_flop(16, n_timepoints=20, random_state=0)
    >>> clf = GatedNODEClassifier(hidden_size=2, bidirectional=False, max_iter=2,
    ...                           random_state=0).fit(X, y)
    >>> field = flow_field(clf, grid=10)
    >>> field.velocity.shape, bool((field.fixed_points.speed < 1e-5).all())
    ((10, 10, 2), True)
    """
    est, _, model = _state_model(estimator, (GatedNODE,), "flow_field")
    x = _fixed_input(est, x_fixed)
    h1, h2, states = _grid_states(bounds, grid)
    with torch.no_grad():
        v = model.velocity(states, x.expand(len(states), -1)).numpy()
    _, _, seeds = _grid_states(bounds, n_seeds)
    points, stable, speed = model.fixed_points(x, seeds, tol=tol)
    fixed = FixedPoints(points.numpy(), stable.numpy(), speed.numpy())
    bounds = tuple(float(b) for b in bounds)
    return FlowField(h1, h2, v.reshape(grid, grid, 2), fixed, bounds)


def readout_map(estimator, *, bounds, grid=200):
    """What the final linear layer reads at each state of a two-dimensional box.

    For a gated nODE or N-CODE estimator with ``hidden_size=2``: a classifier's class
    (an index into ``classes_``) or a regressor's prediction of its first target (in
    the units of ``y``), had a case ended at that state.

    Parameters
    ----------
    estimator : fitted gated nODE or N-CODE estimator with hidden_size=2, or Pipeline
        ending in one
    bounds : (h1_min, h1_max, h2_min, h2_max)
    grid : int, default=200

    Returns
    -------
    h1, h2 : ndarray of shape (grid,)
    values : ndarray of shape (grid, grid)
        Row ``i``, column ``j`` at ``(h1[j], h2[i])``: int class indices for a
        classifier, float predictions for a regressor.

    Examples
    --------
    >>> from skfwp import GatedNODEClassifier
    >>> from skfwp.datasets import make_flip_flop
    >>> from skfwp.inspection import readout_map
    >>> X, y = make_flip_flop(16, n_timepoints=20, random_state=0)
    >>> clf = GatedNODEClassifier(hidden_size=2, bidirectional=False, max_iter=2,
    ...                           random_state=0).fit(X, y)
    >>> h1, h2, region = readout_map(clf, bounds=(-1, 1, -1, 1), grid=5)
    >>> region.shape, set(region.ravel().tolist()) <= set(range(len(clf.classes_)))
    ((5, 5), True)
    """
    est, _, model = _state_model(estimator, (GatedNODE, NCODE), "readout_map")
    h1, h2, states = _grid_states(bounds, grid)
    with torch.no_grad():
        outputs = model.output(states).numpy()
    if is_classifier(est):
        values = outputs.argmax(1)
    else:
        values = outputs[:, 0] * est.target_scale_[0] + est.target_mean_[0]
    return h1, h2, values.reshape(grid, grid)
