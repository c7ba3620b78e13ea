"""``bidirectional``: a second model reads each case from its last observation to its first."""

import copy

import numpy as np
import pytest
import torch
from estimators import SMALL, ids

import skfwp
from skfwp.nn.ensemble import Bidirectional
from skfwp.path import reverse_cases


def test_reverse_cases_reverses_each_case_within_its_own_length():
    X = np.array(
        [
            [[1.0, 2.0, 3.0, 4.0], [5.0, np.nan, 7.0, 8.0]],
            [[9.0, 10.0, np.nan, np.nan], [11.0, 12.0, np.nan, np.nan]],  # 2 observations
        ]
    )
    before = X.copy()
    out = reverse_cases(X, np.array([4, 2]))
    expected = np.array(
        [
            [[4.0, 3.0, 2.0, 1.0], [8.0, 7.0, np.nan, 5.0]],
            [[10.0, 9.0, np.nan, np.nan], [12.0, 11.0, np.nan, np.nan]],
        ]
    )
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(X, before)  # the caller's array is untouched
    np.testing.assert_array_equal(reverse_cases(out, np.array([4, 2])), X)  # an involution


def test_reverse_cases_mirrors_a_time_channel_so_that_it_increases():
    t = np.array([0.5, 1.0, 3.0, 3.5, 7.0])
    X = np.stack([np.r_[t[:4], np.nan], np.arange(5.0)])[None]  # 4 observations
    out = reverse_cases(X, np.array([4]), time_channel=0)
    # t'_j = t_0 + t_3 - t_{3-j}: gaps 0.5, 2.0, 0.5 in reverse order
    np.testing.assert_allclose(out[0, 0, :4], [0.5, 1.0, 3.0, 3.5])
    np.testing.assert_allclose(np.diff(out[0, 0, :4]), np.diff(t[:4])[::-1])
    np.testing.assert_array_equal(out[0, 1], [3.0, 2.0, 1.0, 0.0, 4.0])
    assert np.isnan(out[0, 0, 4])  # padding stays


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(24, 2, 9))
    y = np.repeat([0, 1], 12)
    X[y == 1, 0, :3] += 1.5  # the class shows at the start of a series
    return X, y


@pytest.fixture(scope="module", params=SMALL, ids=ids())
def fitted(request, data):
    cls, params = request.param
    X, y = data
    clf = cls(**{**params, "bidirectional": True, "max_iter": 3, "random_state": 0})
    return clf.fit(X, y)


def test_module_holds_two_models_with_their_own_weights(fitted):
    module = fitted.module_
    assert isinstance(module, Bidirectional)
    assert type(module.forward_model) is type(module.reverse_model)
    forward = dict(module.forward_model.named_parameters())
    reverse = dict(module.reverse_model.named_parameters())
    assert forward.keys() == reverse.keys()
    assert any(not torch.equal(forward[k], reverse[k]) for k in forward)


def test_reverse_model_reads_the_reversed_series(fitted, data):
    """Swapping the two models' weights and reversing the series by hand gives the same
    outputs: the second model reads each case from its last observation."""
    X, _ = data
    clf = copy.deepcopy(fitted).set_params(test_time_augmentation=0)
    before = clf.decision_function(X)
    forward, reverse = clf.module_.forward_model, clf.module_.reverse_model
    clf.module_.forward_model, clf.module_.reverse_model = reverse, forward
    np.testing.assert_allclose(clf.decision_function(X[:, :, ::-1]), before, atol=1e-5)
    clf.module_.forward_model, clf.module_.reverse_model = forward, reverse
    assert not np.allclose(clf.decision_function(X[:, :, ::-1]), before, atol=1e-3)


def test_outputs_are_the_sum_of_the_two_readings(fitted, data):
    X, _ = data
    clf = copy.deepcopy(fitted).set_params(test_time_augmentation=0)
    lengths = np.full(len(X), X.shape[2])
    index = np.arange(len(X))
    ip, module = clf.input_path_, clf.module_.eval()
    with torch.no_grad():
        a = module.forward_model(ip.transform(X, lengths).batch(index), method=clf.method)
        b = module.reverse_model(
            ip.transform(X[:, :, ::-1], lengths).batch(index), method=clf.method
        )
    outputs = (a + b).double().numpy()
    got = clf.decision_function(X)
    if got.ndim == 1:  # binary: the logit difference
        outputs = outputs[:, 1] - outputs[:, 0]
    np.testing.assert_allclose(got, outputs, atol=1e-4)


def test_ragged_cases_predict_alone_as_in_a_batch(fitted, data):
    X, _ = data
    X = X.copy()
    X[::3, :, 6:] = np.nan  # every third case ends after 6 observations
    clf = fitted
    batch = clf.predict_proba(X)
    alone = np.concatenate([clf.predict_proba(X[i : i + 1]) for i in range(0, len(X), 5)])
    np.testing.assert_allclose(alone, batch[::5], atol=1e-5)


def test_state_readers_and_a_switched_warm_start_refuse(data):
    X, y = data
    clf = skfwp.GatedNODEClassifier(
        hidden_size=2, flow_layers=(8,), bidirectional=True, max_iter=2, random_state=0
    ).fit(X, y)
    with pytest.raises(ValueError, match="bidirectional=False"):
        clf.trajectories(X)
    clf.set_params(warm_start=True, bidirectional=False)
    with pytest.raises(ValueError, match="bidirectional=True"):
        clf.fit(X, y)


def test_save_and_load_keep_both_directions(fitted, data, tmp_path):
    X, _ = data
    fitted.save(tmp_path / "model.pt")
    loaded = skfwp.load(tmp_path / "model.pt")
    assert loaded.bidirectional and isinstance(loaded.module_, Bidirectional)
    np.testing.assert_array_equal(loaded.predict_proba(X), fitted.predict_proba(X))
