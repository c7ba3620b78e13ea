"""The data layer: validation errors, input formats and the input path X(s)."""

import numpy as np
import pandas as pd
import pytest
import torch
import torchcde
from estimators import SMALL, ids

from skfwp._validation import check_X
from skfwp.path import InputPath, fill_gaps
from skfwp.preprocessing import ChannelStandardScaler

rng = np.random.default_rng(0)
X3 = rng.normal(size=(6, 2, 10))
Y = np.array(["a", "b"] * 3)


def _nan_case():
    X = X3.copy()
    X[2] = np.nan
    return X


def _ragged_channels():
    return [rng.normal(size=(2, 5)), rng.normal(size=(3, 6))]


def _nonincreasing_time():
    X = X3.copy()
    X[:, 0] = np.arange(10)
    X[1, 0, 4] = 2.0
    return X


def _infinite_time():
    X = X3.copy()
    X[:, 0] = np.arange(10)
    X[3, 0, 5] = np.inf
    return X


def _all_nan_channel():
    X = X3.copy()
    X[:, 1] = np.nan
    return X


# (name, fit kwargs, estimator params, exception, message fragment)
BAD_FIT = [
    ("1d X", dict(X=np.zeros(10), y=Y), {}, ValueError, "Reshape your data"),
    ("4d X", dict(X=np.zeros((6, 2, 3, 4)), y=Y), {}, ValueError, "4D"),
    ("empty X", dict(X=np.zeros((0, 2, 5)), y=Y[:0]), {}, ValueError, "0 cases"),
    ("zero-length series", dict(X=np.zeros((6, 2, 0)), y=Y), {}, ValueError, "n_timepoints=0"),
    ("empty case", dict(X=_nan_case(), y=Y), {}, ValueError, "no observed"),
    (
        "strings in X",
        dict(X=np.array([["a", "b"]] * 6, dtype=object), y=Y),
        {},
        ValueError,
        "string",
    ),
    ("complex X", dict(X=X3 + 1j, y=Y), {}, ValueError, "Complex data"),
    ("inf in X", dict(X=np.where(X3 > 1.5, np.inf, X3), y=Y), {}, ValueError, "infinity"),
    (
        "ragged channel counts",
        dict(X=_ragged_channels(), y=Y[:2]),
        {},
        ValueError,
        "same number of channels",
    ),
    ("all-NaN channel", dict(X=_all_nan_channel(), y=Y), {}, ValueError, "NaN in every case"),
    ("NaN label", dict(X=X3, y=np.array([0, 1, np.nan, 0, 1, 0])), {}, ValueError, "NaN"),
    ("inf label", dict(X=X3, y=np.array([0, 1, np.inf, 0, 1, 0])), {}, ValueError, "infinity"),
    ("one class", dict(X=X3, y=np.zeros(6)), {}, ValueError, "class"),
    ("len mismatch", dict(X=X3, y=Y[:5]), {}, ValueError, "inconsistent"),
    ("2d y", dict(X=X3, y=np.zeros((6, 2))), {}, ValueError, "1d array"),
    ("y None", dict(X=X3, y=None), {}, ValueError, "requires y"),
    (
        "sample_weight length",
        dict(X=X3, y=Y, sample_weight=np.ones(4)),
        {},
        ValueError,
        "sample_weight",
    ),
    ("unknown option", dict(X=X3, y=Y), {"interpolation": "spline"}, ValueError, "interpolation"),
    ("unknown method", dict(X=X3, y=Y), {"method": "rk9"}, ValueError, "method"),
    ("step_size 0", dict(X=X3, y=Y), {"step_size": 0.0}, ValueError, "step_size"),
    ("batch_size 0", dict(X=X3, y=Y), {"batch_size": 0}, ValueError, "batch_size"),
    (
        "time channel non-increasing",
        dict(X=_nonincreasing_time(), y=Y),
        {"time_channel": 0},
        ValueError,
        "strictly increasing",
    ),
    (
        "time channel infinite",
        dict(X=_infinite_time(), y=Y),
        {"time_channel": 0},
        ValueError,
        "infinity",
    ),
    ("time channel out of range", dict(X=X3, y=Y), {"time_channel": 5}, ValueError, "out of range"),
    ("cuda without cuda", dict(X=X3, y=Y), {"device": "cuda"}, ValueError, "CUDA is not available"),
]
if torch.cuda.is_available():  # the last case only applies without CUDA
    BAD_FIT = BAD_FIT[:-1]


@pytest.mark.parametrize("cls, small", SMALL, ids=ids())
@pytest.mark.parametrize(
    "name, fit_args, params, exc, match", BAD_FIT, ids=[case[0] for case in BAD_FIT]
)
def test_bad_input_raises_named_error_before_training(
    cls, small, name, fit_args, params, exc, match, monkeypatch
):
    clf = cls(**{**small, **params, "max_iter": 1})
    monkeypatch.setattr(cls, "_train", lambda *a, **k: pytest.fail("training started"))
    copies = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in fit_args.items()}
    with pytest.raises(exc, match=match):
        clf.fit(**fit_args)
    for key, value in fit_args.items():  # the caller's arrays are never modified
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, copies[key])


@pytest.mark.parametrize("cls, small", SMALL, ids=ids())
def test_predict_errors(cls, small):
    clf = cls(**small, max_iter=1, random_state=0)
    with pytest.raises(Exception, match="not fitted"):
        clf.predict(X3)
    clf.fit(X3, Y)
    with pytest.raises(ValueError, match=r"3 channels.*fitted with 2"):
        clf.predict(rng.normal(size=(2, 3, 10)))


@pytest.mark.parametrize("cls, small", SMALL, ids=ids())
def test_hidden_size_not_divisible_by_heads(cls, small):
    if "n_heads" not in cls().get_params():
        pytest.skip("the model has no heads")
    with pytest.raises(ValueError, match="divisible"):
        cls(**{**small, "hidden_size": 6, "n_heads": 4}).fit(X3, Y)


@pytest.mark.parametrize("cls, small", SMALL, ids=ids())
def test_fit_leaves_caller_arrays_untouched(cls, small):
    X = X3.copy()
    X[0, 0, 3] = np.nan
    X_list = [X[i, :, : 5 + i] for i in range(6)]
    before = [x.copy() for x in X_list]
    y = Y.copy()
    cls(**small, max_iter=2, random_state=0).fit(X_list, y)
    for a, b in zip(X_list, before, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(y, Y)


def test_formats_agree_2d_3d_list_dataframe():
    X2 = X3[:, 0, :]
    a, la = check_X(X2)
    b, lb = check_X(X3[:, :1, :])
    c, lc = check_X(list(X3[:, :1, :]))
    d, ld = check_X(pd.DataFrame(X2))
    for other, lo in [(b, lb), (c, lc), (d, ld)]:
        np.testing.assert_array_equal(a, other)
        np.testing.assert_array_equal(la, lo)


def test_lengths_from_trailing_nan_and_lists():
    cases = [rng.normal(size=(2, n)) for n in (3, 7, 5)]
    X, lengths = check_X(cases)
    assert X.shape == (3, 2, 7) and lengths.tolist() == [3, 7, 5]
    assert np.isnan(X[0, :, 3:]).all()


def test_fill_gaps_matches_torchcde_nan_handling():
    x = rng.normal(size=(4, 3, 11))
    x[rng.random(x.shape) < 0.35] = np.nan
    x[:, :, 0] = rng.normal(size=(4, 3))  # torchcde needs no leading gap to compare
    ours = fill_gaps(x)
    theirs = torchcde.linear_interpolation_coeffs(torch.tensor(x.transpose(0, 2, 1)))
    np.testing.assert_allclose(ours, theirs.numpy().transpose(0, 2, 1), atol=1e-12)


def test_fill_gaps_edges():
    x = np.array([[np.nan, 1.0, np.nan, 3.0, np.nan], [np.nan] * 5])
    np.testing.assert_array_equal(fill_gaps(x), [[1, 1, 2, 3, 3], [0, 0, 0, 0, 0]])


@pytest.mark.parametrize("interpolation", ["hermite", "linear", "rectilinear"])
def test_path_values_at_ends_equal_last_observation(interpolation):
    X = rng.normal(size=(3, 2, 8))
    X[0, :, 5:] = np.nan
    arr, lengths = check_X(X)
    ip = InputPath(interpolation=interpolation, observation_intensity=True).fit(arr, lengths)
    data = ip.transform(arr, lengths, dtype=torch.float64)
    path = data.batch([0, 1, 2])
    values = path.evaluate_at_ends().numpy()
    # channels: time, 2 intensities, 2 data channels
    np.testing.assert_allclose(values[:, 3:], arr[np.arange(3), :, lengths - 1], atol=1e-12)
    np.testing.assert_allclose(values[:, 0], (lengths - 1) / ip.time_scale_, atol=1e-12)
    counts = np.repeat(lengths[:, None] / ip.count_scale_, 2, axis=1)
    np.testing.assert_allclose(values[:, 1:3], counts, atol=1e-12)
    # per-case readouts agree with torchcde's own evaluation at each case's end
    for i, end in enumerate(path.ends.tolist()):
        np.testing.assert_allclose(values[i], path.evaluate(float(end))[i].numpy(), atol=1e-12)
        np.testing.assert_allclose(
            path.derivative_at_ends()[i].numpy(),
            path.derivative(float(end))[i].numpy(),
            atol=1e-12,
        )


def test_increment_rms_is_the_rms_of_steps_between_observations():
    """Per path channel: gaps filled, steps past a case's length ignored, 1.0 if constant."""
    X = np.array(
        [
            [[0.0, 1.0, 3.0], [5.0, 5.0, 5.0]],
            [[2.0, 2.0, np.nan], [5.0, 5.0, np.nan]],  # length 2: one step
            [[0.0, np.nan, 2.0], [5.0, np.nan, 5.0]],  # gaps filled: steps 1, 1 and 0, 0
        ]
    )
    arr, lengths = check_X(X)
    ip = InputPath().fit(arr, lengths)
    # time: index / time_scale_ (2), every step 0.5; channel 0: steps 1, 2 | 0 | 1, 1
    np.testing.assert_allclose(ip.increment_rms_, [0.5, np.sqrt(7 / 5), 1.0])


@pytest.mark.parametrize("interpolation", ["hermite", "rectilinear"])
def test_fit_transform_equals_fit_then_transform(interpolation):
    X = rng.normal(size=(3, 2, 6))
    X[1, :, 4:] = np.nan
    X[2, 0, 2] = np.nan
    arr, lengths = check_X(X)
    once = InputPath(interpolation=interpolation, observation_intensity=True)
    data = once.fit_transform(arr, lengths)
    twice = InputPath(interpolation=interpolation, observation_intensity=True).fit(arr, lengths)
    expected = twice.transform(arr, lengths)
    torch.testing.assert_close(data.coeffs, expected.coeffs, rtol=0, atol=0)
    torch.testing.assert_close(data.ends, expected.ends)
    assert once.increment_rms_ == twice.increment_rms_


def test_time_channel_becomes_channel_zero():
    X = rng.normal(size=(2, 2, 5))
    X[:, 0] = [[10, 11, 13, 16, 20], [0, 1, 2, 3, 4]]
    arr, lengths = check_X(X)
    ip = InputPath(time_channel=0).fit(arr, lengths)
    values = ip.transform_values(arr, lengths)
    assert ip.time_scale_ == 10.0
    np.testing.assert_allclose(values[0, :, 0], [0, 0.1, 0.3, 0.6, 1.0])
    np.testing.assert_allclose(values[:, :, 1], arr[:, 1])


def test_hermite_path_is_causal():
    """Changing a future observation leaves the path before it unchanged."""
    X = rng.normal(size=(1, 1, 10))
    arr, lengths = check_X(X)
    ip = InputPath().fit(arr, lengths)
    before = ip.transform(arr, lengths, dtype=torch.float64).batch([0])
    arr2 = arr.copy()
    arr2[0, 0, 7] += 5.0
    after = ip.transform(arr2, lengths, dtype=torch.float64).batch([0])
    s = torch.linspace(0, 6, 25, dtype=torch.float64)
    torch.testing.assert_close(before.evaluate(s), after.evaluate(s))
    assert not torch.allclose(before.evaluate(torch.tensor(6.5)), after.evaluate(6.5))


def test_channel_scaler_nan_aware_and_formats():
    X = rng.normal(loc=3.0, scale=2.0, size=(5, 2, 9))
    X[0, 1, 2] = np.nan
    scaler = ChannelStandardScaler().fit(X)
    Xt = scaler.transform(X)
    np.testing.assert_allclose(np.nanmean(Xt, axis=(0, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(np.nanstd(Xt, axis=(0, 2)), 1, atol=1e-12)
    assert np.isnan(Xt[0, 1, 2])
    cases = [X[i, :, : 4 + i] for i in range(5)]
    out = scaler.transform(cases)
    assert [c.shape for c in out] == [c.shape for c in cases]
    np.testing.assert_allclose(scaler.inverse_transform(out)[2], cases[2])
