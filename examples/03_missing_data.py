"""Irregular sampling and missing data: NaN in, no imputation needed.

We drop a fraction of the observed values of BasicMotions at random (the same mask for
train and test style), then compare three fits on the shipped split:

1. the complete data;
2. the data with NaN, read as a path through the remaining observations;
3. the same, plus observational intensity (per channel, the cumulative count of
   observations: how the Neural CDE and FWP papers let a model use *when* data is
   missing).

Run: ``python examples/03_missing_data.py``
"""

import numpy as np
from sklearn.pipeline import make_pipeline

from skfwp import ChannelStandardScaler, ContinuousDeltaClassifier
from skfwp.datasets import load_sktime_dataset


def drop_values(X, fraction, random_state=0):
    """A copy of ``X`` with ``fraction`` of its values set to NaN (first column kept)."""
    rng = np.random.default_rng(random_state)
    X = np.array(X, dtype=float, copy=True)
    mask = rng.random(X.shape) < fraction
    mask[:, :, 0] = False  # every case keeps an observation at its start
    X[mask] = np.nan
    return X


def main(fraction=0.5, max_iter=None, dataset="BasicMotions"):
    """Returns ``{setting: test accuracy}``."""
    X_train, y_train = load_sktime_dataset(dataset, "train")
    X_test, y_test = load_sktime_dataset(dataset, "test")
    settings = {
        "complete": ({}, X_train, X_test),
        f"{fraction:.0%} missing": (
            {},
            drop_values(X_train, fraction),
            drop_values(X_test, fraction, 1),
        ),
        f"{fraction:.0%} missing + intensity": (
            {"observation_intensity": True},
            drop_values(X_train, fraction),
            drop_values(X_test, fraction, 1),
        ),
    }
    results = {}
    for name, (params, train, test) in settings.items():
        if max_iter is not None:
            params = {**params, "max_iter": max_iter}
        clf = make_pipeline(
            ChannelStandardScaler(), ContinuousDeltaClassifier(random_state=0, **params)
        )
        results[name] = clf.fit(train, y_train).score(test, y_test)
        print(f"{name:28s} test accuracy {results[name]:.3f}")
    return results


if __name__ == "__main__":
    main()
