"""The sktime adapters (classifiers and regressors): sktime's own estimator checks, and
exact delegation to skfwp."""

import pickle

import numpy as np
import pandas as pd
import pytest
from sktime.datasets import load_japanese_vowels, load_unit_test
from sktime.utils.estimator_checks import check_estimator

import skfwp
from skfwp.registry import all_estimators
from skfwp.sktime import SkfwpClassifierAdapter, SkfwpRegressorAdapter, adapter_for, all_adapters

ADAPTERS = all_adapters()
CLASSIFIER_ADAPTERS = {k: a for k, a in ADAPTERS.items() if issubclass(a, SkfwpClassifierAdapter)}
REGRESSOR_ADAPTERS = {k: a for k, a in ADAPTERS.items() if issubclass(a, SkfwpRegressorAdapter)}

# sktime checks that refit the estimator on every input scenario (8 to 24 fits each,
# ~10 s per check and adapter on a shared 2-core machine); every other check runs by
# default.
SLOW_CHECKS = [
    "test_fit_idempotent",
    "test_non_state_changing_method_contract",
    "test_persistence_via_pickle",
    "test_save_estimators_to_file",
    "test_methods_have_no_side_effects",
    "test_deepcopy_fitted_predict",
]


def _assert_all_passed(results):
    failed = {name: result for name, result in results.items() if result != "PASSED"}
    assert not failed, "\n".join(f"{name}: {result}" for name, result in failed.items())
    assert results  # some checks did run


@pytest.mark.parametrize("adapter", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_sktime_check_estimator(adapter):
    _assert_all_passed(check_estimator(adapter, tests_to_exclude=SLOW_CHECKS, verbose=False))


@pytest.mark.slow  # ~1 min per adapter: each check refits on every sktime scenario
@pytest.mark.parametrize("adapter", ADAPTERS.values(), ids=ADAPTERS.keys())
def test_sktime_check_estimator_refit_checks(adapter):
    _assert_all_passed(check_estimator(adapter, tests_to_run=SLOW_CHECKS, verbose=False))


def test_every_skfwp_estimator_has_an_adapter_with_its_parameters():
    assert ADAPTERS.keys() == all_estimators().keys()
    assert len(CLASSIFIER_ADAPTERS) == len(REGRESSOR_ADAPTERS) == 4
    for name, adapter in ADAPTERS.items():
        estimator_class = getattr(skfwp, name)
        assert adapter._estimator_class is estimator_class
        assert adapter.get_param_names() == sorted(estimator_class().get_params())
        assert adapter.get_param_defaults() == estimator_class().get_params()


@pytest.mark.parametrize("adapter", CLASSIFIER_ADAPTERS.values(), ids=CLASSIFIER_ADAPTERS.keys())
def test_adapter_predicts_exactly_as_the_sklearn_estimator(adapter):
    """Same parameters, same data (nested DataFrame vs numpy): identical probabilities."""
    X, y = load_unit_test(split="train", return_X_y=True)
    X_np, _ = load_unit_test(split="train", return_X_y=True, return_type="numpy3D")
    params = adapter.get_test_params()[0]
    ours = adapter(**params).fit(X, y)
    direct = adapter._estimator_class(**params).fit(X_np, y)
    np.testing.assert_array_equal(ours.predict_proba(X.iloc[:6]), direct.predict_proba(X_np[:6]))
    np.testing.assert_array_equal(ours.predict(X.iloc[:6]), direct.predict(X_np[:6]))
    np.testing.assert_array_equal(ours.classes_, direct.classes_)


@pytest.mark.parametrize("adapter", REGRESSOR_ADAPTERS.values(), ids=REGRESSOR_ADAPTERS.keys())
def test_regressor_adapter_predicts_exactly_as_the_sklearn_estimator(adapter):
    """A regression target from the panel itself (each case's mean of channel 0)."""
    X_np, _ = load_unit_test(split="train", return_X_y=True, return_type="numpy3D")
    X, _ = load_unit_test(split="train", return_X_y=True)
    y = X_np[:, 0].mean(axis=1)
    params = adapter.get_test_params()[0]
    ours = adapter(**params).fit(X, y)
    direct = adapter._estimator_class(**params).fit(X_np, y)
    np.testing.assert_array_equal(ours.predict(X.iloc[:6]), direct.predict(X_np[:6]))
    assert ours.predict(X.iloc[:6]).shape == (6,)


def test_unequal_length_and_missing_values_reach_the_estimator_unpadded():
    """A nested panel of unequal lengths with NaN gives what the list of cases gives."""
    X, y = load_japanese_vowels(split="train", return_X_y=True)
    keep = np.arange(0, len(y), 9)  # 30 cases of every class
    X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    X.iloc[0, 1] = X.iloc[0, 1].copy().where(lambda s: s.index % 3 != 1)  # NaN gaps
    cases = [np.stack([X.iloc[i, j].to_numpy() for j in range(X.shape[1])]) for i in range(len(y))]
    assert len({c.shape[1] for c in cases}) > 1 and np.isnan(cases[0]).any()
    adapter = adapter_for(skfwp.NeuralCDEClassifier)
    params = {**adapter.get_test_params()[0], "max_iter": 2}
    ours = adapter(**params).fit(X, y)
    direct = skfwp.NeuralCDEClassifier(**params).fit(cases, y)
    np.testing.assert_allclose(ours.predict_proba(X), direct.predict_proba(cases), atol=1e-12)


class RenamedCDEClassifier(skfwp.NeuralCDEClassifier):
    """A classifier with no adapter written for it (as a newly merged one would be)."""


def test_adapter_generated_for_a_classifier_without_one():
    adapter = adapter_for(RenamedCDEClassifier)
    assert issubclass(adapter, SkfwpClassifierAdapter)
    assert adapter.__name__ == "RenamedCDEClassifier" and adapter.__module__ == "skfwp.sktime"
    assert adapter_for(RenamedCDEClassifier) is adapter  # generated once
    assert adapter.get_param_defaults() == RenamedCDEClassifier().get_params()
    assert ">>>" in adapter.__doc__  # sktime requires a doctest example
    X, y = load_unit_test(split="train", return_X_y=True)
    clf = adapter(hidden_size=4, vector_field_width=8, max_iter=1, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))
    assert isinstance(clf.estimator_, RenamedCDEClassifier)


def test_unknown_parameter_is_a_type_error():
    with pytest.raises(TypeError, match="learning_rule"):
        ADAPTERS["NeuralCDEClassifier"](learning_rule="delta")


def test_labels_come_back_in_their_own_type():
    X, _ = load_unit_test(split="train", return_X_y=True)
    y = pd.Series(np.arange(len(X)) % 2 * 5 + 2)  # labels 2 and 7
    adapter = ADAPTERS["NeuralCDEClassifier"]
    pred = adapter(**adapter.get_test_params()[1]).fit(X, y).predict(X)
    assert set(pred) <= {2, 7} and pred.dtype.kind == "i"
