"""GridSearchCV on a Dask cluster: the same code, another joblib backend.

We start a local 2-worker Dask cluster (on a real multi-machine cluster, pass the
scheduler's address to ``Client`` instead), run a grid search through joblib's "dask"
backend, and check it finds what the same search finds in this process.

Run: ``python examples/08_dask_grid_search.py`` (needs ``pip install 'skfwp[dask]'``)
"""

import joblib
import numpy as np
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skfwp import ChannelStandardScaler, ContinuousDeltaClassifier
from skfwp.datasets import load_sktime_dataset


def main(max_iter=20, n_workers=2):
    """Returns ``(dask cv scores, local cv scores)`` (equal for the same random_state)."""
    X, y = load_sktime_dataset("BasicMotions", "train")
    pipe = make_pipeline(
        ChannelStandardScaler(), ContinuousDeltaClassifier(max_iter=max_iter, random_state=0)
    )
    grid = {"continuousdeltaclassifier__learning_rule": ["delta", "hebb"]}
    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        print(f"Dask workers: {len(client.scheduler_info()['workers'])}")
        with joblib.parallel_backend("dask"):
            remote = GridSearchCV(pipe, grid, cv=2, n_jobs=-1).fit(X, y)
    local = GridSearchCV(pipe, grid, cv=2, n_jobs=1).fit(X, y)
    remote_scores = remote.cv_results_["mean_test_score"]
    local_scores = local.cv_results_["mean_test_score"]
    print(f"dask  {np.round(remote_scores, 3)}\nlocal {np.round(local_scores, 3)}")
    return remote_scores, local_scores


if __name__ == "__main__":
    main()
