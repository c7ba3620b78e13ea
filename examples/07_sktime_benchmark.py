"""skfwp inside sktime's own benchmarking framework.

``skfwp.sktime`` turns every skfwp classifier into an sktime ``BaseClassifier``, so
sktime's tools take it like any other: here ``ClassificationBenchmark`` runs the
skfwp adapters beside two classic baselines, MiniRocket and 1-NN DTW, on a dataset
that sktime ships (ItalyPowerDemand: 1 channel, 24 points, 67 training cases).

sktime's benchmark evaluates by cross-validation splitters; to keep the dataset's
own train/test split we join the two halves and pass a ``PredefinedSplit`` whose
single fold trains on the shipped train split and tests on the shipped test split.

(``skfwp-benchmark``, the command, is the quicker way to compare on several datasets,
with missing values and a chart; this example shows the sktime route.)

Run: ``python examples/07_sktime_benchmark.py``
"""

import warnings

import numpy as np
from sklearn.metrics import accuracy_score
from sklearn.model_selection import PredefinedSplit
from sktime.benchmarking.classification import ClassificationBenchmark
from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier
from sktime.classification.kernel_based import RocketClassifier

from skfwp.datasets import load_sktime_dataset
from skfwp.sktime import all_adapters


def main(dataset="ItalyPowerDemand", max_iter=None, random_state=0, output_file=None):
    """Run the benchmark; returns sktime's results DataFrame (one row per classifier).

    ``max_iter`` caps the epochs of the skfwp classifiers (None: their defaults);
    ``output_file`` (``.csv``, ``.json`` or ``.parquet``) also saves the results.
    """
    # 1. The shipped train and test splits, joined, with a split that separates them.
    X_train, y_train = load_sktime_dataset(dataset, "train")
    X_test, y_test = load_sktime_dataset(dataset, "test")
    X, y = np.concatenate([X_train, X_test]), np.concatenate([y_train, y_test])
    shipped_split = PredefinedSplit(np.r_[np.full(len(y_train), -1), np.zeros(len(y_test))])

    # 2. The contenders: every skfwp classifier through its sktime adapter, and the
    #    two baselines straight from sktime.
    params = {"random_state": random_state}
    if max_iter is not None:
        params["max_iter"] = max_iter
    estimators = {name: adapter(**params) for name, adapter in all_adapters().items()}
    estimators["MiniRocket"] = RocketClassifier(
        rocket_transform="minirocket", random_state=random_state
    )
    estimators["1NN-DTW"] = KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")

    # 3. sktime's benchmark: one task (data, split, scores), every estimator on it.
    benchmark = ClassificationBenchmark()
    benchmark.add_estimator(estimators)
    benchmark.add_task((X, y), shipped_split, [accuracy_score], task_id=dataset)
    with warnings.catch_warnings():
        # one fold: sktime's std over folds is NaN, and numpy warns as it computes it
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="numpy")
        results = benchmark.run(output_file)

    columns = ["model_id", "accuracy_score_mean", "fit_time_mean", "pred_time_mean"]
    print(results[columns].to_string(index=False))
    return results


if __name__ == "__main__":
    main()
