"""Bounded resources: predict memory vs number of cases, and torch threads under joblib.

Prints two markdown tables:

1. peak RSS and time of a process that predicts 1k, 10k and 100k cases of length 100,
   and 1k of length 2,000 (each in a fresh subprocess, so peaks do not carry over),
   beside the size of the input: with the prediction batches of a memory budget
   (``skfwp.base.prediction_batches``, the default) and with fixed batches of 32
   cases (the earlier rule), in the same run;
2. wall time of ``GridSearchCV(n_jobs=2)`` on a small grid, with torch's threads left
   to joblib (each loky worker gets its share of the cores), and with every worker
   forced to use all cores (``n_threads=os.cpu_count()``: oversubscription), beside
   ``n_jobs=1``. Each setting runs twice and the second run is timed, so that the
   workers' start (a torch import each) is not counted. Ratios to the ``n_jobs=1``
   row, measured in the same run, are what count on a shared machine.

Run: ``python benchmarks/resources.py [--quick]``
"""

import argparse
import multiprocessing as mp
import os
import resource
import time

import numpy as np


def _fitted_model():
    from skfwp import ContinuousDeltaClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 2, 100))
    y = (X[:, 0].mean(axis=1) > 0).astype(int)
    return ContinuousDeltaClassifier(
        hidden_size=16, n_heads=2, max_iter=1, batch_size=256, random_state=0
    ).fit(X, y)


def _fixed_batches(ends, budget=None):
    """The earlier prediction rule: 32 cases a batch, in their own order."""
    return [np.arange(lo, min(lo + 32, len(ends))) for lo in range(0, len(ends), 32)]


def _predict_peak(n_cases, length, batching, queue):
    from skfwp import base as skfwp_base

    if batching == "32 a batch":
        skfwp_base.prediction_batches = _fixed_batches
    model = _fitted_model()
    rng = np.random.default_rng(1)
    X = rng.normal(size=(n_cases, 2, length)).astype(np.float64)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    model.predict(X)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((X.nbytes / 2**20, base / 1024, peak / 1024, seconds))


def predict_memory(sizes):
    ctx = mp.get_context("spawn")
    rows = []
    for n, length in sizes:
        for batching in ("memory budget", "32 a batch"):
            queue = ctx.Queue()
            proc = ctx.Process(target=_predict_peak, args=(n, length, batching, queue))
            proc.start()
            rows.append((n, length, batching, *queue.get()))
            proc.join()
    print(
        "\n| cases | length | batches | input MiB | RSS before predict MiB | peak RSS MiB "
        "| predict s |"
    )
    print("|---|---|---|---|---|---|---|")
    for n, length, batching, x_mib, base, peak, seconds in rows:
        print(
            f"| {n:,} | {length:,} | {batching} | {x_mib:.0f} | {base:.0f} | {peak:.0f} "
            f"| {seconds:.1f} |"
        )


def grid_threads(n_cases, max_iter):
    from sklearn.model_selection import GridSearchCV

    from skfwp import ContinuousDeltaClassifier

    rng = np.random.default_rng(0)
    X = rng.normal(size=(n_cases, 3, 50))
    y = (X[:, 0].mean(axis=1) > 0).astype(int)
    grid = {"learning_rule": ["delta", "hebb"], "hidden_size": [16, 32]}
    rows = []
    for label, n_jobs, n_threads in [
        ("n_jobs=1", 1, None),
        ("n_jobs=2, threads left to joblib", 2, None),
        (f"n_jobs=2, n_threads={os.cpu_count()} per worker", 2, os.cpu_count()),
    ]:
        clf = ContinuousDeltaClassifier(
            n_heads=4,
            max_iter=max_iter,
            n_iter_no_change=max_iter,
            random_state=0,
            n_threads=n_threads,
        )
        for _ in range(2):  # the first run starts joblib's workers
            start = time.perf_counter()
            GridSearchCV(clf, grid, cv=2, n_jobs=n_jobs).fit(X, y)
            seconds = time.perf_counter() - start
        rows.append((label, seconds))
    base = rows[0][1]
    print("\n| GridSearchCV (8 fits) | wall s | ratio to n_jobs=1 |")
    print("|---|---|---|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.1f} | {seconds / base:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, seconds")
    args = parser.parse_args(argv)
    if args.quick:
        sizes = [(100, 100), (100, 1_000)]
    else:
        sizes = [(1_000, 100), (10_000, 100), (100_000, 100), (1_000, 2_000)]
    print(f"machine: {os.cpu_count()} cores; date {time.strftime('%Y-%m-%d')}")
    predict_memory(sizes)
    grid_threads(40 if args.quick else 200, 2 if args.quick else 15)


if __name__ == "__main__":
    main()
