"""Preprocessing for panels of time series."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from ._validation import check_X

__all__ = ["ChannelStandardScaler"]


class ChannelStandardScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Standardise each channel of a panel: ``(x - mean_c) / scale_c``, ignoring NaN.

    The mean and standard deviation of channel ``c`` are taken over every observed
    value of that channel, across cases and time points. NaN stays NaN. A channel with
    zero variance, or never observed, gets scale 1.

    Parameters
    ----------
    with_mean : bool, default=True
        Subtract the channel mean.
    with_std : bool, default=True
        Divide by the channel standard deviation.

    Attributes
    ----------
    mean_ : ndarray of shape (n_channels,)
        Per-channel mean (zeros when ``with_mean=False``).
    scale_ : ndarray of shape (n_channels,)
        Per-channel scale (ones when ``with_std=False``).
    n_features_in_ : int
        Number of channels seen in ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.preprocessing import ChannelStandardScaler
    >>> X = np.array([[[1.0, 3.0, np.nan]], [[5.0, 7.0, 9.0]]])  # 2 cases, 1 channel
    >>> Xt = ChannelStandardScaler().fit_transform(X)
    >>> np.round(Xt[1, 0], 3)
    array([0.   , 0.707, 1.414])
    >>> bool(np.isnan(Xt[0, 0, 2]))
    True
    """

    def __init__(self, with_mean=True, with_std=True):
        self.with_mean = with_mean
        self.with_std = with_std

    _parameter_constraints = {"with_mean": ["boolean"], "with_std": ["boolean"]}

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = True
        return tags

    def fit(self, X, y=None):
        """Learn per-channel mean and scale from ``X`` (any format skfwp accepts)."""
        self._validate_params()
        arr, _ = check_X(X)
        n_channels = arr.shape[1]
        values = arr.transpose(1, 0, 2).reshape(n_channels, -1)  # (n_channels, all values)
        observed = ~np.isnan(values)
        count = observed.sum(axis=1)
        safe = np.where(observed, values, 0.0)
        mean = safe.sum(axis=1) / np.maximum(count, 1)
        var = (np.where(observed, values - mean[:, None], 0.0) ** 2).sum(axis=1)
        std = np.sqrt(var / np.maximum(count, 1))
        self.mean_ = mean if self.with_mean else np.zeros(n_channels)
        self.scale_ = np.where(std > 0, std, 1.0) if self.with_std else np.ones(n_channels)
        self.n_features_in_ = n_channels
        return self

    def transform(self, X):
        """Standardised copy of ``X``, in ``X``'s format (2D, 3D, or list of cases)."""
        return self._apply(
            X, lambda a: (a - self.mean_[None, :, None]) / self.scale_[None, :, None]
        )

    def inverse_transform(self, X):
        """Undo :meth:`transform`."""
        return self._apply(X, lambda a: a * self.scale_[None, :, None] + self.mean_[None, :, None])

    def _apply(self, X, fn):
        check_is_fitted(self)
        arr, lengths, input_format = check_X(X, n_channels=self.n_features_in_, return_format=True)
        out = fn(arr)
        if input_format == "list":
            return [out[i, :, :n] for i, n in enumerate(lengths)]
        return out[:, 0, :] if input_format == "2d" else out
