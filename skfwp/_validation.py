"""Input validation shared by every skfwp estimator.

Everything here is numpy in, numpy out, and raises before any heavy work. The
caller's arrays are never written to: every function returns a fresh array.

Accepted ``X``:

- ``ndarray`` (or anything ``np.asarray`` accepts, e.g. a pandas DataFrame) of shape
  ``(n_cases, n_channels, n_timepoints)``;
- 2D ``(n_cases, n_timepoints)``: one channel;
- a list of ``(n_channels, n_timepoints_i)`` arrays (1D arrays are one channel) of
  unequal length.

NaN marks an unobserved value. A case's length is one plus the index of its last
position where any channel is observed, so trailing all-NaN positions are padding.
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, column_or_1d

__all__ = [
    "FLOAT32_LIMIT",
    "check_X",
    "check_float32_range",
    "check_regression_y",
    "check_sample_weight",
    "check_y",
    "resolve_device",
]

#: The largest absolute input value the models accept. They compute in float32 (largest
#: value ~3.4e38), and the spline coefficients of the path are differences and small
#: multiples of the values, so inputs stay 100 times below float32's limit.
FLOAT32_LIMIT = 1e36
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _as_float_array(a, *, what, min_features=1):
    """``check_array`` with the settings of a time series value array."""
    return check_array(
        a,
        dtype=np.float64,
        ensure_all_finite="allow-nan",
        allow_nd=True,
        ensure_2d=False,
        ensure_min_samples=0,
        ensure_min_features=min_features,
        input_name=what,
        copy=True,
    )


def _stack_ragged(cases):
    """List of ``(n_channels, n_timepoints_i)`` arrays -> NaN-padded 3D array."""
    if len(cases) == 0:
        raise ValueError("X is an empty list: at least one case is required.")
    arrays = []
    for i, case in enumerate(cases):
        a = _as_float_array(case, what=f"X[{i}]", min_features=0)  # zero length: see below
        if a.ndim == 1:
            a = a[None, :]
        if a.ndim != 2:
            raise ValueError(
                f"Each case of a list X must be 1D (n_timepoints,) or 2D "
                f"(n_channels, n_timepoints); case {i} has shape {a.shape}."
            )
        if arrays and a.shape[0] != arrays[0].shape[0]:
            raise ValueError(
                f"All cases must have the same number of channels: case 0 has "
                f"{arrays[0].shape[0]}, case {i} has {a.shape[0]}."
            )
        if a.shape[1] == 0:
            raise ValueError(f"Case {i} of X has zero length (n_timepoints=0).")
        arrays.append(a)
    n_channels = arrays[0].shape[0]
    n_timepoints = max(a.shape[1] for a in arrays)
    out = np.full((len(arrays), n_channels, n_timepoints), np.nan)
    for i, a in enumerate(arrays):
        out[i, :, : a.shape[1]] = a
    return out


def _refuse_nested_dataframe(X):
    """An sktime ``nested_univ`` DataFrame (a series in each cell) gets a clear error."""
    if not (hasattr(X, "iloc") and hasattr(X, "columns") and X.ndim == 2 and X.size):
        return
    first = X.iloc[0, 0]
    if hasattr(first, "__len__") and not isinstance(first, (str, bytes)):
        raise ValueError(
            "X is a DataFrame with a series in each cell (sktime's nested_univ format); "
            "the scikit-learn estimators take numpy arrays. Use the sktime adapters in "
            "skfwp.sktime, or convert X to a 3D array first, e.g. "
            "sktime.datatypes.convert_to(X, to_type='numpy3D')."
        )


def check_float32_range(X):
    """Refuse a validated ``X`` holding values beyond :data:`FLOAT32_LIMIT`, naming the cases."""
    with np.errstate(invalid="ignore"):
        too_big = np.abs(X) > FLOAT32_LIMIT  # NaN compares False
    if too_big.any():
        cases = np.flatnonzero(too_big.any(axis=(1, 2)))
        raise ValueError(
            f"Case(s) {cases[:10].tolist()} of X hold values beyond +-{FLOAT32_LIMIT:.0e} "
            f"(largest |value| {np.nanmax(np.abs(X)):.3g}); the models compute in float32 "
            f"(largest value {_FLOAT32_MAX:.3g}) and would overflow. Rescale X, e.g. with "
            "skfwp.ChannelStandardScaler."
        )


def check_X(X, *, n_channels=None, return_format=False):
    """Validate a panel of time series.

    Parameters
    ----------
    X : array-like of shape (n_cases, n_channels, n_timepoints) or (n_cases, n_timepoints), \
            or list of array-like of shape (n_channels, n_timepoints_i)
        The series; NaN marks an unobserved value.
    n_channels : int, default=None
        When given (at predict time), the number of channels ``X`` must have.
    return_format : bool, default=False
        Also return how ``X`` came: ``"list"`` (ragged cases), ``"2d"`` or ``"3d"``.

    Returns
    -------
    X : ndarray of shape (n_cases, n_channels, n_timepoints), float64
        A new array, NaN-padded at the end of short cases.
    lengths : ndarray of shape (n_cases,), int64
        Each case's length: one plus its last index with an observed value.
    input_format : str
        Only with ``return_format=True``.
    """
    if X is None:
        raise ValueError("X is None; a panel of time series is required.")
    if isinstance(X, (list, tuple)) and len(X) == 0:
        raise ValueError("X is an empty list: at least one case is required.")
    _refuse_nested_dataframe(X)
    if isinstance(X, (list, tuple)) and not np.isscalar(X[0]):
        first = np.asarray(X[0], dtype=object)
        ragged = first.ndim >= 1 and len({np.shape(c) for c in X}) > 1
    else:
        ragged = False
    if ragged:
        arr, input_format = _stack_ragged(X), "list"
    else:
        arr = _as_float_array(X, what="X")
        input_format = f"{arr.ndim}d"
        if arr.ndim == 2:
            arr = arr[:, None, :]  # (n_cases, 1, n_timepoints)
        elif arr.ndim != 3:
            hint = (
                " Reshape your data: X.reshape(1, -1) for one univariate series."
                if arr.ndim == 1
                else ""
            )
            raise ValueError(
                "X must be 2D (n_cases, n_timepoints), 3D (n_cases, n_channels, "
                f"n_timepoints) or a list of 2D cases; got an array of shape {arr.shape} "
                f"({arr.ndim}D).{hint}"
            )
    n_cases, n_ch, n_timepoints = arr.shape
    if n_cases == 0:
        raise ValueError(f"X has 0 cases (shape {arr.shape}); at least one is required.")
    if n_ch == 0:
        raise ValueError(f"X has 0 channels (shape {arr.shape}).")
    if n_timepoints == 0:
        raise ValueError(f"X has zero-length series (n_timepoints=0, shape {arr.shape}).")
    if n_channels is not None and n_ch != n_channels:
        raise ValueError(
            f"X has {n_ch} channels, but this estimator was fitted with {n_channels} "
            "channels (n_features_in_)."
        )
    observed = ~np.isnan(arr).all(axis=1)  # (n_cases, n_timepoints)
    empty = np.flatnonzero(~observed.any(axis=1))
    if empty.size:
        raise ValueError(f"Case(s) {empty[:10].tolist()} of X have no observed (non-NaN) value.")
    lengths = (n_timepoints - np.argmax(observed[:, ::-1], axis=1)).astype(np.int64)
    if return_format:
        return arr, lengths, input_format
    return arr, lengths


def check_y(y, n_cases):
    """Validate classification targets; returns a 1D array (a new object)."""
    if y is None:
        raise ValueError("This classifier requires y to be passed, but the target y is None.")
    y = column_or_1d(y, warn=True)
    if y.shape[0] != n_cases:
        raise ValueError(
            f"X and y have inconsistent numbers of cases: len(X)={n_cases}, len(y)={y.shape[0]}."
        )
    if y.dtype.kind in "fc" and not np.isfinite(y).all():
        raise ValueError("y contains NaN or infinity; every case needs a finite label.")
    if y.dtype.kind == "O" and any(isinstance(v, numbers.Real) and not np.isfinite(v) for v in y):
        raise ValueError("y contains NaN or infinity; every case needs a finite label.")
    if y.dtype.kind == "O":
        kinds = {
            "str" if isinstance(v, str) else "number" if isinstance(v, numbers.Number) else "other"
            for v in y
        }
        if len(kinds) > 1:
            raise ValueError(
                f"y mixes labels of different types ({', '.join(sorted(kinds))}); labels must "
                "be all strings or all numbers, as they are sorted into classes_."
            )
    check_classification_targets(y)
    return y


def check_sample_weight(sample_weight, n_cases):
    """Validate sample weights: ``None`` -> ones; otherwise a finite, non-negative 1D array.

    A scalar is one weight for every case, validated as an array is. Weights whose sum
    overflows float32 (the precision of the loss) are refused: only their ratios matter.
    """
    if sample_weight is None:
        return np.ones(n_cases)
    if isinstance(sample_weight, (bool, np.bool_)):
        raise ValueError(f"sample_weight must be numbers, not a bool ({sample_weight!r}).")
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_cases, sample_weight)
    if np.asarray(sample_weight).dtype.kind in "bc":
        raise ValueError(
            f"sample_weight must be real numbers, not {np.asarray(sample_weight).dtype} values."
        )
    try:
        sw = np.array(sample_weight, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"sample_weight must be an array of numbers: {exc}") from None
    if sw.ndim != 1 or sw.shape[0] != n_cases:
        raise ValueError(
            f"sample_weight must have shape ({n_cases},) (one weight per case); "
            f"got shape {sw.shape}."
        )
    if not np.isfinite(sw).all():
        raise ValueError("sample_weight must be finite and non-negative; it holds NaN or infinity.")
    if (sw < 0).any():
        raise ValueError(f"sample_weight must be finite and non-negative; it holds {sw.min():.3g}.")
    return check_weight_total(sw, "sample_weight")


def check_weight_total(weights, what):
    """Refuse per-case weights that sum to zero, or beyond what float32 can hold."""
    total = weights.sum()
    if total <= 0:
        raise ValueError(f"{what} sums to zero: no case would be learned from.")
    if weights.max() < np.finfo(np.float32).smallest_subnormal:
        raise ValueError(
            f"{what} is at most {weights.max():.3g}, which float32 (the precision of the "
            "loss) rounds to zero; multiply the weights by a common factor (only their "
            "ratios matter)."
        )
    if not total <= _FLOAT32_MAX:
        raise ValueError(
            f"{what} sums to {total:.3g}, beyond float32's range ({_FLOAT32_MAX:.3g}), in "
            "which the loss is computed; divide the weights by a common factor (only "
            "their ratios matter)."
        )
    return weights


def resolve_device(device):
    """``torch.device`` of a ``device`` parameter ("auto": CUDA where available); a
    ValueError names a device that is not one or cannot hold a model here."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device={device!r} is not a torch device: {exc}") from None
    if device.type not in ("cpu", "cuda", "mps", "xpu"):
        raise ValueError(
            f"device={str(device)!r} cannot hold a model's weights and data (a "
            f"{device.type!r} tensor has no values); use 'cpu', 'cuda' or 'auto'."
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r} was requested but CUDA is not available here; "
            "use device='cpu' or 'auto'."
        )
    return device


def check_regression_y(y, n_cases):
    """Validate regression targets: returns ``(y2d, n_outputs)``, ``y2d`` a new float64
    array of shape (n_cases, n_outputs); a 1D ``y`` is one target."""
    if y is None:
        raise ValueError("This regressor requires y to be passed, but the target y is None.")
    arr = np.asarray(y)
    if arr.dtype.kind == "O":  # numbers held as objects are numbers
        try:
            arr = arr.astype(np.float64)
        except (TypeError, ValueError):
            pass
    if arr.dtype.kind not in "iuf":
        raise ValueError(
            f"Unknown label type for regression: y must hold numbers, got dtype "
            f"{arr.dtype}; for class labels use a classifier."
        )
    if arr.ndim not in (1, 2):
        raise ValueError(
            f"y must be 1D (one target) or 2D (n_cases, n_outputs), got shape {arr.shape}."
        )
    if arr.shape[0] != n_cases:
        raise ValueError(
            f"X and y have inconsistent numbers of cases: len(X)={n_cases}, len(y)={arr.shape[0]}."
        )
    y2d = np.array(arr, dtype=np.float64).reshape(n_cases, -1)
    if y2d.shape[1] == 0:
        raise ValueError("y has no target columns (shape (n_cases, 0)).")
    if not np.isfinite(y2d).all():
        bad = np.flatnonzero(~np.isfinite(y2d).all(axis=1))
        raise ValueError(
            f"y contains NaN or infinity (case(s) {bad[:10].tolist()}); every case needs "
            "finite targets."
        )
    if not (np.abs(y2d) <= _FLOAT32_MAX).all():
        raise ValueError("y has values beyond float32's range; rescale the targets.")
    return y2d, y2d.shape[1]
