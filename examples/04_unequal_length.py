"""Unequal-length series without padding: JapaneseVowels.

JapaneseVowels' cases have 7 to 29 time points. skfwp takes them as a list of
``(n_channels, n_timepoints_i)`` arrays, reads each as a path of its own length, and
reads every case out at its own last observation, so a case predicts the same whether
it is alone or batched with longer ones. We check that on the test set as well.

Run: ``python examples/04_unequal_length.py``
"""

import numpy as np
from sklearn.pipeline import make_pipeline

from skfwp import ChannelStandardScaler, ContinuousDeltaClassifier
from skfwp.datasets import load_sktime_dataset


def main(max_iter=None, n_check=5):
    """Returns ``(test_accuracy, max |proba alone - proba in batch|, lengths)``."""
    X_train, y_train = load_sktime_dataset("JapaneseVowels", "train")
    X_test, y_test = load_sktime_dataset("JapaneseVowels", "test")
    lengths = sorted({x.shape[1] for x in X_train})
    print(f"{len(X_train)} training cases, lengths {lengths[0]}..{lengths[-1]}")
    params = {} if max_iter is None else {"max_iter": max_iter}
    clf = make_pipeline(
        ChannelStandardScaler(), ContinuousDeltaClassifier(random_state=0, **params)
    )
    clf.fit(X_train, y_train)
    accuracy = clf.score(X_test, y_test)
    in_batch = clf.predict_proba(X_test)[:n_check]
    alone = np.vstack([clf.predict_proba([x]) for x in X_test[:n_check]])
    gap = float(np.abs(in_batch - alone).max())
    print(f"test accuracy {accuracy:.3f}; alone vs in batch: max difference {gap:.1e}")
    return accuracy, gap, lengths


if __name__ == "__main__":
    main()
