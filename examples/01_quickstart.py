"""Quick start: the default skfwp pipeline on two datasets that sktime ships.

``make_pipeline(ChannelStandardScaler(), ContinuousDeltaClassifier())`` is the natural
recipe: standardise each channel (NaN-aware), then let a continuous-time Fast Weight
Programmer read the series as a path. We fit it on the shipped train split of
BasicMotions (6 channels, 100 points) and JapaneseVowels (12 channels, 7-29 points,
unequal lengths, no padding needed) and score it on the shipped test split.

Run: ``python examples/01_quickstart.py``
"""

import time

from sklearn.pipeline import make_pipeline

from skfwp import ChannelStandardScaler, ContinuousDeltaClassifier
from skfwp.datasets import load_sktime_dataset


def main(datasets=("BasicMotions", "JapaneseVowels"), max_iter=None, random_state=0):
    """Fit and score the default pipeline; returns ``{dataset: (accuracy, fit_seconds)}``."""
    params = {"random_state": random_state}
    if max_iter is not None:
        params["max_iter"] = max_iter
    results = {}
    for name in datasets:
        X_train, y_train = load_sktime_dataset(name, "train")
        X_test, y_test = load_sktime_dataset(name, "test")
        clf = make_pipeline(ChannelStandardScaler(), ContinuousDeltaClassifier(**params))
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        accuracy = clf.score(X_test, y_test)
        results[name] = (accuracy, seconds)
        print(f"{name:16s} test accuracy {accuracy:.3f}   fit {seconds:6.1f} s")
    return results


if __name__ == "__main__":
    main()
