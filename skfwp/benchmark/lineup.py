"""The benchmark's contenders: each estimator it can run, built once per run, and what
input each one takes."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from ..preprocessing import ChannelStandardScaler
from ..registry import all_estimators

__all__ = ["TASK_METRICS", "Contender", "contenders", "task_columns"]

#: The tasks and each one's test score (a column of the results): accuracy, or the root
#: mean squared error of a regressor (R² beside it).
TASK_METRICS = {"classification": "accuracy", "regression": "rmse"}


def task_columns(columns, task, accuracy, regression):
    """``columns`` for ``task``: the run of ``accuracy`` columns swapped for
    ``regression``'s when ``task`` is regression.

    Parameters
    ----------
    columns : list of str
        A classification table's columns.
    task : {"classification", "regression"}
    accuracy : list of str
        Consecutive entries of ``columns`` that hold the accuracy.
    regression : list of str
        What a regression table has in their place.

    Returns
    -------
    list of str

    Examples
    --------
    >>> from skfwp.benchmark.lineup import task_columns
    >>> task_columns(["dataset", "accuracy", "seconds"], "regression", ["accuracy"], ["rmse", "r2"])
    ['dataset', 'rmse', 'r2', 'seconds']
    """
    if task == "classification":
        return list(columns)
    at = columns.index(accuracy[0])
    return [*columns[:at], *regression, *columns[at + len(accuracy) :]]


@dataclasses.dataclass(frozen=True)
class Contender:
    """A classifier of the benchmark and what input it can take.

    Parameters
    ----------
    name : str
    build : callable
        ``build(seed) -> estimator``, unfitted, with ``fit(X, y)`` and ``predict(X)``.
    takes_nan : bool
        Takes NaN; otherwise gaps are filled per case before it sees the data.
    takes_unequal : bool
        Takes a list of unequal-length cases; otherwise cases are padded at the end.
    deterministic : bool
        Same result for every seed: fitted once, not once per seed.
    description : str
        How it is built, for the notes of the table.

    Examples
    --------
    >>> from sklearn.dummy import DummyClassifier
    >>> from skfwp.benchmark import Contender
    >>> majority = Contender("majority", lambda seed: DummyClassifier(), takes_nan=True,
    ...                      takes_unequal=False, deterministic=True,
    ...                      description="the most frequent class")
    >>> majority.build(0).fit([[0.0], [1.0], [1.0]], [0, 1, 1]).predict([[5.0]])
    array([1])
    """

    name: str
    build: Callable
    takes_nan: bool
    takes_unequal: bool
    deterministic: bool
    description: str


def _skfwp_contender(name, cls, max_iter, device):
    from sklearn.pipeline import make_pipeline

    params = {"device": device}
    if max_iter is not None:
        params["max_iter"] = max_iter

    def build(seed):
        return make_pipeline(ChannelStandardScaler(), cls(**params, random_state=seed))

    epochs = f"max_iter={max_iter}" if max_iter is not None else "defaults"
    return Contender(
        name,
        build,
        takes_nan=True,
        takes_unequal=True,
        deterministic=False,
        description=f"make_pipeline(ChannelStandardScaler(), {name}({epochs}))",
    )


def _flatten(X):
    """(n_cases, n_channels, n_timepoints) -> (n_cases, n_channels * n_timepoints)."""
    return np.asarray(X).reshape(len(X), -1)


def _regression_contenders():
    """MiniRocket's regressor and ridge regression, or why MiniRocket is unavailable."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    found = {
        "Ridge": Contender(
            "Ridge",
            lambda seed: make_pipeline(
                FunctionTransformer(_flatten),
                StandardScaler(),
                RidgeCV(alphas=np.logspace(-3, 3, 13)),
            ),
            takes_nan=False,
            takes_unequal=False,
            deterministic=True,
            description="scikit-learn RidgeCV (alphas 1e-3..1e3, leave-one-out) on the "
            "flattened, standardised series; deterministic, so fitted once",
        )
    }
    try:
        import numba  # noqa: F401
        from sktime.regression.kernel_based import RocketRegressor
    except ImportError as exc:
        return found, f"MiniRocket needs sktime and numba ({exc})"
    found["MiniRocket"] = _minirocket(RocketRegressor, "ridge regression")
    return found, None


def _minirocket(rocket_class, ridge):
    """sktime's Rocket classifier or regressor with the MiniRocket transform."""
    return Contender(
        "MiniRocket",
        lambda seed: rocket_class(rocket_transform="minirocket", random_state=seed),
        takes_nan=False,
        takes_unequal=False,
        deterministic=False,
        description=f'sktime {rocket_class.__name__}(rocket_transform="minirocket"): '
        f"10,000 kernels, {ridge} with built-in cross-validation",
    )


def _sktime_contenders():
    """MiniRocket and 1-NN DTW, or the reason they are unavailable."""
    try:
        import numba  # noqa: F401  (both need it: MiniRocket's kernels, DTW's speed)
        from sktime.classification.distance_based import KNeighborsTimeSeriesClassifier
        from sktime.classification.kernel_based import RocketClassifier
    except ImportError as exc:
        return {}, f"MiniRocket and 1NN-DTW need sktime and numba ({exc})"
    found = {
        "MiniRocket": _minirocket(RocketClassifier, "ridge classifier"),
        "1NN-DTW": Contender(
            "1NN-DTW",
            lambda seed: KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw"),
            takes_nan=False,
            takes_unequal=False,  # sktime's numba DTW needs equal lengths
            deterministic=True,
            description='sktime KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw"), '
            "full window; deterministic, so fitted once",
        ),
    }
    return found, None


def contenders(max_iter=None, device="cpu", task="classification"):
    """Every estimator the benchmark can run here for ``task``, by name.

    Parameters
    ----------
    max_iter : int or None
        Epochs of the skfwp estimators (None: their default).
    device : str
        Device of the skfwp estimators.
    task : {"classification", "regression"}, default="classification"

    Returns
    -------
    found : dict of str to Contender
        The skfwp estimators of the task first (in :func:`~skfwp.registry.all_estimators`
        order), then MiniRocket and 1NN-DTW (regression: Ridge, then MiniRocket) when
        sktime and numba are installed.
    unavailable : str or None
        Why the sktime contenders are missing, if they are.

    Examples
    --------
    >>> from skfwp.benchmark import contenders
    >>> found, _ = contenders(max_iter=2)
    >>> found["NeuralCDEClassifier"].takes_nan
    True
    """
    if task not in TASK_METRICS:
        raise ValueError(f"task must be one of {list(TASK_METRICS)}, got {task!r}.")
    found = {
        name: _skfwp_contender(name, cls, max_iter, device)
        for name, cls in all_estimators(task).items()
    }
    others = _sktime_contenders if task == "classification" else _regression_contenders
    sktime_found, unavailable = others()
    return {**found, **sktime_found}, unavailable
