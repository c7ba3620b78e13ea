"""Pipeline + GridSearchCV: which learning rule programs the fast weights best?

The estimator is an ordinary scikit-learn classifier, so a Pipeline with the NaN-aware
ChannelStandardScaler and a GridSearchCV over ``learning_rule`` and ``hidden_size``
need nothing special. We tune on BasicMotions' shipped train split with 3-fold
cross-validation and report the held-out test accuracy of the refitted best model.

Run: ``python examples/02_grid_search_learning_rules.py``
"""

from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

from skfwp import ChannelStandardScaler, ContinuousDeltaClassifier
from skfwp.datasets import load_sktime_dataset


def main(max_iter=60, hidden_sizes=(32, 64), cv=3, n_jobs=2, dataset="BasicMotions"):
    """Returns ``(best_params, best_cv_score, test_accuracy, cv_results)``."""
    X_train, y_train = load_sktime_dataset(dataset, "train")
    X_test, y_test = load_sktime_dataset(dataset, "test")
    pipe = make_pipeline(
        ChannelStandardScaler(), ContinuousDeltaClassifier(max_iter=max_iter, random_state=0)
    )
    grid = {
        "continuousdeltaclassifier__learning_rule": ["delta", "hebb", "oja"],
        "continuousdeltaclassifier__hidden_size": list(hidden_sizes),
    }
    search = GridSearchCV(pipe, grid, cv=cv, n_jobs=n_jobs).fit(X_train, y_train)
    for params, score in zip(
        search.cv_results_["params"], search.cv_results_["mean_test_score"], strict=True
    ):
        short = {k.split("__")[1]: v for k, v in params.items()}
        print(f"{short}  cv accuracy {score:.3f}")
    test = search.score(X_test, y_test)
    print(f"best {search.best_params_}  test accuracy {test:.3f}")
    return search.best_params_, search.best_score_, test, search.cv_results_


if __name__ == "__main__":
    main()
