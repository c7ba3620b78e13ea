"""Adversarial inputs x every classifier (issue 14).

Each case ends in an exact outcome: a named exception whose message says what is wrong
(matched by a regular expression), or a correct answer (compared with a reference the
same model gives on the equivalent plain input). Four groups:

- ``FIT_ERRORS``: bad data, labels, weights and parameters; refused before any heavy
  work (building the module or training fails the test) and without touching the
  caller's arrays;
- ``FIT_ANSWERS``: unusual but valid input to ``fit``, and what it must equal;
- ``PREDICT_CASES``: bad and edge input to a fitted model;
- ``LOAD_CASES``: model files crafted by an attacker who re-signs them (the digest is
  no signature: docs/persistence.md), each refused with a ``ValueError``.

Tiny data, ``max_iter`` 1-2 and one fitted model per classifier keep the whole matrix
within seconds per classifier.
"""

import copy
import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_tiny_panel
from estimators import SMALL, ids
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

import skfwp
from skfwp.persistence import FORMAT_VERSION, _digest

X0, Y0 = make_tiny_panel(n_cases=12, n_timepoints=8)


def _with(value, case=3, channel=1, t=4, X=X0):
    X = X.copy()
    X[case, channel, t] = value
    return X


def _nested_univ(X):
    return pd.DataFrame(
        {f"dim_{c}": [pd.Series(X[i, c]) for i in range(len(X))] for c in range(X.shape[1])}
    )


def _nan_case(X=X0, case=2):
    X = X.copy()
    X[case] = np.nan
    return X


def _nan_channel():
    X = X0.copy()
    X[:, 1] = np.nan
    return X


_NOT_BOOL = "must be a number, not a bool"
_BEYOND = r"Case\(s\) \[3\] of X hold values beyond \+-1e\+36.*Rescale X"

# (id, fit arguments, estimator parameters, exception, message regex)
FIT_ERRORS = [
    # -- X: containers and shapes
    ("X-None", dict(X=None), {}, ValueError, "X is None"),
    ("X-empty-list", dict(X=[], y=[]), {}, ValueError, "X is an empty list"),
    ("X-empty-tuple", dict(X=(), y=()), {}, ValueError, "X is an empty list"),
    (
        "X-list-case-of-zero-length",
        dict(X=[np.zeros((2, 0)), X0[1]], y=["a", "b"]),
        {},
        ValueError,
        r"Case 0 of X has zero length \(n_timepoints=0\)",
    ),
    (
        "X-list-of-3d-cases",
        dict(X=[X0[:1], X0[1:3, :, :5]], y=["a", "b"]),
        {},
        ValueError,
        r"must be 1D \(n_timepoints,\) or 2D .* case 0 has shape \(1, 2, 8\)",
    ),
    (
        "X-list-ragged-channels",
        dict(X=[X0[0], X0[1, :1, :5]], y=["a", "b"]),
        {},
        ValueError,
        "same number of channels: case 0 has 2, case 1 has 1",
    ),
    (
        "X-nested-univ-dataframe",
        dict(X=_nested_univ(X0)),
        {},
        ValueError,
        "nested_univ.*skfwp.sktime.*numpy3D",
    ),
    ("X-1d", dict(X=X0[0, 0]), {}, ValueError, "Reshape your data"),
    ("X-4d", dict(X=X0[..., None]), {}, ValueError, r"got an array of shape .* \(4D\)"),
    ("X-0-cases", dict(X=X0[:0], y=Y0[:0]), {}, ValueError, "X has 0 cases"),
    ("X-0-channels", dict(X=X0[:, :0]), {}, ValueError, "X has 0 channels"),
    ("X-0-timepoints-3d", dict(X=X0[:, :, :0]), {}, ValueError, "n_timepoints=0"),
    ("X-0-timepoints-2d", dict(X=X0[:, 0, :0]), {}, ValueError, r"0 feature\(s\)"),
    ("X-all-nan-case", dict(X=_nan_case()), {}, ValueError, r"Case\(s\) \[2\] .* no observed"),
    ("X-all-nan-channel", dict(X=_nan_channel()), {}, ValueError, "NaN in every case"),
    ("X-strings", dict(X=np.full((12, 2, 8), "a")), {}, ValueError, "string"),
    ("X-complex", dict(X=X0 + 1j), {}, ValueError, "Complex data"),
    # -- X: values
    ("X-inf", dict(X=_with(np.inf)), {}, ValueError, "infinity"),
    ("X-minus-inf", dict(X=_with(-np.inf)), {}, ValueError, "infinity"),
    ("X-1e300", dict(X=_with(1e300)), {}, ValueError, _BEYOND),
    ("X-1e37", dict(X=_with(1e37)), {}, ValueError, _BEYOND),
    ("X-minus-1e37", dict(X=_with(-1e37)), {}, ValueError, _BEYOND),
    ("X-float64-max", dict(X=_with(np.finfo(np.float64).max)), {}, ValueError, _BEYOND),
    # -- y
    ("y-None", dict(y=None), {}, ValueError, "requires y"),
    ("y-nan", dict(y=np.r_[np.nan, np.arange(11) % 2]), {}, ValueError, "NaN or infinity"),
    ("y-inf", dict(y=np.r_[np.inf, np.arange(11) % 2]), {}, ValueError, "NaN or infinity"),
    (
        "y-object-nan",
        dict(y=np.array([np.nan, *Y0[1:]], dtype=object)),
        {},
        ValueError,
        "NaN or infinity",
    ),
    ("y-one-class", dict(y=np.zeros(12)), {}, ValueError, "at least 2 classes"),
    ("y-short", dict(y=Y0[:5]), {}, ValueError, r"inconsistent .* len\(X\)=12, len\(y\)=5"),
    ("y-2d", dict(y=np.zeros((12, 2))), {}, ValueError, "1d array"),
    ("y-continuous", dict(y=np.linspace(0, 1, 12)), {}, ValueError, "Unknown label type"),
    (
        "y-mixed-str-and-int",
        dict(y=np.array(["a", 1] * 6, dtype=object)),
        {},
        ValueError,
        r"mixes labels of different types \(number, str\)",
    ),
    # -- sample_weight (cause 3)
    ("sw-scalar-negative", dict(sample_weight=-1), {}, ValueError, "non-negative; it holds -1"),
    ("sw-scalar-zero", dict(sample_weight=0), {}, ValueError, "sums to zero"),
    ("sw-scalar-nan", dict(sample_weight=np.nan), {}, ValueError, "NaN or infinity"),
    ("sw-scalar-inf", dict(sample_weight=np.inf), {}, ValueError, "NaN or infinity"),
    ("sw-scalar-1e300", dict(sample_weight=1e300), {}, ValueError, "beyond float32's range"),
    ("sw-scalar-1e-50", dict(sample_weight=1e-50), {}, ValueError, "rounds to zero"),
    ("sw-scalar-bool", dict(sample_weight=True), {}, ValueError, "not a bool"),
    ("sw-scalar-complex", dict(sample_weight=1j), {}, ValueError, "real numbers, not complex"),
    ("sw-string", dict(sample_weight="a"), {}, ValueError, "array of numbers"),
    ("sw-2d", dict(sample_weight=np.ones((12, 1))), {}, ValueError, r"shape \(12,\)"),
    ("sw-short", dict(sample_weight=np.ones(5)), {}, ValueError, r"shape \(12,\)"),
    (
        "sw-one-negative",
        dict(sample_weight=_with(-2.0, X=np.ones((12, 1, 1)), channel=0, t=0)[:, 0, 0]),
        {},
        ValueError,
        "it holds -2",
    ),
    ("sw-array-1e300", dict(sample_weight=np.full(12, 1e300)), {}, ValueError, "beyond float32"),
    ("sw-array-bool", dict(sample_weight=np.ones(12, bool)), {}, ValueError, "not bool values"),
    # -- class_weight (cause 4)
    ("cw-negative", {}, dict(class_weight={"up": -1.0}), ValueError, r"class_weight\['up'\] is -1"),
    ("cw-nan", {}, dict(class_weight={"up": np.nan}), ValueError, r"\['up'\] is nan; .* finite"),
    ("cw-inf", {}, dict(class_weight={"down": np.inf}), ValueError, r"\['down'\] is inf"),
    ("cw-string", {}, dict(class_weight={"up": "high"}), ValueError, r"\['up'\] is 'high'"),
    ("cw-bool", {}, dict(class_weight={"up": True}), ValueError, r"\['up'\] is True"),
    ("cw-all-zero", {}, dict(class_weight={"up": 0, "down": 0}), ValueError, "sums to zero"),
    (
        "cw-unknown-label",
        {},
        dict(class_weight={"sideways": 1.0}),
        ValueError,
        "'sideways', which is not a class of y",
    ),
    (
        "cw-overflowing",
        {},
        dict(class_weight={"up": 1e300, "down": 1e300}),
        ValueError,
        "beyond float32",
    ),
    # -- parameters: bool is no number (cause 12)
    ("hidden_size-True", {}, dict(hidden_size=True), InvalidParameterError, _NOT_BOOL),
    ("time_channel-True", {}, dict(time_channel=True), InvalidParameterError, _NOT_BOOL),
    ("time_channel-False", {}, dict(time_channel=False), InvalidParameterError, _NOT_BOOL),
    ("max_iter-True", {}, dict(max_iter=True), InvalidParameterError, _NOT_BOOL),
    ("batch_size-True", {}, dict(batch_size=True), InvalidParameterError, _NOT_BOOL),
    ("n_iter_no_change-True", {}, dict(n_iter_no_change=True), InvalidParameterError, _NOT_BOOL),
    ("n_threads-True", {}, dict(n_threads=True), InvalidParameterError, _NOT_BOOL),
    ("random_state-True", {}, dict(random_state=True), InvalidParameterError, _NOT_BOOL),
    ("learning_rate-True", {}, dict(learning_rate_init=True), InvalidParameterError, _NOT_BOOL),
    ("step_size-True", {}, dict(step_size=True), InvalidParameterError, _NOT_BOOL),
    ("max_time-True", {}, dict(max_time=True), InvalidParameterError, _NOT_BOOL),
    ("tol-False", {}, dict(tol=False), InvalidParameterError, _NOT_BOOL),
    # -- parameters: ranges and kinds
    ("hidden_size-0", {}, dict(hidden_size=0), InvalidParameterError, "'hidden_size' parameter"),
    ("max_iter-0", {}, dict(max_iter=0), InvalidParameterError, "'max_iter' parameter"),
    ("batch_size-negative", {}, dict(batch_size=-1), InvalidParameterError, "'batch_size'"),
    ("learning_rate-0", {}, dict(learning_rate_init=0.0), InvalidParameterError, "'learning_"),
    ("learning_rate-nan", {}, dict(learning_rate_init=np.nan), InvalidParameterError, "Got nan"),
    ("alpha-negative", {}, dict(alpha=-1.0), InvalidParameterError, "'alpha' parameter"),
    # -- the recipe's and the windows' parameters
    ("logsig_window-0", {}, dict(logsig_window=0), InvalidParameterError, "'logsig_window'"),
    ("logsig_window-str", {}, dict(logsig_window="big"), InvalidParameterError, "'logsig_window'"),
    ("logsig_window-True", {}, dict(logsig_window=True), InvalidParameterError, _NOT_BOOL),
    ("logsig_depth-4", {}, dict(logsig_depth=4), InvalidParameterError, "'logsig_depth'"),
    ("batch_size-str", {}, dict(batch_size="big"), InvalidParameterError, "'batch_size'"),
    ("dropout-1", {}, dict(observation_dropout=1.0), InvalidParameterError, "'observation_dr"),
    ("time_crop-1", {}, dict(time_crop=1.0), InvalidParameterError, "'time_crop'"),
    ("floor_tol-neg", {}, dict(floor_tol=-0.1), InvalidParameterError, "'floor_tol'"),
    ("loss_window-0", {}, dict(loss_window=0), InvalidParameterError, "'loss_window'"),
    ("smoothing-neg", {}, dict(label_smoothing=-0.1), InvalidParameterError, "'label_smoothing'"),
    ("n_estimators-0", {}, dict(n_estimators=0), InvalidParameterError, "'n_estimators'"),
    ("n_estimators-True", {}, dict(n_estimators=True), InvalidParameterError, _NOT_BOOL),
    ("tol-negative", {}, dict(tol=-1.0), InvalidParameterError, "'tol' parameter"),
    ("val-fraction-1", {}, dict(validation_fraction=1.0), InvalidParameterError, "validation_"),
    ("interpolation-unknown", {}, dict(interpolation="spline"), InvalidParameterError, "interp"),
    ("method-unknown", {}, dict(method="rk9"), InvalidParameterError, "'method' parameter"),
    ("lr_schedule-unknown", {}, dict(lr_schedule="linear"), InvalidParameterError, "'lr_sched"),
    ("bidirectional-str", {}, dict(bidirectional="yes"), InvalidParameterError, "'bidirectio"),
    # -- device and callbacks (cause 13)
    ("device-meta", {}, dict(device="meta"), ValueError, "device='meta' cannot hold"),
    ("device-nonsense", {}, dict(device="nonsense"), ValueError, "is not a torch device"),
    ("device-int", {}, dict(device=5), InvalidParameterError, "'device' parameter"),
    ("callbacks-int", {}, dict(callbacks=[1]), InvalidParameterError, r"callbacks\[0\] is 1"),
    ("callbacks-str", {}, dict(callbacks=["print"]), InvalidParameterError, r"callbacks\[0\]"),
    (
        "callbacks-None-item",
        {},
        dict(callbacks=[print, None]),
        InvalidParameterError,
        r"callbacks\[1\] is None",
    ),
    ("callbacks-a-string", {}, dict(callbacks="abc"), InvalidParameterError, "'callbacks'"),
]


def _fit_args(args):
    return {"X": X0, "y": Y0, **args}


@pytest.mark.parametrize("cls, small", SMALL, ids=ids())
@pytest.mark.parametrize(
    "name, args, params, exc, match", FIT_ERRORS, ids=[case[0] for case in FIT_ERRORS]
)
def test_fit_error(cls, small, name, args, params, exc, match, monkeypatch):
    def fail(*a, **k):
        pytest.fail("heavy work started before the input was refused")

    monkeypatch.setattr(cls, "_new_module", fail)
    monkeypatch.setattr(cls, "_train", fail)
    args = _fit_args(args)
    before = {k: copy.deepcopy(v) for k, v in args.items()}
    clf = cls(**{**small, "max_iter": 1, **params})
    with pytest.raises(exc, match=match):
        clf.fit(**args)
    with pytest.raises(NotFittedError):  # a refused fit leaves nothing behind
        clf.predict(X0)
    for key, value in args.items():  # the caller's arrays are never modified
        if isinstance(value, np.ndarray):
            assert value.dtype == before[key].dtype and value.shape == before[key].shape
            assert list(map(repr, value.ravel())) == list(map(repr, before[key].ravel()))


# -- valid but unusual input to fit, and what it must equal ------------------------------


def _fit(cls, small, X=X0, y=Y0, **kwargs):
    params = {**small, "max_iter": 1, "random_state": 0, **kwargs.pop("params", {})}
    return cls(**params).fit(X, y, **kwargs)


def _same_model(a, b):
    np.testing.assert_array_equal(a.predict_proba(X0), b.predict_proba(X0))


def _answer_scalar_weight(cls, small):  # cause 3: a scalar is validated, then means nothing
    _same_model(_fit(cls, small, sample_weight=2.0), _fit(cls, small))


def _answer_unit_class_weight(cls, small):
    _same_model(_fit(cls, small, params=dict(class_weight={"up": 1, "down": 1})), _fit(cls, small))


def _answer_global_rngs(cls, small):  # cause 16
    np_state, torch_state = np.random.get_state(), torch.get_rng_state()
    _fit(cls, small, params=dict(random_state=None))
    after = np.random.get_state()
    assert after[1].tolist() == np_state[1].tolist() and after[2:] == np_state[2:]
    assert torch.equal(torch.get_rng_state(), torch_state)


def _answer_int_X(cls, small):
    X_int = np.round(X0 * 10).astype(np.int64)
    _same_model(_fit(cls, small, X=X_int), _fit(cls, small, X=X_int.astype(float)))


def _answer_list_X(cls, small):
    _same_model(_fit(cls, small, X=list(X0)), _fit(cls, small))


def _answer_float32_X(cls, small):
    X32 = X0.astype(np.float32)
    _same_model(_fit(cls, small, X=X32), _fit(cls, small, X=X32.astype(np.float64)))


def _answer_object_string_labels(cls, small):  # cause 9's labels, fitted and predicted
    model = _fit(cls, small, y=pd.Series(list(Y0), dtype=object))
    assert model.classes_.dtype == object and list(model.classes_) == ["down", "up"]
    np.testing.assert_array_equal(model.predict(X0), _fit(cls, small).predict(X0))


FIT_ANSWERS = [
    ("sample-weight-scalar-2-equals-none", _answer_scalar_weight),
    ("class-weight-ones-equals-none", _answer_unit_class_weight),
    ("random-state-none-leaves-global-rngs", _answer_global_rngs),
    ("X-int-equals-float", _answer_int_X),
    ("X-list-equals-3d", _answer_list_X),
    ("X-float32-equals-float64", _answer_float32_X),
    ("y-pandas-object-strings", _answer_object_string_labels),
]


@pytest.mark.parametrize("cls, small", SMALL, ids=ids())
@pytest.mark.parametrize("name, check", FIT_ANSWERS, ids=[case[0] for case in FIT_ANSWERS])
def test_fit_answer(cls, small, name, check):
    check(cls, small)


# -- a fitted model per classifier ------------------------------------------------------


@pytest.fixture(scope="module", params=SMALL, ids=ids())
def fitted(request):
    cls, small = request.param
    return cls(**small, max_iter=2, learning_rate_init=1e-2, random_state=0).fit(X0, Y0)


def _error(exc, match):
    def check(clf, X):
        with pytest.raises(exc, match=match):
            clf.predict_proba(X)

    return check


def _equals(reference, atol=0.0):
    """The answer on X equals the answer on ``reference(X)``, the plain 3D float array."""

    def check(clf, X):
        expected = clf.predict_proba(reference())
        got = clf.predict_proba(X)
        np.testing.assert_allclose(got, expected, rtol=0, atol=atol)

    return check


def _valid_proba(clf, X):
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X), clf.classes_[proba.argmax(axis=1)])


def _ragged_in_batch(clf, X):
    got = clf.predict_proba(X)
    for i, case in enumerate(X):
        np.testing.assert_allclose(got[i], clf.predict_proba(case[None])[0], atol=1e-5)


def _untouched(clf, X):
    before = X.copy()
    clf.predict_proba(X)
    np.testing.assert_array_equal(X, before)


def _log_and_decision(clf, X):
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(np.exp(clf.predict_log_proba(X)), proba, rtol=1e-6, atol=1e-12)
    decision = clf.decision_function(X)
    assert decision.shape == (len(X),)
    np.testing.assert_array_equal(decision > 0, proba[:, 1] > proba[:, 0])


def _patched_forward(transform):
    """Check that runs the model with ``transform(forward, module, path, options)``."""

    def check(clf, X, monkeypatch, exc, match):
        module_cls = type(clf.module_)
        forward = module_cls.forward
        monkeypatch.setattr(
            module_cls, "forward", lambda m, path, **o: transform(forward, m, path, o)
        )
        with pytest.raises(exc, match=match):
            clf.predict(X)

    return check


def _nan_logits_for_case_1(forward, module, path, options):
    logits = forward(module, path, **options)
    logits[1:2] = float("nan")
    return logits


def _underflow_on_big_values(forward, module, path, options):
    forward_path = path[0] if isinstance(path, tuple) else path  # a bidirectional pair
    if forward_path.coeffs.abs().max() > 1e10:
        raise AssertionError("underflow in dt 0.0")
    return forward(module, path, **options)


def _readonly():
    X = X0.copy()
    X.flags.writeable = False
    return X


def _gaps():
    X = X0.copy()
    X[:, :, 2:5:2] = np.nan
    return X


def _padded():
    return np.concatenate([X0, np.full((12, 2, 5), np.nan)], axis=2)


_RAGGED = [X0[i, :, : 2 + i % 6] for i in range(12)]

# (id, X, check(clf, X)); a check taking 5 arguments patches the module (monkeypatch)
PREDICT_CASES = [
    ("empty-list", [], _error(ValueError, "X is an empty list")),
    ("None", None, _error(ValueError, "X is None")),
    ("nested-univ", _nested_univ(X0), _error(ValueError, "nested_univ")),
    ("1d", X0[0, 0], _error(ValueError, "Reshape your data")),
    ("4d", X0[..., None], _error(ValueError, r"\(4D\)")),
    ("0-cases", X0[:0], _error(ValueError, "0 cases")),
    ("0-timepoints", X0[:, :, :0], _error(ValueError, "n_timepoints=0")),
    ("all-nan-case", _nan_case(), _error(ValueError, r"Case\(s\) \[2\] .* no observed")),
    ("strings", np.full((3, 2, 8), "x"), _error(ValueError, "string")),
    ("complex", X0 + 1j, _error(ValueError, "Complex data")),
    ("inf", _with(np.inf), _error(ValueError, "infinity")),
    ("1e37", _with(1e37), _error(ValueError, _BEYOND)),
    ("1e300", _with(-1e300), _error(ValueError, _BEYOND)),
    ("3-channels", np.zeros((2, 3, 8)), _error(ValueError, "3 channels, but .* fitted with 2")),
    ("2d-one-channel", X0[:, 0], _error(ValueError, "1 channels, but .* fitted with 2")),
    (
        "dataframe-one-channel",
        pd.DataFrame(X0[:, 0]),
        _error(ValueError, "1 channels, but .* fitted with 2"),
    ),
    (
        "list-zero-length-case",
        [X0[0], np.zeros((2, 0))],
        _error(ValueError, "Case 1 of X has zero length"),
    ),
    (
        "list-ragged-channels",
        [X0[0], X0[1, :1, :4]],
        _error(ValueError, "same number of channels"),
    ),
    (
        "nonfinite-logits",
        X0,
        _patched_forward(_nan_logits_for_case_1),
    ),
    (
        "solver-underflow-one-case",
        _with(1e20, case=1),
        _patched_forward(_underflow_on_big_values),
    ),
    ("float32", X0.astype(np.float32), _equals(lambda: X0.astype(np.float32).astype(float))),
    ("int64", np.round(X0 * 10).astype(int), _equals(lambda: np.round(X0 * 10))),
    ("list-of-cases", list(X0), _equals(lambda: X0)),
    ("tuple-of-cases", tuple(X0), _equals(lambda: X0)),
    ("read-only", _readonly(), _equals(lambda: X0)),
    ("fortran-order", np.asfortranarray(X0), _equals(lambda: X0)),
    ("reversed-view", X0[::-1][::-1], _equals(lambda: X0)),
    ("trailing-nan-padding", _padded(), _equals(lambda: X0, atol=1e-5)),
    ("ragged-list", _RAGGED, _ragged_in_batch),
    ("single-case", X0[:1], _equals(lambda: X0[:1])),
    ("one-timepoint", X0[:, :, :1], _valid_proba),
    ("tiny-values", X0 * 1e-300, _valid_proba),
    ("interior-gaps", _gaps(), _valid_proba),
    ("nan-gaps-untouched", _gaps(), _untouched),
    ("log-proba-and-decision", X0, _log_and_decision),
]


@pytest.mark.parametrize("name, X, check", PREDICT_CASES, ids=[c[0] for c in PREDICT_CASES])
def test_predict(fitted, name, X, check, monkeypatch):
    if check.__code__.co_argcount == 5:
        exc_match = (ValueError, r"not finite for case\(s\) \[1\] of X.*Rescale X")
        check(fitted, X, monkeypatch, *exc_match)
    else:
        check(fitted, X)


def test_predict_before_fit(fitted):
    with pytest.raises(NotFittedError, match="not fitted"):
        clone(fitted).predict(X0)


# -- model files crafted by an attacker who re-signs them -------------------------------


@pytest.fixture(scope="module")
def saved(fitted, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / f"{type(fitted).__name__}.pt"
    fitted.save(path)
    return fitted, path, torch.load(path, weights_only=True)


def _resign(blob):
    meta = {k: v for k, v in blob.items() if k not in ("state_dict", "sha256")}
    blob["sha256"] = _digest(meta, blob["state_dict"])
    return blob


def _json_edit(key, edit):
    """A crafted blob: ``edit`` changes the decoded JSON entry ``key`` in place."""

    def craft(blob):
        value = json.loads(blob[key])
        edit(value)
        blob[key] = json.dumps(value)
        return _resign(blob)

    return craft


def _path_attr(name, value):
    return _json_edit("fitted", lambda f: f["input_path_"].__setitem__(name, value))


def _entry(key, value, resign=True):
    def craft(blob):
        blob[key] = value
        return _resign(blob) if resign else blob

    return craft


def _tensor(edit, resign=True):
    """A crafted blob: ``edit(state, first_key)`` changes the state_dict."""

    def craft(blob):
        state = blob["state_dict"]
        edit(state, next(iter(state)))
        return _resign(blob) if resign else blob

    return craft


def _set(key, value):
    return lambda state, first: state.__setitem__(key or first, value)


def _deep(n=100_000):
    return "[" * n + "]" * n


def _other_class(blob):
    others = [c.__name__ for c, _ in SMALL if c.__name__ != blob["estimator"]]
    blob["estimator"] = others[0]
    return _resign(blob)


_SHAPES = "does not fit its parameters"
_DIGEST = "failed its integrity check"

# (id, craft(blob) -> blob, message regex); load must raise a ValueError matching it
LOAD_CASES = [
    # memory bombs (cause 6)
    (
        "stride0-expanded-1GiB",
        _tensor(lambda s, k: s.__setitem__(k, torch.zeros(1).expand(2**28)), resign=False),
        "not a compact view of its storage",
    ),
    (
        "stride0-same-shape",
        _tensor(lambda s, k: s.__setitem__(k, torch.zeros(1).expand(s[k].shape)), resign=False),
        "not a compact view of its storage",
    ),
    (
        "shared-storage",
        _tensor(lambda s, k: s.__setitem__("evil", s[k]), resign=False),
        "share storage",
    ),
    ("hidden-size-2**16", _json_edit("params", lambda p: p.update(hidden_size=2**16)), _SHAPES),
    (
        "n-path-channels-2**29",
        _path_attr("n_path_channels_", 2**29),
        "n_path_channels_=536870912",
    ),
    (
        "classes-dtype-U500000000",
        _json_edit("classes", lambda c: c.update(dtype="<U500000000")),
        "classes array of 4000000000 bytes",
    ),
    # crafted structure (cause 7)
    ("estimator-other-name", _entry("estimator", "BaseEstimator"), "unknown estimator"),
    ("estimator-non-string", _entry("estimator", 5), "'estimator' entry"),
    ("estimator-list", _entry("estimator", ["a"]), "'estimator' entry"),
    ("estimator-other-skfwp-class", _other_class, "does not hold the parameters of"),
    ("deep-json-params", _entry("params", _deep()), "RecursionError"),
    ("deep-json-fitted", _entry("fitted", _deep()), "RecursionError"),
    ("deep-json-classes", _entry("classes", _deep()), "RecursionError"),
    ("params-not-a-dict", _entry("params", "[1, 2]"), "does not hold the parameters"),
    ("params-unknown-key", _json_edit("params", lambda p: p.update(evil=1)), "parameters of"),
    (
        "params-negative-hidden-size",
        _json_edit("params", lambda p: p.update(hidden_size=-3)),
        "invalid parameters: The 'hidden_size' parameter",
    ),
    (
        "params-bool-hidden-size",
        _json_edit("params", lambda p: p.update(hidden_size=True)),
        "invalid parameters: .*not a bool",
    ),
    (
        "params-wrong-type",
        _json_edit("params", lambda p: p.update(max_iter="many")),
        "invalid parameters: The 'max_iter' parameter",
    ),
    (
        "negative-channel-counts",
        _json_edit(
            "fitted",
            lambda f: (f.update(n_features_in_=-1), f["input_path_"].update(n_channels_in_=-1)),
        ),
        "invalid or inconsistent number of input channels",
    ),
    (
        "float-channel-count",
        _json_edit("fitted", lambda f: f.update(n_features_in_=2.0)),
        "invalid or inconsistent number of input channels",
    ),
    ("n-iter-negative", _json_edit("fitted", lambda f: f.update(n_iter_=-1)), "wrong types"),
    ("history-not-a-list", _json_edit("fitted", lambda f: f.update(history_=1)), "wrong types"),
    (
        "fitted-extra-attribute",
        _json_edit("fitted", lambda f: f.update(predict=1)),
        "holds fitted attributes",
    ),
    (
        "fitted-no-input-path",
        _json_edit("fitted", lambda f: f.pop("input_path_")),
        "lacks its fitted input path",
    ),
    ("increment-rms-negative", _path_attr("increment_rms_", [-1.0] * 3), "increment_rms_"),
    ("increment-rms-short", _path_attr("increment_rms_", [1.0]), "increment_rms_ that are not"),
    ("time-scale-zero", _path_attr("time_scale_", 0.0), "time_scale_=0.0"),
    ("count-scale-nan", _path_attr("count_scale_", float("nan")), "count_scale_=nan"),
    (
        "path-extra-attribute",
        _path_attr("evil_", 1),
        "declares input path attributes",
    ),
    (
        "path-bad-interpolation",
        _path_attr("interpolation", "evil"),
        "invalid input path setting: interpolation='evil'",
    ),
    (
        "path-bad-logsig-depth",
        _path_attr("logsig_depth", 9),
        "invalid input path setting: logsig_depth=9",
    ),
    (
        "path-logsig-scale-wrong-length",
        _path_attr("logsig_scale_", [1.0]),
        "logsig_scale_ that are not 0 positive numbers",
    ),
    (
        "classes-object-ints",
        _json_edit("classes", lambda c: c.update(values=[0, 1], dtype="|O")),
        "object-dtype classes that are not all strings",
    ),
    (
        "classes-void-dtype",
        _json_edit("classes", lambda c: c.update(dtype="|V8")),
        "unsupported dtype",
    ),
    (
        "classes-unsorted",
        _json_edit("classes", lambda c: c.update(values=c["values"][::-1])),
        "sorted, distinct labels",
    ),
    (
        "classes-duplicated",
        _json_edit("classes", lambda c: c.update(values=c["values"][:1] * 2)),
        "sorted, distinct labels",
    ),
    (
        "classes-one",
        _json_edit("classes", lambda c: c.update(values=c["values"][:1])),
        "2 or more",
    ),
    (
        "classes-not-a-list",
        _json_edit("classes", lambda c: c.update(values="ab")),
        "not a list of labels",
    ),
    ("extra-tensor", _tensor(_set("evil", torch.zeros(3))), r"extra tensors \['evil'\]"),
    ("missing-tensor", _tensor(lambda s, k: s.pop(k)), "missing"),
    ("tensor-float64", _tensor(lambda s, k: s.__setitem__(k, s[k].double())), _SHAPES),
    ("tensor-wrong-shape", _tensor(lambda s, k: s.__setitem__(k, s[k][..., :1].clone())), _SHAPES),
    (
        "tensor-sparse",
        _tensor(lambda s, k: s.__setitem__(k, torch.eye(2).to_sparse()), resign=False),
        "unsupported kind",
    ),
    (
        "tensor-complex",
        _tensor(lambda s, k: s.__setitem__(k, s[k].to(torch.complex64)), resign=False),
        "unsupported kind",
    ),
    ("state-dict-a-list", _entry("state_dict", [1, 2], resign=False), "no state_dict"),
    ("blob-a-list", lambda blob: [1, 2], "is not a skfwp model file"),
    ("format-other", _entry("format", "pickle"), "is not a skfwp model file"),
    ("format-version-bool", _entry("format_version", True), r"no valid format version \(True\)"),
    ("format-version-0", _entry("format_version", 0), r"no valid format version \(0\)"),
    ("format-version-newer", _entry("format_version", FORMAT_VERSION + 1), "newer"),
    ("sha256-missing", lambda blob: {k: v for k, v in blob.items() if k != "sha256"}, "sha256"),
    # not re-signed: the digest catches what was changed
    (
        "weights-changed-stale-digest",
        _tensor(lambda s, k: s.__setitem__(k, s[k] + 1), resign=False),
        _DIGEST,
    ),
    ("params-changed-stale-digest", _entry("params", "{}", resign=False), _DIGEST),
]


@pytest.mark.parametrize("name, craft, match", LOAD_CASES, ids=[c[0] for c in LOAD_CASES])
def test_load_crafted_file(saved, tmp_path, name, craft, match):
    _, _, blob = saved
    crafted = craft(copy.deepcopy(blob))
    torch.save(crafted, tmp_path / "crafted.pt")
    with pytest.raises(ValueError, match=match):
        skfwp.load(tmp_path / "crafted.pt")


def _bytes_edit(edit):
    def check(clf, path, tmp_path):
        (tmp_path / "edited.pt").write_bytes(edit(path.read_bytes(), clf))
        with pytest.raises(ValueError, match=r"truncated or not a model|integrity"):
            skfwp.load(tmp_path / "edited.pt")

    return check


def _flip_a_weight_bit(data, clf):
    """One bit of the largest tensor's bytes, found verbatim in the (uncompressed) file."""
    largest = max(clf.module_.state_dict().values(), key=torch.Tensor.numel)
    pattern = largest.detach().cpu().contiguous().numpy().tobytes()
    pos = data.find(pattern)
    assert pos >= 0
    data = bytearray(data)
    data[pos + len(pattern) // 2] ^= 0x10
    return bytes(data)


def _load_expected(clf, path, tmp_path):
    loaded = skfwp.load(path, expected_class=type(clf))
    np.testing.assert_array_equal(loaded.predict_proba(X0), clf.predict_proba(X0))
    either = skfwp.load(path, expected_class=(type(clf), skfwp.GatedNODEClassifier))
    assert type(either) is type(clf)


def _load_unexpected(clf, path, tmp_path):
    other = next(c for c, _ in SMALL if c is not type(clf))
    with pytest.raises(ValueError, match=f"holds a {type(clf).__name__}, not the expected"):
        skfwp.load(path, expected_class=other)


def _load_expected_not_a_class(clf, path, tmp_path):
    with pytest.raises(TypeError, match="expected_class must be a skfwp estimator class"):
        skfwp.load(path, expected_class="GatedNODEClassifier")


def _load_on_meta(clf, path, tmp_path):
    with pytest.raises(ValueError, match="device='meta' cannot hold"):
        skfwp.load(path, device="meta")


def _round_trip_pickled(clf, path, tmp_path):
    restored = pickle.loads(pickle.dumps(skfwp.load(path)))
    np.testing.assert_array_equal(restored.predict_proba(X0), clf.predict_proba(X0))


def _older_file_missing_a_parameter(clf, path, tmp_path):
    """A parameter added after the file was written takes its default."""
    blob = torch.load(path, weights_only=True)
    blob = _json_edit("params", lambda p: p.pop("verbose"))(blob)
    torch.save(blob, tmp_path / "older.pt")
    loaded = skfwp.load(tmp_path / "older.pt")
    assert loaded.verbose == 0
    np.testing.assert_array_equal(loaded.predict_proba(X0), clf.predict_proba(X0))


LOAD_USES = [
    ("truncated", _bytes_edit(lambda d, clf: d[: len(d) // 2])),
    ("empty-file", _bytes_edit(lambda d, clf: b"")),
    ("bit-flip", _bytes_edit(_flip_a_weight_bit)),
    ("expected-class", _load_expected),
    ("unexpected-class", _load_unexpected),
    ("expected-class-not-a-class", _load_expected_not_a_class),
    ("device-meta", _load_on_meta),
    ("loaded-then-pickled", _round_trip_pickled),
    ("older-file-missing-a-parameter", _older_file_missing_a_parameter),
]


@pytest.mark.parametrize("name, check", LOAD_USES, ids=[c[0] for c in LOAD_USES])
def test_load_use(saved, tmp_path, name, check):
    clf, path, _ = saved
    check(clf, path, tmp_path)
