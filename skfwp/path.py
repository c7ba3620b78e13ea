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
- **Log-signature windows** (``logsig_window=w``; Morrill et al. 2021, "Neural
  Rough Differential Equations"). The gap-filled path is cut into windows of ``w``
  observation steps (knots ``0, w, 2w, ...``; the last window of a case ends at its
  own final observation) and each window is summarised by its depth-``logsig_depth``
  log-signature in the Lyndon basis, computed by pysiglib (no gradient needed: it is
  data). The new path has one knot per window boundary: its first ``K`` channels are
  the depth-1 coordinates summed up, i.e. the path's own values at the boundaries;
  the higher-order coordinates (areas at depth 2, and depth-3 brackets) are summed
  up from 0 and divided by ``logsig_scale_`` (their largest absolute value in the
  training data) so that they lie in ``[-1, 1]`` there, like time. A model then takes
  one solver step per window: ``w`` times fewer steps, while the areas keep what
  happens inside a window. Past a case's end its path is constant and every window
  there has a zero log-signature, so a case ends at knot ``ceil((n_i - 1) / w)``.
- **Interpolation.** ``"hermite"``: Hermite cubic splines with backward differences
  (torchcde; causal: the piece on ``[s_k, s_k+1]`` uses observations up to
  ``s_k+1``); ``"linear"``; ``"rectilinear"`` (torchcde; time moves first, then the
  values jump; the grid has ``2n - 1`` knots and case ``i`` ends at ``2 (n_i - 1)``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torchcde

from .nn.path import PathData

__all__ = [
    "INTERPOLATIONS",
    "LOGSIG_DEPTHS",
    "WARP_PIECES",
    "InputPath",
    "crop_positions",
    "fill_gaps",
    "logsig_windows",
    "read_at",
    "reverse_cases",
    "warp_positions",
]

INTERPOLATIONS = ("hermite", "linear", "rectilinear")
LOGSIG_DEPTHS = (1, 2, 3)


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


#: Stretches of a time warp (:func:`warp_positions`).
WARP_PIECES = 4


def warp_positions(lengths, log_slopes, n_timepoints=None):
    """Time warps: where each case is read, in its own observation index.

    Case ``i`` (``n_i`` observations) is read at ``s = φ_i(0), φ_i(1), ...,
    φ_i(n_i - 1)``, with ``φ_i`` an increasing piecewise-linear map of ``[0, n_i - 1]``
    onto itself: equal stretches of the output, one per column of ``log_slopes``,
    whose slopes are ``exp(log_slopes)`` rescaled so that they add up to the whole.
    Every slope is positive, so the map keeps the order of observations and its ends.
    Random log-slopes ``σ z`` (``z`` standard normal) speed each stretch up or slow
    it down by about ``σ``: the analogue, for a continuous-time model, of window
    warping (Le Guennec et al. 2016; Iwana & Uchida 2021).

    Parameters
    ----------
    lengths : ndarray of int, shape (n_cases,)
    log_slopes : ndarray of shape (n_cases, n_pieces)
    n_timepoints : int, default=None
        Width of the returned array (that of the panel read, which may carry
        padding past every case); None: ``max(lengths)``.

    Returns
    -------
    ndarray of shape (n_cases, n_timepoints)
        Fractional positions, increasing from 0 to ``n_i - 1`` within each case's
        length; past it, the case's own last position ``n_i - 1`` (padding).

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import warp_positions
    >>> s = warp_positions(np.array([9, 5]), np.log([[1, 1, 1, 1], [3, 1, 1, 1]]))
    >>> s[0].tolist()  # equal slopes: every observation where it was
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    >>> s[1].round(2).tolist()  # the first stretch runs 3 times as fast as the others
    [0.0, 2.0, 2.67, 3.33, 4.0, 4.0, 4.0, 4.0, 4.0]
    """
    lengths = np.asarray(lengths)
    n_pieces = log_slopes.shape[1]
    n = int(lengths.max()) if n_timepoints is None else n_timepoints
    slopes = np.exp(log_slopes)
    knots = np.concatenate([np.zeros((len(lengths), 1)), np.cumsum(slopes, axis=1)], axis=1)
    knots /= knots[:, -1:]  # phi at the stretch boundaries, from 0 to 1
    u = np.minimum(np.arange(n) / np.maximum(lengths - 1, 1)[:, None], 1.0)  # (n_cases, n)
    piece = np.minimum((u * n_pieces).astype(int), n_pieces - 1)
    frac = u * n_pieces - piece
    left = np.take_along_axis(knots, piece, axis=1)
    right = np.take_along_axis(knots, piece + 1, axis=1)
    return (left + frac * (right - left)) * (lengths - 1)[:, None]


def crop_positions(positions, lengths, kept, offsets):
    """Window slicing: ``positions`` squeezed into a window of each case's span.

    Case ``i`` (``n_i`` observations) read at ``s`` in ``[0, n_i - 1]`` (e.g. from
    :func:`warp_positions`) is read at ``a_i + kept_i s`` instead: a window of the
    fraction ``kept_i`` of its span, starting at ``a_i = offsets_i (1 - kept_i)
    (n_i - 1)``, read at as many points as the case has (the window is stretched to
    the case's length). The analogue, for a continuous-time model, of window slicing
    (Le Guennec et al. 2016; Iwana & Uchida 2021: random crops of 90 % of a series
    interpolated back to its length).

    Parameters
    ----------
    positions : ndarray of shape (n_cases, n_timepoints)
        Fractional positions in ``[0, n_i - 1]`` within each case's length.
    lengths : ndarray of int, shape (n_cases,)
    kept : ndarray of shape (n_cases,)
        Fraction of each case's span in its window, in ``(0, 1]``.
    offsets : ndarray of shape (n_cases,)
        Where the window starts, in ``[0, 1]``: 0 at the case's first observation, 1
        where the window ends at its last.

    Returns
    -------
    ndarray of shape (n_cases, n_timepoints)
        Positions in ``[a_i, a_i + kept_i (n_i - 1)]``, never past ``n_i - 1``.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import crop_positions
    >>> s = np.tile(np.arange(5.0), (2, 1))
    >>> crop_positions(s, np.array([5, 5]), np.array([0.5, 1.0]), np.array([1.0, 0.3]))
    array([[2. , 2.5, 3. , 3.5, 4. ],
           [0. , 1. , 2. , 3. , 4. ]])
    """
    span = np.maximum(np.asarray(lengths) - 1, 0).astype(float)[:, None]
    start = (np.asarray(offsets) * (1.0 - np.asarray(kept)))[:, None] * span
    return np.minimum(start + np.asarray(kept)[:, None] * positions, span)


def read_at(X, lengths, positions, keep=None):
    """``X`` read at fractional observation ``positions`` (:func:`warp_positions`).

    Each channel is gap-filled first (:func:`fill_gaps`), then read linearly between
    the two neighbouring observations; a value is missing (NaN) where the nearest
    observation of its channel was. Positions past a case's length stay padding.

    Parameters
    ----------
    X : ndarray of shape (n_cases, n_channels, n_timepoints)
    lengths : ndarray of int, shape (n_cases,)
    positions : ndarray of shape (n_cases, n_timepoints)
    keep : int or None, default=None
        A channel left as it is (a ``time_channel``: the values move, their
        timestamps stay, so that the warp changes the series' timing).

    Returns
    -------
    ndarray of the shape of ``X`` (a new array).

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import read_at
    >>> X = np.array([[[0.0, 10.0, np.nan, 30.0]]])
    >>> read_at(X, np.array([4]), np.array([[0.0, 0.5, 2.4, 3.0]]))
    array([[[ 0.,  5., nan, 30.]]])
    """
    n = X.shape[2]

    def take(a, index):  # a[i, c, index[i, t]]
        return np.take_along_axis(a, np.broadcast_to(index[:, None, :], a.shape), axis=2)

    filled = fill_gaps(X, lengths[:, None])
    lo = np.clip(np.floor(positions).astype(int), 0, n - 1)
    w = (positions - lo)[:, None, :]
    out = (1 - w) * take(filled, lo) + w * take(filled, np.minimum(lo + 1, n - 1))
    out[np.isnan(take(X, np.clip(np.rint(positions).astype(int), 0, n - 1)))] = np.nan
    moved = np.arange(n) < lengths[:, None]  # (n_cases, n): inside each case
    moved = moved[:, None, :] & (np.arange(X.shape[1]) != keep)[None, :, None]
    return np.where(moved, out, X)


def reverse_cases(X, lengths, time_channel=None):
    """Each case read backwards: its last observation first (``bidirectional`` models).

    Case ``i`` (``n_i`` observations) becomes ``X'[i, :, j] = X[i, :, n_i - 1 - j]``
    for ``j < n_i``; padding past its length stays where it was, so the reversed
    case ends where it did. A ``time_channel`` is mirrored instead, ``t'_j = t_0 +
    t_{n_i - 1} - t_{n_i - 1 - j}``, so that the reversed timestamps increase and
    keep the gaps between observations (in reverse order).

    Parameters
    ----------
    X : ndarray of shape (n_cases, n_channels, n_timepoints)
    lengths : ndarray of int, shape (n_cases,)
    time_channel : int or None, default=None

    Returns
    -------
    ndarray of the shape of ``X`` (a new array).

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.path import reverse_cases
    >>> X = np.array([[[1.0, 2.0, 3.0]], [[4.0, 5.0, np.nan]]])  # case 1: 2 observations
    >>> reverse_cases(X, np.array([3, 2]))
    array([[[ 3.,  2.,  1.]],
    <BLANKLINE>
           [[ 5.,  4., nan]]])
    >>> T = np.array([[[0.0, 1.0, 5.0], [7.0, 8.0, 9.0]]])  # channel 0: timestamps
    >>> reverse_cases(T, np.array([3]), time_channel=0)
    array([[[0., 4., 5.],
            [9., 8., 7.]]])
    """
    lengths = np.asarray(lengths)
    j = np.arange(X.shape[2])
    inside = j < lengths[:, None]  # (n_cases, n)
    source = np.where(inside, lengths[:, None] - 1 - j, j)
    out = np.take_along_axis(X, np.broadcast_to(source[:, None, :], X.shape), axis=2)
    if time_channel is not None:
        t = X[:, time_channel]
        first, last = t[:, :1], np.take_along_axis(t, lengths[:, None] - 1, axis=1)
        out[:, time_channel] = np.where(inside, first + last - out[:, time_channel], t)
    return out


def logsig_windows(values, window, depth):
    """Log-signatures of consecutive windows of piecewise-linear paths (pysiglib).

    Window ``j`` of a path through the knots ``values[:, 0], values[:, 1], ...`` spans
    knots ``j w`` to ``(j + 1) w``; the last window is completed by repeating the final
    knot (a constant piece does not change a signature).

    Parameters
    ----------
    values : ndarray of shape (n_paths, n_knots, K)
    window : int
        Knots steps per window, ``w >= 1``.
    depth : {1, 2, 3}
        Truncation depth; the Lyndon basis of the free Lie algebra, so ``K`` depth-1
        coordinates (the window's increment), then ``K (K - 1) / 2`` at depth 2 (the
        Lévy areas ``A_ij``, ``i < j``), then the depth-3 brackets.

    Returns
    -------
    ndarray of shape (n_paths, ceil((n_knots - 1) / w), L)
        ``L = pysiglib.log_sig_length(K, depth)``; at least one window.

    Examples
    --------
    The path ``(0, 0) -> (1, 0) -> (1, 1)``: increment ``(1, 1)`` and Lévy area 1/2.

    >>> import numpy as np
    >>> from skfwp.path import logsig_windows
    >>> logsig_windows(np.array([[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]]), 2, 2)
    array([[[1. , 1. , 0.5]]])
    >>> logsig_windows(np.array([[[0.0], [1.0], [3.0], [6.0]]]), 2, 1)  # last window: 3 -> 6
    array([[[3.],
            [3.]]])
    """
    try:
        import pysiglib
    except ImportError as exc:  # pragma: no cover - pysiglib is a dependency
        raise ImportError("logsig_window needs pysiglib: pip install pysiglib") from exc

    n_paths, n_knots, k = values.shape
    n_windows = max(math.ceil((n_knots - 1) / window), 1)
    last = n_windows * window
    if last + 1 > n_knots:  # complete the last window with the final knot
        pad = np.repeat(values[:, -1:], last + 1 - n_knots, axis=1)
        values = np.concatenate([values, pad], axis=1)
    index = np.arange(n_windows)[:, None] * window + np.arange(window + 1)  # (n_windows, w+1)
    pieces = values[:, index].reshape(n_paths * n_windows, window + 1, k)
    pieces = np.require(pieces, requirements=["C", "O"])  # pysiglib copies views
    if depth == 1 or k == 1:  # the log-signature of a 1-channel path is its increment
        out = pieces[:, -1] - pieces[:, 0]
    else:
        pysiglib.prepare_log_sig(k, depth, method=1)
        out = np.asarray(pysiglib.log_sig(pieces, depth, method=1), dtype=np.float64)
    return out.reshape(n_paths, n_windows, -1)


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
    logsig_window : int or None, default=None
        None: one knot per observation. ``w``: one knot per window of ``w`` observation
        steps, the path summarised by log-signatures (module docstring).
    logsig_depth : {1, 2, 3}, default=2
        Depth of the windows' log-signatures (ignored without ``logsig_window``).

    Attributes
    ----------
    time_scale_ : float
        The longest training case's duration (channel 0 is divided by it).
    count_scale_ : float
        The longest training case's length (the intensities are divided by it).
    n_channels_in_ : int
        Input channels seen in ``fit``.
    n_path_channels_ : int
        Channels ``K`` of the path: time, [intensities], data, [log-signature terms of
        depth 2 and 3].
    increment_rms_ : list of float
        Per path channel, the root mean square of the training path's increments
        between consecutive knots (gaps filled; 1.0 for a channel that never moves):
        the typical size of ``dX/ds``, by which a model may standardise the
        derivative.
    logsig_scale_ : list of float
        Per log-signature term of depth >= 2, what its summed-up channel is divided
        by (its largest absolute value in the training data); empty without them.

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

    Windows of 2 steps at depth 2: knots at observations 0, 2 and 3, and one area
    channel per pair of the 2 channels (time, data).

    >>> ip = InputPath(logsig_window=2).fit(X, lengths)
    >>> ip.n_path_channels_, ip.knot_lengths(lengths).tolist()
    (3, [3, 2])
    """

    #: The settings and the fitted attributes, as :meth:`get_state` exports them.
    PARAMS = (
        "time_channel",
        "observation_intensity",
        "interpolation",
        "logsig_window",
        "logsig_depth",
    )
    FITTED = (
        "time_scale_",
        "count_scale_",
        "n_channels_in_",
        "n_path_channels_",
        "increment_rms_",
        "logsig_scale_",
    )

    def __init__(
        self,
        time_channel=None,
        observation_intensity=False,
        interpolation="hermite",
        logsig_window=None,
        logsig_depth=2,
    ):
        self.time_channel = time_channel
        self.observation_intensity = observation_intensity
        self.interpolation = interpolation
        self.logsig_window = logsig_window
        self.logsig_depth = logsig_depth

    def get_state(self):
        """Settings and fitted attributes as plain, JSON-ready data.

        Returns
        -------
        dict
            One entry per name in :attr:`PARAMS` and :attr:`FITTED`;
            :meth:`from_state` rebuilds the same fitted path from it.
        """
        return {name: getattr(self, name) for name in self.PARAMS + self.FITTED}

    @classmethod
    def from_state(cls, state, defaults=None):
        """The fitted path that :meth:`get_state` exported.

        Parameters
        ----------
        state : dict
        defaults : dict, optional
            Settings to take where ``state`` has none (files written before the path
            saved its own settings); fitted attributes have no default.

        Raises
        ------
        ValueError
            A fitted attribute is missing from ``state``.

        Examples
        --------
        >>> import numpy as np
        >>> from skfwp.path import InputPath
        >>> X, lengths = np.random.default_rng(0).normal(size=(3, 2, 9)), np.array([9, 9, 5])
        >>> ip = InputPath(logsig_window=3).fit(X, lengths)
        >>> again = InputPath.from_state(ip.get_state())
        >>> np.array_equal(again.transform_values(X, lengths), ip.transform_values(X, lengths))
        True
        """
        fitted = [n for n in cls.FITTED if n != "logsig_scale_"]  # not in files before it
        missing = [name for name in fitted if name not in state]
        if missing:
            raise ValueError(f"the fitted input path lacks {missing}.")
        settings = {**cls().__dict__, **(defaults or {})}
        path = cls(**{name: state.get(name, settings[name]) for name in cls.PARAMS})
        for name in cls.FITTED:
            setattr(path, name, state.get(name, []))
        return path

    def knot_lengths(self, lengths):
        """Knots of each case's path: its length, or its window count + 1 with windows."""
        lengths = np.asarray(lengths)
        if self.logsig_window is None:
            return lengths
        return np.ceil((lengths - 1) / self.logsig_window).astype(lengths.dtype) + 1

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
        """Learn the channel count and the time / count / log-signature scales."""
        self._fit(X, lengths)
        return self

    def fit_transform(self, X, lengths, dtype=torch.float32):
        """:meth:`fit`, then :meth:`transform` of the same data, gap-filling it once."""
        return self._path(*self._fit(X, lengths), dtype)

    def _check_settings(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation={self.interpolation!r} is not one of {INTERPOLATIONS}."
            )
        w = self.logsig_window
        if w is not None and not (isinstance(w, (int, np.integer)) and w >= 1):
            raise ValueError(f"logsig_window must be None or an integer >= 1, got {w!r}.")
        if self.logsig_depth not in LOGSIG_DEPTHS:
            raise ValueError(f"logsig_depth={self.logsig_depth!r} is not one of {LOGSIG_DEPTHS}.")

    def _fit(self, X, lengths):
        """Learn the scales; returns the training data's knot values and knot counts."""
        self._check_settings()
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
        self.logsig_scale_ = []
        values, knots = self._knots(X, lengths, fitting=True)
        self.n_path_channels_ = values.shape[2]
        self.increment_rms_ = self._increment_rms(values, knots)
        return values, knots

    def _increment_rms(self, values, knots):
        """RMS per channel of the increments between consecutive knots."""
        steps = np.diff(values, axis=1)  # (n_cases, n_knots - 1, K)
        inside = np.arange(steps.shape[1]) < (knots - 1)[:, None]
        if not inside.any():
            return [1.0] * values.shape[2]
        rms = np.sqrt(np.mean(steps[inside] ** 2, axis=0))
        return [float(r) if r > 0 else 1.0 for r in rms]

    def _observed(self, X, lengths):
        """Gap-filled values at every observation, ``(n_cases, n_knots, K)`` float64."""
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

    def _knots(self, X, lengths, fitting=False):
        """The path's knot values ``(n_cases, n_knots, K)`` and each case's knot count."""
        values = self._observed(X, lengths)
        w = self.logsig_window
        if w is None:
            return values, lengths
        k = values.shape[2]
        terms = logsig_windows(values, w, self.logsig_depth)  # (n_cases, n_windows, L)
        n_windows = terms.shape[1]
        boundaries = np.minimum(np.arange(n_windows + 1) * w, values.shape[1] - 1)
        higher = np.cumsum(terms[..., k:], axis=1)
        higher = np.concatenate([np.zeros_like(higher[:, :1]), higher], axis=1)
        knots = self.knot_lengths(lengths)
        if fitting:  # constant past each case's end, so every knot can be read
            peak = np.abs(higher).max(axis=(0, 1)) if higher.size else np.zeros(0)
            self.logsig_scale_ = [float(p) if p > 0 else 1.0 for p in peak]
        higher = higher / np.asarray(self.logsig_scale_, dtype=np.float64)
        return np.concatenate([values[:, boundaries], higher], axis=2), knots

    def transform_values(self, X, lengths):
        """Gap-filled path values at the knots, ``(n_cases, n_knots, K)`` float64.

        The knots are the observations, or the window boundaries with ``logsig_window``.
        """
        return self._knots(X, lengths)[0]

    def transform(self, X, lengths, dtype=torch.float32):
        """Spline coefficients of every case, as :class:`PathData` (on the CPU)."""
        return self._path(*self._knots(X, lengths), dtype)

    def _path(self, values, knots, dtype):
        """:class:`PathData` from knot values and each case's knot count."""
        x = torch.as_tensor(values, dtype=dtype)
        ends = torch.as_tensor(knots - 1, dtype=torch.long)
        if self.interpolation == "hermite":
            coeffs = torchcde.hermite_cubic_coefficients_with_backward_differences(x)
        elif self.interpolation == "linear":
            coeffs = torchcde.linear_interpolation_coeffs(x)
        else:
            coeffs = torchcde.linear_interpolation_coeffs(x, rectilinear=0)
            ends = 2 * ends
        return PathData(coeffs, ends, self.interpolation)
