"""Shared fixtures: tiny standard data (as in sktime/aeon test suites) and seeds."""

import numpy as np
import pytest


def make_tiny_panel(n_cases=24, n_channels=2, n_timepoints=12, random_state=0):
    """A 2-class panel a small model learns in a few epochs: the sign of channel 0's drift."""
    rng = np.random.default_rng(random_state)
    y = np.arange(n_cases) % 2
    drift = np.where(y == 1, 1.0, -1.0)[:, None] * np.linspace(0, 2, n_timepoints)
    X = 0.3 * rng.normal(size=(n_cases, n_channels, n_timepoints))
    X[:, 0] += drift
    return X, np.where(y == 1, "up", "down")


@pytest.fixture
def tiny_panel():
    return make_tiny_panel()
