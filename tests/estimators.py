"""Every public classifier with small settings: the shared contract tests run over these.

A new classifier adds one entry here and inherits every test of test_common.py.
"""

from skfwp import (
    ContinuousDeltaClassifier,
    GatedNODEClassifier,
    NCodeClassifier,
    NeuralCDEClassifier,
)

#: (estimator class, small parameters used across the shared tests). ``batch_size=32``
#: keeps the suite's optimiser steps few (the "auto" rule is tested in test_recipe.py);
#: every other recipe default (windows, dropout, smoothing) is left as users get it.
SMALL = [
    (ContinuousDeltaClassifier, {"hidden_size": 8, "n_heads": 2, "ff_dim": 8, "batch_size": 32}),
    (NeuralCDEClassifier, {"hidden_size": 8, "vector_field_width": 16, "batch_size": 32}),
    (GatedNODEClassifier, {"hidden_size": 8, "flow_layers": (8,), "batch_size": 32}),
    (
        NCodeClassifier,
        {"hidden_size": 8, "controller_layers": (8,), "control_rank": 2, "batch_size": 32},
    ),
]


def small_instances(**overrides):
    return [cls(**{**params, **overrides}) for cls, params in SMALL]


def ids():
    return [cls.__name__ for cls, _ in SMALL]
