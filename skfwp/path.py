"""The input path ``X(s)``: how every skfwp model reads a batch of series.

A validated panel ``(n_cases, n_channels, n_timepoints)`` becomes, for each case, a
continuous path through ``K`` channels, in this order:

1. **time** (channel 0): the observation times relative to the case's first
   observation, divided by ``time_scale_`` (the longest training case's duration),
   so that it runs over ``[0, ~1]``. Times are the indices ``0, 1, ...`` unless
   ``time_channel`` names a channel of timestamps;
2. **observational intensity** (optional): per data channel, the cumulative count of
   observed values so far, divided by ``count_scale_`` (the longest training case's
   length);
3. the **data channels** (the input channels other than ``time_channel``).

Design choices (MODELS.md leaves them open):

- **Parametrisation.** The path is parametrised by the observation index
  ``s = 0, 1, ..., n_i - 1`` (torchcde's default grid), shared by every case of a
  batch; physical time is the path's channel 0, so a CDE still sees how fast the
  data moves. Solver step sizes are in these index units: ``step_size=None`` means
  one step per observation, the smallest gap between observations.
- **Gaps.** Unobserved values are filled before the spline is built: linearly in
  ``s`` between the neighbouring observations of the same channel, with the first
  (last) observation carried backwards (forwards), and 0 for a channel never
  observed in a case. This is what torchcde's coefficient functions do with NaN,
  computed here in one vectorised pass (torchcde loops over cases in Python).
- **Unequal lengths.** Positions past a case's length are filled with its last
  observation, so its path is constant after its own final index ``T_i``; every
  readout is taken at ``T_i`` (``ControlPath.ends``), never at the batch's end.
- **Interpolation.** ``"hermite"``: Hermite cubic splines with backward differences
  (torchcde; causal: the piece on ``[s_k, s_k+1]`` uses observations up to
  ``s_k+1``); ``"linear"``; ``"rectilinear"`` (torchcde; time moves first, then the
  values jump; the grid has ``2n - 1`` knots and case ``i`` ends at ``2 (n_i - 1)``).
"""

from __future__ import annotations

import numpy as np
import torch
import torchcde

__all__ = ["INTERPOLATIONS", "ControlPath", "InputPath", "PathData", "fill_gaps"]

INTERPOLATIONS = ("hermite", "linear", "rectilinear")


def fill_gaps(x, lengths=None):
    """Fill NaN along the last axis, per row, as described in the module docstring.

    Parameters
    ----------
    x : ndarray of shape (..., n_timepoints)
    lengths : ndarray of shape x.shape[:-1] or broadcastable, optional
        Positions at or beyond a row's length are treated as unobserved (padding).

    Returns
    -------
    ndarray of the same shape, without NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import fill_gaps
    >>> fill_gaps(np.array([np.nan, 1.0, np.nan, 3.0, np.nan]))
    array([1., 1., 2., 3., 3.])
    >>> fill_gaps(np.array([[1.0, 2.0, 5.0]]), lengths=[2])  # past the length: padding
    array([[1., 2., 2.]])
    """
    n = x.shape[-1]
    idx = np.arange(n)
    obs = ~np.isnan(x)
    if lengths is not None:
        obs &= idx < np.asarray(lengths)[..., None]
    prev = np.maximum.accumulate(np.where(obs, idx, -1), axis=-1)
    nxt = np.minimum.accumulate(np.where(obs, idx, n)[..., ::-1], axis=-1)[..., ::-1]
    has_prev, has_next = prev >= 0, nxt < n
    x_prev = np.take_along_axis(x, np.clip(prev, 0, n - 1), axis=-1)
    x_next = np.take_along_axis(x, np.clip(nxt, 0, n - 1), axis=-1)
    span = np.where(nxt > prev, nxt - prev, 1)
    w = (idx - prev) / span
    between = x_prev + w * (x_next - x_prev)
    out = np.where(has_prev & has_next, between, np.where(has_prev, x_prev, x_next))
    out = np.where(has_prev | has_next, out, 0.0)
    return np.where(obs, x, out)


class PathData:
    """Spline coefficients of a set of cases, ready to slice into batches.

    Parameters
    ----------
    coeffs : Tensor
        torchcde coefficients: Hermite cubic, shape ``(n_cases, n_knots - 1, 4 K)``
        (one row per piece), or linear / rectilinear, ``(n_cases, n_knots, K)``
        (the knot values).
    ends : LongTensor of shape (n_cases,)
        Each case's final knot index ``T_i``.
    interpolation : str

    Attributes
    ----------
    coeffs, ends, interpolation
        As given.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import InputPath
    >>> X, lengths = np.random.default_rng(0).normal(size=(3, 2, 6)), np.array([6, 4, 5])
    >>> data = InputPath().fit(X, lengths).transform(X, lengths)
    >>> len(data), data.batch([1, 2]).ends.tolist()  # a batch keeps each case's T_i
    (3, [3, 4])
    """

    def __init__(self, coeffs, ends, interpolation):
        self.coeffs = coeffs
        self.ends = ends
        self.interpolation = interpolation

    def __len__(self):
        return self.coeffs.shape[0]

    def batch(self, index, device=None):
        """Cases ``index`` as a :class:`ControlPath`, trimmed to their longest case."""
        index = torch.as_tensor(index, dtype=torch.long)
        ends = self.ends[index]
        n_knots = max(int(ends.max()) + 1, 2)
        rows = n_knots - 1 if self.interpolation == "hermite" else n_knots
        coeffs = self.coeffs[index, :rows]
        return ControlPath(coeffs.to(device), ends.to(device), self.interpolation)


class ControlPath:
    """A batch of continuous paths ``X(s)``, ``s`` in ``[0, t_end]``, with final knots.

    ``evaluate(s)`` / ``derivative(s)`` at a shared time return ``(batch, K)``; at a
    1D tensor of ``S`` times they return ``(batch, S, K)`` (one vectorised call, used
    by the fast solver). ``evaluate_at_ends()`` / ``derivative_at_ends()`` give each
    case's value at its own ``T_i``, shape ``(batch, K)``; at a knot, the derivative
    is the one-sided (causal) derivative of the piece on its left, as in torchcde.

    Parameters
    ----------
    coeffs : Tensor
        torchcde coefficients of the batch (see :class:`PathData`).
    ends : LongTensor of shape (batch,)
        Each case's final knot ``T_i``.
    interpolation : {"hermite", "linear", "rectilinear"}

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skfwp.path import InputPath
    >>> X = np.array([[[0.0, 1.0, 4.0]], [[2.0, 2.0, np.nan]]])  # case 1 ends at knot 1
    >>> lengths = np.array([3, 2])
    >>> path = InputPath(interpolation="linear").fit(X, lengths).transform(
    ...     X, lengths, dtype=torch.float64).batch([0, 1])
    >>> path.evaluate(torch.tensor(1.5, dtype=torch.float64))[:, 1]  # data channel
    tensor([2.5000, 2.0000], dtype=torch.float64)
    >>> path.evaluate_at_ends()[:, 1], path.ends.tolist()
    (tensor([4., 2.], dtype=torch.float64), [2, 1])
    """

    def __init__(self, coeffs, ends, interpolation):
        self.coeffs = coeffs
        self.ends = ends
        self.interpolation = interpolation
        if interpolation == "hermite":
            self.spline = torchcde.CubicSpline(coeffs)
        else:
            self.spline = torchcde.LinearInterpolation(coeffs)

    @property
    def batch_size(self):
        return self.coeffs.shape[0]

    @property
    def n_channels(self):
        k = self.coeffs.shape[-1]
        return k // 4 if self.interpolation == "hermite" else k

    @property
    def t_end(self):
        """The batch's last knot (a Python float)."""
        n_rows = self.coeffs.shape[1]
        return float(n_rows if self.interpolation == "hermite" else n_rows - 1)

    def evaluate(self, s):
        return self.spline.evaluate(s)

    def derivative(self, s):
        return self.spline.derivative(s)

    def _left_piece(self):
        """Index of the piece left of each case's end knot (the first piece at s=0)."""
        rows = torch.arange(self.batch_size, device=self.coeffs.device)
        return rows, (self.ends - 1).clamp(min=0)

    def evaluate_at_ends(self):
        rows, piece = self._left_piece()
        if self.interpolation != "hermite":
            return self.coeffs[rows, self.ends]  # knot values
        k = self.n_channels
        c = self.coeffs[rows, piece]
        a, b, two_c, three_d = c[:, :k], c[:, k : 2 * k], c[:, 2 * k : 3 * k], c[:, 3 * k :]
        f = (self.ends - piece).to(c.dtype)[:, None]  # 1, or 0 at s=0
        return a + (b + (0.5 * two_c + three_d * f / 3) * f) * f

    def derivative_at_ends(self):
        rows, piece = self._left_piece()
        if self.interpolation != "hermite":
            return self.coeffs[rows, piece + 1] - self.coeffs[rows, piece]  # unit knot gaps
        k = self.n_channels
        c = self.coeffs[rows, piece]
        b, two_c, three_d = c[:, k : 2 * k], c[:, 2 * k : 3 * k], c[:, 3 * k :]
        f = (self.ends - piece).to(c.dtype)[:, None]
        return b + (two_c + three_d * f) * f


class InputPath:
    """Builds :class:`PathData` from validated arrays; learns its scales in ``fit``.

    Parameters
    ----------
    time_channel : int or None
        Index of an input channel that holds timestamps (strictly increasing within
        each case), or None for index time ``0, 1, ..., n - 1``.
    observation_intensity : bool
        Add, per data channel, the cumulative count of observed values.
    interpolation : {"hermite", "linear", "rectilinear"}

    Attributes
    ----------
    time_scale_ : float
        The longest training case's duration (channel 0 is divided by it).
    count_scale_ : float
        The longest training case's length (the intensities are divided by it).
    n_channels_in_ : int
        Input channels seen in ``fit``.
    n_path_channels_ : int
        Channels ``K`` of the path: time, [intensities], data.
    increment_rms_ : list of float
        Per path channel, the root mean square of the training path's increments
        between consecutive observations (gaps filled; 1.0 for a channel that never
        moves): the typical size of ``dX/ds``, by which a model may standardise the
        derivative.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import InputPath
    >>> X = np.array([[[1.0, np.nan, 3.0, 4.0]], [[0.0, 1.0, np.nan, np.nan]]])
    >>> lengths = np.array([4, 2])
    >>> ip = InputPath(observation_intensity=True).fit(X, lengths)
    >>> ip.n_path_channels_, ip.time_scale_  # time, count, data
    (3, 3.0)
    >>> ip.transform_values(X, lengths)[0].round(2)  # case 0 at its knots: (n_knots, K)
    array([[0.  , 0.25, 1.  ],
           [0.33, 0.25, 2.  ],
           [0.67, 0.5 , 3.  ],
           [1.  , 0.75, 4.  ]])
    """

    def __init__(self, time_channel=None, observation_intensity=False, interpolation="hermite"):
        self.time_channel = time_channel
        self.observation_intensity = observation_intensity
        self.interpolation = interpolation

    def _times(self, X, lengths):
        """Relative times (n_cases, n_timepoints) and the data channels."""
        n_cases, n_channels, n = X.shape
        if self.time_channel is None:
            return np.broadcast_to(np.arange(n, dtype=np.float64), (n_cases, n)), X
        tc = self.time_channel
        if not -n_channels <= tc < n_channels:
            raise ValueError(f"time_channel={tc} is out of range for X with {n_channels} channels.")
        if n_channels < 2:
            raise ValueError("time_channel needs X to have at least 2 channels (time + data).")
        ts = X[:, tc, :]
        inside = np.arange(n) < lengths[:, None]
        bad = inside & ~np.isfinite(ts)
        if bad.any():
            case = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(
                f"time_channel {tc} must hold a finite timestamp at every position of "
                f"each case; case {case} has NaN or infinity there."
            )
        steps = np.diff(ts, axis=1)
        bad = inside[:, 1:] & ~(steps > 0)
        if bad.any():
            case = int(np.flatnonzero(bad.any(axis=1))[0])
            raise ValueError(
                f"time_channel {tc} must be strictly increasing within each case; "
                f"case {case} is not."
            )
        data = np.delete(X, tc % n_channels, axis=1)
        return np.where(inside, ts - ts[:, :1], np.nan), data

    def fit(self, X, lengths):
        """Learn the channel count and the time / count scales from training data."""
        self._fit(X, lengths)
        return self

    def fit_transform(self, X, lengths, dtype=torch.float32):
        """:meth:`fit`, then :meth:`transform` of the same data, gap-filling it once."""
        return self._path(self._fit(X, lengths), lengths, dtype)

    def _fit(self, X, lengths):
        """Learn the scales; returns the training data's :meth:`transform_values`."""
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation={self.interpolation!r} is not one of {INTERPOLATIONS}."
            )
        times, data = self._times(X, lengths)
        all_nan = np.isnan(data).all(axis=(0, 2))
        if all_nan.any():
            raise ValueError(
                f"Channel(s) {np.flatnonzero(all_nan).tolist()} of X are NaN in every case: "
                "nothing can be learned from them; drop them."
            )
        duration = np.nanmax(times[np.arange(len(X)), lengths - 1])
        self.time_scale_ = float(duration) if duration > 0 else 1.0
        self.count_scale_ = float(max(lengths.max(), 1))
        self.n_channels_in_ = X.shape[1]
        values = self.transform_values(X, lengths)
        self.n_path_channels_ = values.shape[2]
        self.increment_rms_ = self._increment_rms(values, lengths)
        return values

    def _increment_rms(self, values, lengths):
        """RMS per channel of the increments between consecutive observations."""
        steps = np.diff(values, axis=1)  # (n_cases, n_knots - 1, K)
        inside = np.arange(steps.shape[1]) < (lengths - 1)[:, None]
        if not inside.any():
            return [1.0] * values.shape[2]
        rms = np.sqrt(np.mean(steps[inside] ** 2, axis=0))
        return [float(r) if r > 0 else 1.0 for r in rms]

    def transform_values(self, X, lengths):
        """Gap-filled path values at the knots, ``(n_cases, n_knots, K)`` float64."""
        times, data = self._times(X, lengths)
        channels = [times[:, None, :] / self.time_scale_]
        if self.observation_intensity:
            counts = np.cumsum(~np.isnan(data), axis=2) / self.count_scale_
            channels.append(counts)
        channels.append(data)
        values = np.concatenate(channels, axis=1)  # (n_cases, K, n_timepoints)
        values = fill_gaps(values, lengths[:, None])
        if values.shape[2] == 1:  # a single observation: a constant path of two knots
            values = np.concatenate([values, values], axis=2)
        return values.transpose(0, 2, 1)  # (n_cases, n_knots, K), the torchcde layout

    def transform(self, X, lengths, dtype=torch.float32):
        """Spline coefficients of every case, as :class:`PathData` (on the CPU)."""
        return self._path(self.transform_values(X, lengths), lengths, dtype)

    def _path(self, values, lengths, dtype):
        """:class:`PathData` from :meth:`transform_values`' output."""
        x = torch.as_tensor(values, dtype=dtype)
        ends = torch.as_tensor(lengths - 1, dtype=torch.long)
        if self.interpolation == "hermite":
            coeffs = torchcde.hermite_cubic_coefficients_with_backward_differences(x)
        elif self.interpolation == "linear":
            coeffs = torchcde.linear_interpolation_coeffs(x)
        else:
            coeffs = torchcde.linear_interpolation_coeffs(x, rectilinear=0)
            ends = 2 * ends
        return PathData(coeffs, ends, self.interpolation)
