"""The torch side of the input path: spline coefficients of a data set, and batches of them.

:class:`skfwp.path.InputPath` (numpy, fitted on the training data) builds a
:class:`PathData`; a training or prediction step takes a :class:`ControlPath` batch
from it and hands it to a model of :mod:`skfwp.nn`. The design of the path (its
channels, gaps, unequal lengths, log-signature windows) is described in
:mod:`skfwp.path`.
"""

from __future__ import annotations

import torch
import torchcde

__all__ = ["ControlPath", "PathData", "PathPair"]


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


class PathPair:
    """A set of cases read in two directions: :class:`PathData` ``forward`` and
    ``reverse`` (the same cases, each read backwards: :func:`skfwp.path.reverse_cases`).

    ``batch(index, device)`` returns the pair of :class:`ControlPath` batches that a
    :class:`skfwp.nn.ensemble.Bidirectional` module reads; ``ends`` are the forward
    ones (a reversed case ends at the same knot).
    """

    def __init__(self, forward, reverse):
        self.forward, self.reverse = forward, reverse
        self.ends = forward.ends

    def __len__(self):
        return len(self.forward)

    def batch(self, index, device=None):
        return self.forward.batch(index, device), self.reverse.batch(index, device)


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
