"""skfwp.plotting draws what it says, and the fixed points it reports are zeros of the field."""

import copy
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline
from test_gated import CLAMP_FIXED_POINTS, set_clamp_flow

from skfwp import (
    ChannelStandardScaler,
    ContinuousDeltaClassifier,
    GatedNODEClassifier,
    GatedNODERegressor,
)
from skfwp.datasets import make_flip_flop

matplotlib = pytest.importorskip(
    "matplotlib", reason="matplotlib is the optional extra 'plot'; skfwp.plotting needs it"
)
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection, QuadMesh  # noqa: E402

from skfwp.plotting import plot_flow_field, plot_history, plot_trajectories  # noqa: E402

EXAMPLE = Path(__file__).parents[1] / "examples" / "06_gnode_flip_flop.py"


@pytest.fixture(scope="module")
def flip_flop():
    return make_flip_flop(24, n_timepoints=20, random_state=0)


@pytest.fixture(scope="module")
def fitted(flip_flop):
    X, y = flip_flop
    clf = GatedNODEClassifier(
        hidden_size=2,
        flow_layers=(4,),
        bidirectional=False,
        max_iter=4,
        early_stopping=True,
        validation_fraction=0.25,
        random_state=0,
    )
    return clf.fit(X, y)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _trajectory_lines(ax):
    return [ln for ln in ax.lines if len(ln.get_xdata()) > 1]


def test_flow_field_draws_background_streams_and_trajectories(fitted, flip_flop, tmp_path):
    X, y = flip_flop
    ax, _ = plot_flow_field(fitted, X=X[:6], y=y[:6])
    assert any(isinstance(c, QuadMesh) for c in ax.collections)  # speed
    assert any(isinstance(c, LineCollection) for c in ax.collections)  # stream lines
    assert len(_trajectory_lines(ax)) == 6  # one per case
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert set(y[:6]) <= set(legend)
    # each trajectory starts at h(0) = W_0 x(0) + b_0 (time 0, first observation)
    x0 = torch.tensor(np.r_[0.0, X[0, :, 0]], dtype=torch.float32)
    h0 = fitted.module_.initial(x0).detach().numpy()
    np.testing.assert_allclose(_trajectory_lines(ax)[0].get_xydata()[0], h0, atol=1e-5)
    path = tmp_path / "flow.png"
    ax.figure.savefig(path)
    assert plt.imread(path).shape[0] > 100


def test_reported_fixed_points_are_zeros_of_the_field(fitted, flip_flop):
    X, _ = flip_flop
    x_fixed = np.r_[0.5, 1.0, 0.0]  # mid-series, a +1 pulse on bit 0
    _, fixed = plot_flow_field(fitted, x_fixed=x_fixed, X=X[:4], arrows="quiver")
    assert len(fixed.points) >= 1
    assert fixed.points.shape == (len(fixed.speed), 2) and fixed.stable.dtype == bool
    model = fitted.module_
    h = torch.as_tensor(fixed.points, dtype=torch.float32)
    x = torch.as_tensor(x_fixed, dtype=torch.float32).expand(len(h), -1)
    speed = model.velocity(h, x).detach().norm(dim=1).numpy()
    assert (speed < 1e-5).all()
    assert (fixed.speed < 1e-6).all()


def test_fixed_points_of_a_known_field(fitted):
    clf = copy.deepcopy(fitted)
    set_clamp_flow(clf.module_)
    ax, fixed = plot_flow_field(clf, bounds=(-2, 2, -2, 2), colorbar=False)
    assert {tuple(p) for p in np.round(fixed.points, 6).tolist()} == CLAMP_FIXED_POINTS
    np.testing.assert_array_equal(fixed.stable, np.abs(fixed.points).min(axis=1) > 0.5)
    # stable points are drawn filled, the others open
    filled, hollow = (c for c in ax.collections if c.get_label().endswith("fixed point"))
    assert len(filled.get_offsets()) == 4 and len(hollow.get_offsets()) == 5


def test_flow_field_of_a_pipeline_reads_the_scaled_input(flip_flop):
    X, y = flip_flop
    pipe = make_pipeline(
        ChannelStandardScaler(),
        GatedNODEClassifier(
            hidden_size=2, flow_layers=(4,), bidirectional=False, max_iter=2, random_state=0
        ),
    ).fit(X, y)
    ax, _ = plot_flow_field(pipe, X=X[:3])
    Xs = pipe[0].transform(X[:1])
    h0 = pipe[-1].module_.initial(torch.tensor(np.r_[0.0, Xs[0, :, 0]], dtype=torch.float32))
    np.testing.assert_allclose(_trajectory_lines(ax)[0].get_xydata()[0], h0.detach(), atol=1e-5)
    assert len(plot_history(pipe).lines) == 2  # a Pipeline's last step


def test_flow_field_rejects_what_it_cannot_draw(fitted, flip_flop):
    X, y = flip_flop
    wide = GatedNODEClassifier(
        hidden_size=3, flow_layers=(4,), bidirectional=False, max_iter=1
    ).fit(X, y)
    with pytest.raises(ValueError, match="hidden_size=2"):
        plot_flow_field(wide)
    fwp = ContinuousDeltaClassifier(hidden_size=4, n_heads=2, ff_dim=4, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="state of a gated neural ODE; got ContinuousDelta"):
        plot_flow_field(fwp)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        plot_flow_field(fitted, x_fixed=[0.0, 1.0])
    with pytest.raises(NotFittedError):
        plot_flow_field(GatedNODEClassifier(hidden_size=2))
    pair = GatedNODEClassifier(
        hidden_size=2, flow_layers=(4,), bidirectional=False, n_estimators=2, max_iter=1
    )
    with pytest.raises(ValueError, match="n_estimators=2 models"):
        plot_flow_field(pair.fit(X, y))


def test_history_draws_the_recorded_curves(fitted, flip_flop):
    ax = plot_history(fitted)
    loss, val_loss, best = ax.lines
    np.testing.assert_allclose(loss.get_ydata(), fitted.loss_curve_)
    np.testing.assert_allclose(val_loss.get_ydata(), [r["val_loss"] for r in fitted.history_])
    assert best.get_xdata()[0] == fitted.best_epoch_
    (accuracy_ax,) = [a for a in ax.figure.axes if a is not ax]
    np.testing.assert_allclose(accuracy_ax.lines[0].get_ydata(), fitted.validation_scores_)
    X, y = flip_flop
    fwp = ContinuousDeltaClassifier(hidden_size=4, n_heads=2, ff_dim=4, max_iter=2).fit(X, y)
    assert len(plot_history(fwp).lines) == 2  # no validation: loss and best epoch
    with pytest.raises(NotFittedError):
        plot_history(GatedNODEClassifier())


def test_a_regressor_is_drawn_by_value(flip_flop):
    """A gated nODE regressor: trajectories coloured by target on a continuous colour
    map (no class legend), the readout's predicted value as background, and the
    validation R² beside the losses."""
    X, _ = flip_flop
    target = X[:, 0].sum(axis=1)
    reg = GatedNODERegressor(
        hidden_size=2, flow_layers=(4,), max_iter=3, early_stopping=True, random_state=0
    ).fit(X, target)
    ax, paths = plot_trajectories(reg, X[:5], target[:5])
    assert len(paths) == 5
    assert ax.get_legend() is None and len(_trajectory_lines(ax)) == 5
    colors = [tuple(line.get_color()) for line in _trajectory_lines(ax)]
    lowest, highest = np.argmin(target[:5]), np.argmax(target[:5])
    viridis = plt.get_cmap("viridis")
    assert colors[lowest] == viridis(0.0) and colors[highest] == viridis(1.0)
    (mesh,) = [c for c in ax.collections if isinstance(c, QuadMesh)]
    assert mesh.get_clim() == (target[:5].min(), target[:5].max())
    ax, fixed = plot_flow_field(reg, X=X[:3])
    assert len(_trajectory_lines(ax)) == 3 and fixed.points.shape[1] == 2
    ax = plot_history(reg)
    (score_ax,) = [a for a in ax.figure.axes if a is not ax]
    assert score_ax.get_ylabel() == "validation R²"
    np.testing.assert_allclose(score_ax.lines[0].get_ydata(), reg.validation_scores_)


@pytest.mark.parametrize("task", ["bits", "value"])
def test_example_runs_on_a_tiny_budget(task, tmp_path):
    spec = importlib.util.spec_from_file_location("gnode_flip_flop", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    output = tmp_path / "flip_flop.png"
    results = example.main(
        n_train=16, n_test=16, n_timepoints=20, max_iter=1, output=output, task=task
    )
    assert set(results) == {"gnODE", "nODE"}
    for r in results.values():  # accuracy in [0, 1]; R² at most 1
        assert r["score"] <= 1 and (task == "value" or r["score"] >= 0)
        assert r["fixed_points"].points.shape[1] == 2
    height, width = plt.imread(output).shape[:2]
    assert height > 100 and width > 1.8 * height  # two panels side by side
