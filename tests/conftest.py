"""Shared fixtures: tiny standard data (as in sktime/aeon test suites) and seeds."""

import numpy as np
import pytest
import torch

from skfwp._validation import check_X
from skfwp.path import InputPath


def make_tiny_panel(n_cases=24, n_channels=2, n_timepoints=12, random_state=0):
    """A 2-class panel a small model learns in a few epochs: the sign of channel 0's drift."""
    rng = np.random.default_rng(random_state)
    y = np.arange(n_cases) % 2
    drift = np.where(y == 1, 1.0, -1.0)[:, None] * np.linspace(0, 2, n_timepoints)
    X = 0.3 * rng.normal(size=(n_cases, n_channels, n_timepoints))
    X[:, 0] += drift
    return X, np.where(y == 1, "up", "down")


def make_path(n_knots, ends, random_state=0, n_channels=2, interpolation="hermite"):
    """A fitted InputPath and a float64 ControlPath of random cases ending at ``ends``."""
    rng = np.random.default_rng(random_state)
    X = rng.normal(size=(len(ends), n_channels, n_knots))
    for i, e in enumerate(ends):
        X[i, :, e + 1 :] = np.nan
    arr, lengths = check_X(X)
    ip = InputPath(interpolation=interpolation).fit(arr, lengths)
    return ip, ip.transform(arr, lengths, dtype=torch.float64).batch(range(len(ends)))


@pytest.fixture
def tiny_panel():
    return make_tiny_panel()
