"""The regressors: scikit-learn's checks and the regression contract (standardised targets,
several outputs, test-time augmentation as a mean, persistence, bad targets)."""

import pickle

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks
from test_common import EXPECTED_FAILED_CLASSIFIER

import skfwp
from skfwp import ChannelStandardScaler
from skfwp.path import read_at, warp_positions
from skfwp.registry import all_regressors

REGRESSORS = all_regressors()
#: Tiny settings, as the classifiers' (estimators.SMALL).
SMALL = [(cls, {**cls._get_test_params(), "batch_size": 32}) for cls in REGRESSORS.values()]
IDS = list(REGRESSORS)

#: The classifiers' reasons hold for the regressors too (time-series input, mini-batch
#: weights, float32 batch rounding); check_regressors_train fails only at its
#: feature-count step, as check_classifiers_train does.
EXPECTED_FAILED_REGRESSOR = {
    **{k: v for k, v in EXPECTED_FAILED_CLASSIFIER.items() if k != "check_classifiers_train"},
    "check_regressors_train": EXPECTED_FAILED_CLASSIFIER["check_classifiers_train"],
}


@parametrize_with_checks(
    [cls(**params, max_iter=3, learning_rate_init=1e-2) for cls, params in SMALL],
    expected_failed_checks=lambda estimator: EXPECTED_FAILED_REGRESSOR,
)
def test_sklearn_contract(estimator, check):
    check(estimator)


def make_regression_panel(n_cases=32, n_timepoints=12, random_state=0):
    """Channel 0 drifts by ``a`` over the series; the targets are ``a`` and ``5 - 2a``."""
    rng = np.random.default_rng(random_state)
    a = rng.uniform(-1, 1, n_cases)
    X = 0.1 * rng.normal(size=(n_cases, 2, n_timepoints))
    X[:, 0] += a[:, None] * np.linspace(0, 2, n_timepoints)
    return X, np.stack([a, 5 - 2 * a], axis=1)


@pytest.fixture(scope="module", params=SMALL, ids=IDS)
def fitted(request):
    cls, params = request.param
    X, Y = make_regression_panel()
    reg = cls(**params, max_iter=60, learning_rate_init=1e-2, random_state=0).fit(X, Y[:, 0])
    return reg, X, Y


def test_learns_a_continuous_target(fitted):
    reg, X, Y = fitted
    assert reg.score(X, Y[:, 0]) > 0.8  # R² on the training panel
    assert reg.predict(X).shape == (len(X),) and reg.n_outputs_ == 1


def test_targets_are_standardised_inside(fitted):
    """Fitting on ``10 y + 3`` trains the same module, so predictions move the same way."""
    reg, X, Y = fitted
    y = Y[:, 0]
    assert np.allclose(reg.target_mean_, [y.mean()]) and np.allclose(reg.target_scale_, [y.std()])
    shifted = pickle.loads(pickle.dumps(reg)).fit(X, 10 * y + 3)
    np.testing.assert_allclose(shifted.predict(X), 10 * reg.predict(X) + 3, rtol=1e-5, atol=1e-5)


def test_several_outputs(fitted):
    reg, X, Y = fitted
    two = pickle.loads(pickle.dumps(reg)).fit(X, Y)
    assert two.n_outputs_ == 2 and two.predict(X[:5]).shape == (5, 2)
    assert two.score(X, Y) > 0.8
    np.testing.assert_allclose(two.target_mean_, Y.mean(axis=0))
    with pytest.raises(ValueError, match="same number of targets"):
        two.set_params(warm_start=True).fit(X, Y[:, 0])


def test_warm_start_keeps_the_standardisation(fitted):
    """The module goes on learning the same standardised targets, not re-scaled ones."""
    reg, X, Y = fitted
    warm = pickle.loads(pickle.dumps(reg)).set_params(warm_start=True, max_iter=1)
    warm.fit(X, 10 * Y[:, 0] + 3)
    np.testing.assert_array_equal(warm.target_mean_, reg.target_mean_)
    np.testing.assert_array_equal(warm.target_scale_, reg.target_scale_)
    assert len(warm.history_) == len(reg.history_) + 1


def test_sample_weight_sets_the_standardisation(fitted):
    reg, X, Y = fitted
    w = np.where(np.arange(len(X)) < 8, 3.0, 1.0)
    weighted = pickle.loads(pickle.dumps(reg)).set_params(max_iter=1).fit(X, Y, sample_weight=w)
    mean = (w[:, None] * Y).sum(0) / w.sum()
    scale = np.sqrt((w[:, None] * (Y - mean) ** 2).sum(0) / w.sum())
    np.testing.assert_allclose(weighted.target_mean_, mean)
    np.testing.assert_allclose(weighted.target_scale_, scale)


def test_test_time_augmentation_averages_outputs(fitted):
    """Prediction with copies = the mean of the full path's and each dropped copy's."""
    reg, X, _ = fitted
    augmented = pickle.loads(pickle.dumps(reg)).set_params(
        observation_dropout=0.5, test_time_augmentation=3
    )
    plain = pickle.loads(pickle.dumps(augmented)).set_params(test_time_augmentation=0)
    lengths = np.full(len(X), X.shape[2])
    uniforms, _, _ = plain._case_draws(X, lengths, n_copies=3)
    copies = [X] + [plain._dropped(X, lengths, u) for u in uniforms]
    expected = np.mean([plain.predict(c) for c in copies], axis=0)
    np.testing.assert_allclose(augmented.predict(X), expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(expected, plain.predict(X))  # the copies did count


def test_test_time_augmentation_warps_the_copies_as_training_does(fitted):
    """With time_warp, each copy is read at its case-seeded warped times (then dropped):
    the prediction is the mean of the full path's and the copies' outputs."""
    reg, X, _ = fitted
    augmented = pickle.loads(pickle.dumps(reg)).set_params(
        observation_dropout=0.0, time_warp=0.3, test_time_augmentation=2
    )
    plain = pickle.loads(pickle.dumps(augmented)).set_params(test_time_augmentation=0)
    lengths = np.full(len(X), X.shape[2])
    _, normals, _ = plain._case_draws(X, lengths, n_copies=2)
    copies = [X] + [read_at(X, lengths, warp_positions(lengths, 0.3 * z)) for z in normals]
    expected = np.mean([plain.predict(c) for c in copies], axis=0)
    np.testing.assert_allclose(augmented.predict(X), expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(expected, plain.predict(X))


def test_save_load_and_pickle_round_trip(fitted, tmp_path):
    reg, X, _ = fitted
    path = tmp_path / "reg.pt"
    reg.save(path)
    loaded = skfwp.load(path, expected_class=type(reg))
    np.testing.assert_array_equal(loaded.predict(X), reg.predict(X))
    np.testing.assert_array_equal(loaded.target_scale_, reg.target_scale_)
    assert isinstance(loaded.target_mean_, np.ndarray) and not hasattr(loaded, "classes_")
    with pytest.raises(ValueError, match="not the expected"):
        skfwp.load(path, expected_class=skfwp.NeuralCDEClassifier)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reg)).predict(X), reg.predict(X))


def test_early_stopping_monitors_r2(fitted):
    reg, X, Y = fitted
    stopped = pickle.loads(pickle.dumps(reg)).set_params(max_iter=6, early_stopping=True)
    stopped.fit(X, Y[:, 0])
    assert "val_r2" in stopped.history_[0]
    assert stopped.best_validation_score_ == max(r["val_r2"] for r in stopped.history_)


def test_pipeline_and_grid_search(fitted):
    reg, X, Y = fitted
    pipe = make_pipeline(ChannelStandardScaler(), pickle.loads(pickle.dumps(reg)))
    name = pipe.steps[-1][0]
    search = GridSearchCV(pipe, {f"{name}__max_iter": [1, 30]}, cv=2).fit(X, Y[:, 0])
    scores = search.cv_results_["mean_test_score"]
    assert search.best_score_ == scores.max() and scores[1] > scores[0]


@pytest.mark.parametrize(
    ("y", "match"),
    [
        (np.array(["a", "b"] * 16), "must hold numbers"),
        (np.array([True, False] * 16), "must hold numbers"),
        (np.r_[np.nan, np.zeros(31)], "NaN or infinity"),
        (np.zeros(31), "inconsistent numbers of cases"),
        (np.zeros((32, 2, 2)), "1D .* or 2D"),
        (np.zeros((32, 0)), "no target columns"),
        (None, "requires y"),
    ],
)
def test_bad_targets_are_named_before_any_work(y, match):
    X, _ = make_regression_panel()
    X_before = X.copy()
    with pytest.raises(ValueError, match=match):
        skfwp.NeuralCDERegressor(max_iter=1).fit(X, y)
    np.testing.assert_array_equal(X, X_before)


def test_regressors_have_no_classification_parameters():
    for cls in REGRESSORS.values():
        params = cls().get_params()
        assert "class_weight" not in params and "label_smoothing" not in params
        assert "max_iter" in params and "test_time_augmentation" in params
