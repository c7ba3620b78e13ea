"""skfwp.inspection returns what the fitted model computes: states, fields, readouts."""

import copy

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from sklearn.pipeline import make_pipeline

from skfwp import (
    ChannelStandardScaler,
    GatedNODEClassifier,
    GatedNODERegressor,
    NCodeClassifier,
    NeuralCDEClassifier,
)
from skfwp.datasets import make_flip_flop
from skfwp.inspection import flow_field, readout_map, trajectories


@pytest.fixture(scope="module")
def flip_flop():
    return make_flip_flop(20, n_timepoints=12, random_state=0)


@pytest.fixture(scope="module")
def gnode(flip_flop):
    X, y = flip_flop
    return GatedNODEClassifier(
        hidden_size=2, flow_layers=(4,), bidirectional=False, max_iter=2, random_state=0
    ).fit(X, y)


def _unequal(X):
    """The first case cut to 5 observations, the second to 8 (NaN-padded)."""
    X = X[:3].copy()
    X[0, :, 5:] = np.nan
    X[1, :, 8:] = np.nan
    return X


@pytest.mark.parametrize("cls", [GatedNODEClassifier, NCodeClassifier])
def test_trajectories_end_where_the_readout_reads(cls, flip_flop):
    """Each case's trajectory has one state per knot up to its own end, and the linear
    readout of its last state is the model's output (an independent forward pass)."""
    X, y = flip_flop
    params = {"control_rank": 2}
    if cls is GatedNODEClassifier:
        params = {"flow_layers": (4,), "bidirectional": False}  # one model's states
    clf = cls(hidden_size=3, max_iter=2, logsig_window=None, test_time_augmentation=0, **params)
    clf.set_params(random_state=0).fit(X, y)  # predictions read the full path only
    Xu = _unequal(X)
    paths = clf.trajectories(Xu)
    assert [p.shape for p in paths] == [(5, 3), (8, 3), (12, 3)]
    ends = torch.as_tensor(np.stack([p[-1] for p in paths]))
    module = copy.deepcopy(clf.module_).double()
    with torch.no_grad():
        from_states = module.output(ends).numpy()
    logits = np.log(clf.predict_proba(Xu))
    np.testing.assert_allclose(
        from_states - from_states.mean(1, keepdims=True),
        logits - logits.mean(1, keepdims=True),
        atol=1e-4,
    )
    assert trajectories(clf, Xu)[1].shape == (8, 3)


def test_trajectories_of_a_pipeline_read_the_transformed_input(flip_flop):
    X, y = flip_flop
    pipe = make_pipeline(
        ChannelStandardScaler(),
        GatedNODEClassifier(
            hidden_size=2, flow_layers=(4,), bidirectional=False, max_iter=1, random_state=0
        ),
    ).fit(X, y)
    direct = pipe[-1].trajectories(pipe[0].transform(X[:2]))
    for got, expected in zip(trajectories(pipe, X[:2]), direct, strict=True):
        np.testing.assert_array_equal(got, expected)
    h0 = pipe[-1].module_.initial(
        torch.tensor(np.r_[0.0, pipe[0].transform(X[:1])[0, :, 0]], dtype=torch.float32)
    )
    np.testing.assert_allclose(direct[0][0], h0.detach().numpy(), atol=1e-6)


def test_flow_field_is_the_module_velocity_on_its_grid(gnode):
    x_fixed = np.r_[0.5, 1.0, -1.0]
    field = flow_field(gnode, x_fixed, bounds=(-2, 1, -1, 3), grid=7, n_seeds=4)
    assert field.h1.tolist() == np.linspace(-2, 1, 7).tolist()
    assert field.h2.tolist() == np.linspace(-1, 3, 7).tolist()
    model = copy.deepcopy(gnode.module_).double()
    x = torch.as_tensor(x_fixed)
    for i, j in [(0, 0), (2, 5), (6, 3)]:  # row i along h2, column j along h1
        h = torch.tensor([field.h1[j], field.h2[i]], dtype=torch.float64)
        with torch.no_grad():
            expected = model.velocity(h[None], x[None])[0].numpy()
        np.testing.assert_allclose(field.velocity[i, j], expected, rtol=1e-10)
    np.testing.assert_allclose(field.speed, np.linalg.norm(field.velocity, axis=-1))
    assert field.bounds == (-2.0, 1.0, -1.0, 3.0)
    if len(field.fixed_points.points):
        h = torch.as_tensor(field.fixed_points.points)
        with torch.no_grad():
            speed = model.velocity(h, x.expand(len(h), -1)).norm(dim=1)
        assert (speed < 1e-5).all()


def test_readout_map_reads_classes_and_values(gnode, flip_flop):
    h1, h2, region = readout_map(gnode, bounds=(-1, 1, -2, 2), grid=4)
    model = copy.deepcopy(gnode.module_).double()
    states = torch.tensor([[h1[j], h2[i]] for i in range(4) for j in range(4)])
    with torch.no_grad():
        expected = model.output(states).argmax(1).numpy().reshape(4, 4)
    np.testing.assert_array_equal(region, expected)
    X, _ = flip_flop
    target = 10 * X[:, 0].sum(axis=1) + 3
    reg = GatedNODERegressor(hidden_size=2, flow_layers=(4,), max_iter=2, random_state=0)
    reg.fit(X, target)
    h1, h2, values = readout_map(reg, bounds=(-1, 1, -1, 1), grid=3)
    with torch.no_grad():
        raw = (
            copy.deepcopy(reg.module_).double().output(torch.tensor([[h1[2], h2[0]]]))[0, 0].item()
        )
    assert values[0, 2] == pytest.approx(raw * reg.target_scale_[0] + reg.target_mean_[0])


def test_inspection_refuses_what_it_cannot_read(gnode, flip_flop):
    X, y = flip_flop
    ncde = NeuralCDEClassifier(hidden_size=2, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="gated neural ODE or N-CODE; got NeuralCDE"):
        readout_map(ncde, bounds=(-1, 1, -1, 1))
    ncode = NCodeClassifier(hidden_size=2, control_rank=1, max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="state of a gated neural ODE; got NCodeClassifier"):
        flow_field(ncode)
    with pytest.raises(ValueError, match=r"x_fixed must have shape \(3,\)"):
        flow_field(gnode, [0.0])
    wide = GatedNODEClassifier(
        hidden_size=3, flow_layers=(4,), bidirectional=False, max_iter=1
    ).fit(X, y)
    with pytest.raises(ValueError, match="hidden_size=2"):
        flow_field(wide)
    pair = GatedNODEClassifier(
        hidden_size=2, flow_layers=(4,), bidirectional=False, n_estimators=2, max_iter=1
    )
    with pytest.raises(ValueError, match="n_estimators=2"):
        pair.fit(X, y).trajectories(X[:1])
    with pytest.raises(NotFittedError):
        GatedNODEClassifier().trajectories(X[:1])
    with pytest.raises(ValueError, match="channels"):
        gnode.trajectories(X[:1, :1])
