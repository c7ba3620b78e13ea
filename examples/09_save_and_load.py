"""Saving and loading a fitted model, safely.

``clf.save(path)`` writes plain data (JSON parameters, tensors, versions and a SHA-256
digest); ``skfwp.load(path)`` reads it without executing anything from the file and
rebuilds the model, which predicts exactly as the saved one. A pipeline is saved by
saving its classifier (and pickling the scaler, or refitting it).

Run: ``python examples/09_save_and_load.py``
"""

import os
import tempfile

import numpy as np

import skfwp
from skfwp import ContinuousDeltaClassifier
from skfwp.datasets import load_sktime_dataset


def main(max_iter=20, path=None):
    """Returns ``(path, predictions identical?, file size in bytes)``."""
    X, y = load_sktime_dataset("BasicMotions", "train")
    clf = ContinuousDeltaClassifier(max_iter=max_iter, random_state=0).fit(X, y)
    path = path or os.path.join(tempfile.mkdtemp(), "basicmotions.skfwp")
    clf.save(path)
    loaded = skfwp.load(path)
    same = bool(np.array_equal(loaded.predict_proba(X), clf.predict_proba(X)))
    size = os.path.getsize(path)
    print(f"saved {size / 1024:.0f} KiB to {path}; identical predictions after load: {same}")
    return path, same, size


if __name__ == "__main__":
    main()
