"""Plots of fitted skfwp classifiers: learning curves and two-dimensional flow fields.

Needs matplotlib (``pip install 'skfwp[plot]'``), imported only when a function here
is called. Every function takes a fitted classifier or a fitted
:class:`~sklearn.pipeline.Pipeline` ending in one, draws on ``ax`` (a new figure when
None) and returns the Axes (with what it computed, where it computes something).

- :func:`plot_history`: learning curves, for every classifier;
- :func:`plot_trajectories`: the paths ``h(s)`` of cases through a two-dimensional
  state (gated neural ODE, N-CODE), coloured by class;
- :func:`plot_flow_field`: the gated neural ODE's field at a fixed input, its fixed
  points and the trajectories.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from ._validation import check_X
from .nn.gated import GatedNODE
from .nn.ncode import NCODE

__all__ = ["FixedPoints", "plot_flow_field", "plot_history", "plot_trajectories"]


class FixedPoints(NamedTuple):
    """Approximate fixed points of a flow field, as found by :func:`plot_flow_field`.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.plotting import FixedPoints
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


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - exercised without matplotlib
        raise ImportError("skfwp.plotting needs matplotlib: pip install 'skfwp[plot]'") from exc
    return plt


def _final_step(clf):
    """The fitted classifier and the transform of the steps before it (or None)."""
    if isinstance(clf, Pipeline):
        return clf[-1], clf[:-1].transform
    return clf, None


def _axes(ax):
    if ax is None:
        _, ax = _pyplot().subplots()
    return ax


def _planar_model(clf, module_types, caller):
    """The final step, its preprocessing and a float64 CPU copy of its 2-D state model."""
    est, transform = _final_step(clf)
    check_is_fitted(est, "module_")
    if getattr(est, "n_estimators", 1) > 1:
        raise ValueError(
            f"{caller} draws one model's state, and this classifier is a seed ensemble of "
            f"n_estimators={est.n_estimators} models, each with a flow of its own; fit it "
            "with n_estimators=1 to draw it."
        )
    if not isinstance(est.module_, module_types):
        names = " or ".join(
            {GatedNODE: "GatedNODEClassifier", NCODE: "NCodeClassifier"}[t] for t in module_types
        )
        raise ValueError(f"{caller} draws the state of a {names}; got {type(est).__name__}.")
    if est.hidden_size != 2:
        raise ValueError(
            f"{caller} needs a two-dimensional state (hidden_size=2); this classifier has "
            f"hidden_size={est.hidden_size}."
        )
    return est, transform, copy.deepcopy(est.module_).cpu().double().eval()


def _state_trajectories(est, model, transform, X, y):
    """Each case's ``h(s)`` from ``s = 0`` to its own ``T_i``, and the labels to colour by."""
    Xt = X if transform is None else transform(X)
    arr, lengths = check_X(Xt, n_channels=est.n_features_in_)
    path = est.input_path_.transform(arr, lengths, dtype=torch.float64).batch(range(len(arr)))
    options = {**est._solver_options(), "adjoint": False}
    options.pop("solver_backend", None)
    with torch.no_grad():
        traj = model.trajectory(path, **options).numpy()  # (n_cases, n_knots, 2)
    trajectories = [traj[i, : int(end) + 1] for i, end in enumerate(path.ends)]
    labels = est.predict(Xt) if y is None else np.asarray(y)
    if len(labels) != len(trajectories):
        raise ValueError(f"y has {len(labels)} labels for {len(trajectories)} cases of X.")
    return trajectories, labels


def _extent(trajectories, margin=0.15):
    """``(x_min, x_max, y_min, y_max)`` of the trajectories, widened by ``margin``."""
    pts = np.concatenate(trajectories)
    lo, hi = pts.min(0), pts.max(0)
    pad = margin * np.maximum(hi - lo, 1e-3)
    return (lo[0] - pad[0], hi[0] + pad[0], lo[1] - pad[1], hi[1] + pad[1])


def _draw_trajectories(ax, trajectories, labels):
    """One line per case from ``h(0)`` (small dot) to ``h(T_i)`` (large dot), by class."""
    if not trajectories:
        return
    plt = _pyplot()
    classes = list(dict.fromkeys(labels.tolist()))
    for label_index, label in enumerate(classes):
        color = plt.get_cmap("tab10")(label_index % 10)
        for traj, lab in zip(trajectories, labels.tolist(), strict=True):
            if lab != label:
                continue
            ax.plot(traj[:, 0], traj[:, 1], color=color, linewidth=0.8, alpha=0.7)
            ax.plot(*traj[0], "o", color=color, markersize=2)
            ax.plot(*traj[-1], "o", color=color, markersize=5, markeredgecolor="k")
        ax.plot([], [], color=color, label=str(label))  # one legend entry per class


def plot_trajectories(clf, X, y=None, ax=None, *, decision=True, grid=200):
    """Draw the paths of cases through the two-dimensional state of a fitted classifier.

    For a :class:`~skfwp.GatedNODEClassifier` or :class:`~skfwp.NCodeClassifier` with
    ``hidden_size=2``: each case of ``X`` is one line ``h(s)`` (N-CODE: ``z(s)``),
    from ``s = 0`` (small dot) to its own final time ``T_i`` (large dot), coloured by
    class; with ``decision``, the background shows the class that the linear readout
    gives each point of the plane, so a reader sees where the flow had to carry each
    class. The N-CODE's flow differs from case to case (its parameters ``θ(s)`` are
    a state of their own), so its trajectories may cross, which the trajectories of
    one autonomous flow of the plane never do.

    Parameters
    ----------
    clf : fitted GatedNODEClassifier or NCodeClassifier with hidden_size=2, or a
        Pipeline ending in one
    X : array-like
        Cases to draw (raw input, as for ``clf.predict``).
    y : array-like of shape (n_cases,), default=None
        Their labels, for the colours; None colours by predicted class.
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.
    decision : bool, default=True
        Shade the readout's decision regions.
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
    est, transform, model = _planar_model(clf, (GatedNODE, NCODE), "plot_trajectories")
    trajectories, labels = _state_trajectories(est, model, transform, X, y)
    ax = _axes(ax)
    x0, x1, y0, y1 = _extent(trajectories)
    if decision:
        g1, g2 = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
        H1, H2 = np.meshgrid(g1, g2)
        states = torch.as_tensor(np.stack([H1.ravel(), H2.ravel()], axis=1))
        with torch.no_grad():
            region = model.output(states).argmax(1).numpy().reshape(H1.shape)
        # colour each region as its class's trajectories are coloured
        order = list(dict.fromkeys(labels.tolist()))
        codes = np.array([order.index(c) if c in order else -1 for c in est.classes_.tolist()])
        shade = np.where(codes[region] >= 0, codes[region] % 10, np.nan)
        cmap = _pyplot().get_cmap("tab10")
        ax.pcolormesh(H1, H2, shade, cmap=cmap, vmin=-0.5, vmax=9.5, alpha=0.15, shading="auto")
    _draw_trajectories(ax, trajectories, labels)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    name = "z" if isinstance(model, NCODE) else "h"
    ax.set_xlabel(f"${name}_1$")
    ax.set_ylabel(f"${name}_2$")
    ax.legend(loc="best", fontsize="small")
    return ax, trajectories


def plot_history(clf, ax=None):
    """Learning curves of a fitted skfwp classifier: loss (and accuracy) by epoch.

    Draws the training loss from ``history_`` and, when the fit used early stopping,
    the validation loss and, on a second y-axis, the validation accuracy; a dotted
    vertical line marks ``best_epoch_``.

    Parameters
    ----------
    clf : fitted skfwp classifier or Pipeline ending in one
    ax : matplotlib Axes, default=None
        Where to draw; a new figure when None.

    Returns
    -------
    ax : matplotlib Axes
        The loss axes (the accuracy axes is its twin, ``ax.get_shared_x_axes()``).

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> import numpy as np
    >>> from skfwp import GatedNODEClassifier
    >>> from skfwp.plotting import plot_history
    >>> rng = np.random.default_rng(0)
    >>> X, y = rng.normal(size=(20, 1, 8)), np.arange(20) % 2
    >>> clf = GatedNODEClassifier(hidden_size=2, max_iter=3, random_state=0).fit(X, y)
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
    if "val_accuracy" in history[0]:
        acc_ax = ax.twinx()
        acc_ax.plot(
            epochs, [r["val_accuracy"] for r in history], color="C1", label="validation accuracy"
        )
        acc_ax.set_ylabel("validation accuracy")
        acc_ax.set_ylim(0, 1.02)
        more = acc_ax.get_legend_handles_labels()
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
    of a :class:`~skfwp.GatedNODEClassifier` with ``hidden_size=2`` is drawn over a
    box of the plane: its speed ``|f|`` as the background, its direction as stream
    lines (or arrows), its fixed points (filled: stable; open: unstable or saddle),
    and, when ``X`` is given, the trajectories ``h(s)`` of those cases from
    ``h(0)`` (small dot) to ``h(T_i)`` (large dot), coloured by class.

    Fixed points are found numerically: damped Newton steps on ``−h + F(h, x_fixed)``
    (whose zeros are those of ``f``, the gate being positive) from an
    ``n_seeds x n_seeds`` grid of seeds over the box, in float64; the points whose
    residual is below ``tol`` are kept, duplicates merged (see
    :func:`skfwp.nn.gated.find_fixed_points`), and the stability read from the
    eigenvalues of the Jacobian of ``f``.

    Parameters
    ----------
    clf : fitted GatedNODEClassifier with hidden_size=2, or Pipeline ending in one
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
    >>> clf = GatedNODEClassifier(hidden_size=2, max_iter=2, random_state=0).fit(X, y)
    >>> ax, fixed = plot_flow_field(clf, X=X[:4], y=y[:4])
    >>> fixed.points.shape[1], bool((fixed.speed < 1e-5).all())
    (2, True)
    """
    est, transform, model = _planar_model(clf, (GatedNODE,), "plot_flow_field")
    if arrows not in ("stream", "quiver"):
        raise ValueError(f"arrows must be 'stream' or 'quiver', got {arrows!r}.")
    n_path = est.input_path_.n_path_channels_
    x = np.zeros(n_path) if x_fixed is None else np.asarray(x_fixed, dtype=float)
    if x.shape != (n_path,):
        raise ValueError(
            f"x_fixed must have shape ({n_path},): the classifier's input path has {n_path} "
            "channels (time, [observation intensities], data channels); got shape "
            f"{x.shape}."
        )
    x = torch.as_tensor(x, dtype=torch.float64)

    trajectories, labels = [], None
    if X is not None:
        trajectories, labels = _state_trajectories(est, model, transform, X, y)

    if bounds is None:
        bounds = _extent(trajectories) if trajectories else (-3.0, 3.0, -3.0, 3.0)
    x0, x1, y0, y1 = (float(b) for b in bounds)

    # speed and direction on the grid
    g1, g2 = np.linspace(x0, x1, grid), np.linspace(y0, y1, grid)
    H1, H2 = np.meshgrid(g1, g2)  # (grid, grid), rows along h2
    states = torch.as_tensor(np.stack([H1.ravel(), H2.ravel()], axis=1))
    with torch.no_grad():
        v = model.velocity(states, x.expand(len(states), -1)).numpy()
    U, V = v[:, 0].reshape(H1.shape), v[:, 1].reshape(H1.shape)
    speed = np.hypot(U, V)
    ax = _axes(ax)
    mesh = ax.pcolormesh(H1, H2, speed, shading="gouraud", cmap="Greys", alpha=0.6)
    if colorbar:
        ax.figure.colorbar(mesh, ax=ax, label="speed |dh/ds|")
    if arrows == "stream":
        ax.streamplot(g1, g2, U, V, color="0.35", density=1.1, linewidth=0.6, arrowsize=0.8)
    else:
        ax.quiver(H1, H2, U, V, color="0.35", angles="xy")

    # fixed points
    s1, s2 = np.meshgrid(np.linspace(x0, x1, n_seeds), np.linspace(y0, y1, n_seeds))
    seeds = torch.as_tensor(np.stack([s1.ravel(), s2.ravel()], axis=1))
    points, stable, fp_speed = model.fixed_points(x, seeds, tol=tol)
    fixed = FixedPoints(points.numpy(), stable.numpy(), fp_speed.numpy())

    _draw_trajectories(ax, trajectories, labels)

    pts = fixed.points
    ax.scatter(
        pts[fixed.stable, 0],
        pts[fixed.stable, 1],
        s=70,
        c="k",
        zorder=5,
        label="stable fixed point",
    )
    ax.scatter(
        pts[~fixed.stable, 0],
        pts[~fixed.stable, 1],
        s=70,
        facecolors="w",
        edgecolors="k",
        zorder=5,
        label="unstable fixed point",
    )
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_xlabel("$h_1$")
    ax.set_ylabel("$h_2$")
    ax.set_title("flow field dh/ds at a fixed input")
    ax.legend(loc="best", fontsize="small")
    return ax, fixed
