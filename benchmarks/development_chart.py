"""Draw docs/img/benchmark_development.png from the development-list table of
docs/benchmarks.md, so that the chart always shows the numbers the page reports.

The table's columns come from runs of different days and seed counts (the page says
which); a cell reads ``mean ± std (fit s)`` or ``mean (fit s)`` for a single seed, and
``–`` where a classifier was not run. The bars are drawn by
:func:`skfwp.benchmark.report.plot_accuracy`, as the benchmark command draws its own.

Run from the repository root::

    PYTHONPATH=. python benchmarks/development_chart.py
"""

from __future__ import annotations

import argparse
import re

import pandas as pd

from skfwp.benchmark.report import plot_accuracy

#: The heading above the table this script reads.
HEADING = "## The development list at the current defaults"
_CELL = re.compile(r"^\s*([0-9.]+)(?:\s*±\s*([0-9.]+))?")


def read_table(markdown):
    """The first table after :data:`HEADING` as a summary frame.

    Parameters
    ----------
    markdown : str
        The text of docs/benchmarks.md.

    Returns
    -------
    pandas.DataFrame
        Columns ``dataset``, ``classifier``, ``accuracy_mean``, ``accuracy_std`` (0 for
        a single seed); cells without a number are left out.
    """
    start = markdown.index(HEADING)
    lines = [line for line in markdown[start:].splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        if not line.startswith("| "):
            break
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if len(cells) != len(header):
            break  # the next table
        for name, cell in zip(header[1:], cells[1:], strict=True):
            match = _CELL.match(cell)
            if match:
                mean, std = match.groups()
                rows.append((cells[0], name, float(mean), float(std or 0.0)))
    return pd.DataFrame(rows, columns=["dataset", "classifier", "accuracy_mean", "accuracy_std"])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--page", default="docs/benchmarks.md")
    parser.add_argument("--out", default="docs/img/benchmark_development.png")
    args = parser.parse_args(argv)
    with open(args.page, encoding="utf-8") as page:
        summary = read_table(page.read())
    plot_accuracy(summary, args.out)
    print(f"{len(summary)} cells, {summary['dataset'].nunique()} datasets -> {args.out}")


if __name__ == "__main__":
    main()
