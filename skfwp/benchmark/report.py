"""The benchmark's report: the summary over seeds, the markdown table and the chart."""

from __future__ import annotations

import numpy as np

from .lineup import TASK_METRICS, task_columns
from .run import MISSING_SEED

__all__ = ["markdown_table", "plot_accuracy", "report_notes", "summarize", "summary_columns"]

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


def summary_columns(task="classification"):
    """The columns of :func:`summarize`'s table for ``task``.

    Parameters
    ----------
    task : {"classification", "regression"}, default="classification"

    Returns
    -------
    list of str
    """
    accuracy = ["accuracy_mean", "accuracy_std"]
    return task_columns(SUMMARY_COLUMNS, task, accuracy, ["rmse_mean", "rmse_std", "r2_mean"])


def _task_of(frame):
    """The task of a results or summary frame: regression frames score RMSE."""
    regression = {"rmse", "rmse_mean"} & set(frame.columns)
    return "regression" if regression else "classification"


def summarize(results):
    """Mean and std (ddof=1; 0 for a single run) over seeds, per dataset and estimator.

    Parameters
    ----------
    results : pandas.DataFrame
        :func:`~skfwp.benchmark.run_benchmark`'s rows (the task is read from its
        columns).

    Returns
    -------
    pandas.DataFrame
        Columns :func:`summary_columns` of the task.
    """
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
    """The summary as a markdown document: settings line, table, notes.

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`summarize`'s table.
    settings : str
        One line on how the run was made.
    notes : list of str
        Lines under the table (:func:`report_notes`).

    Returns
    -------
    str
    """
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

    Parameters
    ----------
    summary : pandas.DataFrame
        :func:`summarize`'s table.
    path : str or path-like
        The PNG file written.
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


def report_notes(task, descriptions, missing):
    """The notes under the table: how each estimator was built, what the columns mean.

    Parameters
    ----------
    task : {"classification", "regression"}
    descriptions : dict of str to str
        Each estimator's name and how it was built (``results.attrs["descriptions"]``).
    missing : float
        The fraction of values dropped.

    Returns
    -------
    list of str
    """
    notes = [f"{name}: {text}." for name, text in descriptions.items()]
    notes += [
        "accuracy: share of the shipped test split classified correctly; mean ± std "
        "(ddof=1) over seeds 0..N-1."
        if task == "classification"
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
    if missing > 0:
        notes.append(
            f"missing: each value (channel, time point) of train and test dropped with "
            f"probability {missing:g}; one mask per dataset (seed {MISSING_SEED}), "
            "the same for every classifier and seed."
        )
    return notes
