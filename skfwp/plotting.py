"""Plots of fitted skfwp estimators: learning curves and two-dimensional flow fields.

Needs matplotlib (``pip install 'skfwp[plot]'``), imported only when a function here
is called. Every function takes a fitted estimator or a fitted
:class:`~sklearn.pipeline.Pipeline` ending in one, draws on ``ax`` (a new figure when
None) and returns the Axes (with what it drew, where that is data). What is drawn is
computed by :mod:`skfwp.inspection`; this module only draws.

- :func:`plot_history`: learning curves, for every estimator;
- :func:`plot_trajectories`: the paths ``h(s)`` of cases through a two-dimensional
  state (gated neural ODE, N-CODE), coloured by class (a regressor: by target);
- :func:`plot_flow_field`: the gated neural ODE's field at a fixed input, its fixed
  points and the trajectories.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import is_classifier
from sklearn.utils.validation import check_is_fitted

from .inspection import (
    FixedPoints,
    _final_step,
    _fixed_input,
    _state_model,
    flow_field,
    readout_map,
    trajectories,
)
from .nn.gated import GatedNODE
from .nn.ncode import NCODE

__all__ = ["FixedPoints", "plot_flow_field", "plot_history", "plot_trajectories"]


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib
        raise ImportError("skfwp.plotting needs matplotlib: pip install 'skfwp[plot]'") from exc
    return plt


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _extent(trajectories, margin=0.15):
    """``(x_min, x_max, y_min, y_max)`` of the trajectories, widened by ``margin``."""
    pts = np.concatenate(trajectories)
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * np.maximum(hi - lo, 1e-3)
    return (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])


def _case_trajectories(clf, X, y, module_types, caller):
    """The final step, its cases' trajectories and their colour values (classes, or a
    regressor's first target); ``y=None`` takes the predictions."""
    est, _, _ = _state_model(clf, module_types, caller)
    paths = trajectories(clf, X)
    labels = np.asarray(clf.predict(X) if y is None else y)
    if len(labels) != len(paths):
        raise ValueError(f"y has {len(labels)} labels for {len(paths)} cases of X.")
    if labels.ndim == 2:  # a multi-output regressor: coloured by its first target
        labels = labels[:, 0]
    return est, paths, labels


def _draw_trajectories(ax, paths, labels, est):
    """One line per case from ``h(0)`` (small dot) to ``h(T_i)`` (large dot): coloured
    by class for a classifier (a legend entry each), by value for a regressor."""
    if not paths:
        return
    plt = _pyplot()
    if is_classifier(est):
        classes = list(dict.fromkeys(labels.tolist()))
        colors = [plt.get_cmap("tab10")(classes.index(lab) % 10) for lab in labels.tolist()]
        for index, label in enumerate(classes):  # one legend entry per class
            ax.plot([], [], color=plt.get_cmap("tab10")(index % 10), label=str(label))
    else:
        values = labels.astype(float)
        lo, hi = values.min(), values.max()
        colors = plt.get_cmap("viridis")((values - lo) / (hi - lo if hi > lo else 1.0))
    for traj, color in zip(paths, colors, strict=True):
        ax.plot(traj[:, 0], traj[:, 1], color=color, linewidth=0.8, alpha=0.7)
        ax.plot(*traj[0], "o", color=color, markersize=2)
        ax.plot(*traj[-1], "o", color=color, markersize=5, markeredgecolor="k")


def plot_trajectories(clf, X, y=None, ax=None, *, decision=True, grid=200):
    """Draw the paths of cases through the two-dimensional state of a fitted estimator.

    For a gated neural ODE or N-CODE estimator with ``hidden_size=2``: each case of
    ``X`` is one line ``h(s)`` (N-CODE: ``z(s)``), from ``s = 0`` (small dot) to its
    own final time ``T_i`` (large dot), coloured by class (a regressor's: by target
    value); with ``decision``, the background shows what the linear readout gives each
    point of the plane (:func:`skfwp.inspection.readout_map`: a class, or a predicted
    value), so a reader sees where the flow had to carry each case. The N-CODE's flow
    differs from case to case (its parameters ``θ(s)`` are a state of their own), so
    its trajectories may cross, which the trajectories of one autonomous flow of the
    plane never do.

    Parameters
    ----------
    clf : fitted gated nODE or N-CODE estimator with hidden_size=2, or a Pipeline
        ending in one
    X : array-like
        Cases to draw (raw input, as for ``clf.predict``).
    y : array-like of shape (n_cases,), default=None
        Their labels (or targets), for the colours; None colours by prediction.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    decision : bool, default=True
        Shade what the readout gives each point: decision regions, or a regressor's
        predicted value.
    grid : int, default=200
        Grid points per axis of the shading.

    Returns
    -------
    ax : matplotlib Axes
    trajectories : list of ndarray of shape (T_i + 1, 2)
        The states drawn, one array per case, at every knot ``s = 0, 1, ..., T_i``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skfwp import NCodeClassifier
    >>> from skfwp.datasets import make_annuli
    >>> from skfwp.plotting import plot_trajectories
    >>> X, y = make_annuli(20, n_timepoints=3, random_state=0)
    >>> clf = NCodeClassifier(hidden_size=2, input_drive=False, max_iter=2,
    ...                       random_state=0).fit(X, y)
    >>> ax, paths = plot_trajectories(clf, X[:5], y[:5])
    >>> len(paths), paths[0].shape
    (5, (3, 2))
    """
    est, paths, labels = _case_trajectories(clf, X, y, (GatedNODE, NCODE), "plot_trajectories")
    ax = _axes(ax)
    bounds = _extent(paths)
    if decision:
        h1, h2, values = readout_map(clf, bounds=bounds, grid=grid)
        if is_classifier(est):  # each region coloured as its class's trajectories
            order = list(dict.fromkeys(labels.tolist()))
            codes = np.array([order.index(c) if c in order else -1 for c in est.classes_.tolist()])
            shade = np.where(codes[values] >= 0, codes[values] % 10, np.nan)
            style = {"cmap": _pyplot().get_cmap("tab10"), "vmin": -0.5, "vmax": 9.5}
        else:
            values_seen = labels.astype(float)
            shade = values
            style = {"cmap": "viridis", "vmin": values_seen.min(), "vmax": values_seen.max()}
        ax.pcolormesh(h1, h2, shade, alpha=0.15, shading="auto", **style)
    _draw_trajectories(ax, paths, labels, est)
    ax.set_xlim(*bounds[:2])
    ax.set_ylim(*bounds[2:])
    name = "z" if isinstance(est.module_, NCODE) else "h"
    ax.set_xlabel(f"${name}_1$")
    ax.set_ylabel(f"${name}_2$")
    if is_classifier(est):
        ax.legend(loc="best", fontsize="small")
    return ax, paths


def plot_history(clf, ax=None):
    """Learning curves of a fitted skfwp estimator: loss (and validation score) by epoch.

    Draws the training loss from ``history_`` and, when the fit used early stopping,
    the validation loss and, on a second y-axis, the validation score (a classifier's
    accuracy, a regressor's R²); a dotted vertical line marks ``best_epoch_``.

    Parameters
    ----------
    clf : fitted skfwp estimator or Pipeline ending in one
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The loss axes (the score's axes is its twin, ``ax.get_shared_x_axes()``).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skfwp import GatedNODEClassifier
    >>> from skfwp.plotting import plot_history
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 1, 8)), np.arange(20) % 2
    >>> clf = GatedNODEClassifier(hidden_size=2, bidirectional=False, max_iter=3,
    ...                           random_state=0).fit(X, y)
    >>> len(plot_history(clf).lines)
    2
    """
    est, _ = _final_step(clf)
    check_is_fitted(est, "history_")
    ax = _axes(ax)
    history = est.history_
    epochs = [r["epoch"] for r in history]
    ax.plot(epochs, [r["loss"] for r in history], color="C0", label="training loss")
    if "val_loss" in history[0]:
        ax.plot(epochs, [r["val_loss"] for r in history], "--", color="C0", label="validation loss")
    ax.axvline(est.best_epoch_, color="0.5", linestyle=":", label="best epoch")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    handles, labels = ax.get_legend_handles_labels()
    scores = {"val_accuracy": "validation accuracy", "val_r2": "validation R²"}
    for key, name in scores.items():
        if key not in history[0]:
            continue
        score_ax = ax.twinx()
        score_ax.plot(epochs, [r[key] for r in history], color="C1", label=name)
        score_ax.set_ylabel(name)
        if key == "val_accuracy":
            score_ax.set_ylim(0, 1.02)
        more = score_ax.get_legend_handles_labels()
        handles, labels = handles + more[0], labels + more[1]
    ax.legend(handles, labels, loc="best")
    return ax


def plot_flow_field(
    clf,
    x_fixed=None,
    X=None,
    y=None,
    ax=None,
    *,
    bounds=None,
    grid=30,
    n_seeds=8,
    tol=1e-6,
    arrows="stream",
    colorbar=True,
):
    """Draw the flow field ``dh/ds`` of a fitted two-dimensional gated neural ODE.

    For a fixed input ``x_fixed``, the field ``f(h) = G ⊙ (−h + F(h, x_fixed)) / τ``
    of a gated nODE estimator (classifier or regressor) with ``hidden_size=2`` is
    drawn over a box of the plane: its speed ``|f|`` as the background, its direction
    as stream lines (or arrows), its fixed points (filled: stable; open: unstable or
    saddle), and, when ``X`` is given, the trajectories ``h(s)`` of those cases from
    ``h(0)`` (small dot) to ``h(T_i)`` (large dot), coloured by class (or target).
    The field and its fixed points are computed by :func:`skfwp.inspection.flow_field`
    (which says how the fixed points are found).

    Parameters
    ----------
    clf : fitted gated nODE estimator with hidden_size=2, or Pipeline ending in one
    x_fixed : array-like of shape (n_path_channels,), default=None
        The constant input, in the coordinates of the classifier's input path
        (``clf.input_path_``): channel 0 is time (0 at a case's first observation,
        1 at the end of the longest training case), then, with
        ``observation_intensity``, one cumulative count per data channel, then the
        data channels as the classifier sees them (after the pipeline's preprocessing,
        e.g. standardised). None means zeros: time 0 and every data channel at 0
        (e.g. "no pulse" in :func:`skfwp.datasets.make_flip_flop`).
    X : array-like, default=None
        Cases whose trajectories to draw (raw input, as for ``clf.predict``).
    y : array-like of shape (n_cases,), default=None
        Their labels, for the colours; None colours by predicted class.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    bounds : (h1_min, h1_max, h2_min, h2_max), default=None
        The box drawn; None: the trajectories' extent with a margin, or
        ``(-3, 3, -3, 3)`` without ``X``.
    grid : int, default=30
        Grid points per axis for the speed and the stream lines.
    n_seeds : int, default=8
        Seeds per axis for the fixed-point search.
    tol : float, default=1e-6
        Largest residual ``|−h + F|`` of a reported fixed point.
    arrows : {"stream", "quiver"}, default="stream"
        Stream lines or an arrow per grid point.
    colorbar : bool, default=True
        Add a colour bar for the speed.

    Returns
    -------
    ax : matplotlib Axes
    fixed_points : FixedPoints
        ``points`` (n, 2), ``stable`` (n,) and ``speed`` ``|dh/ds|`` (n,).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from skfwp import GatedNODEClassifier
    >>> from skfwp.datasets import make_flip_flop
    >>> from skfwp.plotting import plot_flow_field
    >>> X, y = make_flip_flop(16, n_timepoints=20, random_state=0)
    >>> clf = GatedNODEClassifier(hidden_size=2, bidirectional=False, max_iter=2,
    ...                           random_state=0).fit(X, y)
    >>> ax, fixed = plot_flow_field(clf, X=X[:4], y=y[:4])
    >>> fixed.points.shape[1], bool((fixed.speed < 1e-5).all())
    (2, True)
    """
    est, _, _ = _state_model(clf, (GatedNODE,), "plot_flow_field")
    if arrows not in ("stream", "quiver"):
        raise ValueError(f"arrows must be 'stream' or 'quiver', got {arrows!r}.")
    _fixed_input(est, x_fixed)  # checked before any trajectory is solved
    paths, labels = [], None
    if X is not None:
        est, paths, labels = _case_trajectories(clf, X, y, (GatedNODE,), "plot_flow_field")
    if bounds is None:
        bounds = _extent(paths) if paths else (-3.0, 3.0, -3.0, 3.0)
    field = flow_field(clf, x_fixed, bounds=bounds, grid=grid, n_seeds=n_seeds, tol=tol)

    ax = _axes(ax)
    mesh = ax.pcolormesh(
        field.h1, field.h2, field.speed, shading="gouraud", cmap="Greys", alpha=0.6
    )
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="speed |dh/ds|")
    U, V = field.velocity[..., 0], field.velocity[..., 1]
    if arrows == "stream":
        ax.streamplot(
            field.h1, field.h2, U, V, color="0.35", density=1.1, linewidth=0.6, arrowsize=0.8
        )
    else:
        ax.quiver(*np.meshgrid(field.h1, field.h2), U, V, color="0.35", angles="xy")
    _draw_trajectories(ax, paths, labels, est)
    fixed = field.fixed_points
    for stable, style in ((True, {"c": "k"}), (False, {"facecolors": "w", "edgecolors": "k"})):
        points = fixed.points[fixed.stable == stable]
        kind = "stable" if stable else "unstable"
        ax.scatter(points[:, 0], points[:, 1], s=70, zorder=5, label=f"{kind} fixed point", **style)
    ax.set_xlim(*field.bounds[:2])
    ax.set_ylim(*field.bounds[2:])
    ax.set_xlabel("$h_1$")
    ax.set_ylabel("$h_2$")
    ax.set_title("flow field dh/ds at a fixed input")
    ax.legend(loc="best", fontsize="small")
    return ax, fixed
