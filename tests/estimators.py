"""Every public classifier with small settings: the shared contract tests run over these.

A new classifier adds one entry here and inherits every test of test_common.py.
"""

from skfwp import (
    ContinuousDeltaClassifier,
    GatedNODEClassifier,
    NCodeClassifier,
    NeuralCDEClassifier,
)

#: (estimator class, small parameters used across the shared tests)
SMALL = [
    (ContinuousDeltaClassifier, {"hidden_size": 8, "n_heads": 2, "ff_dim": 8}),
    (NeuralCDEClassifier, {"hidden_size": 8, "vector_field_width": 16}),
    (GatedNODEClassifier, {"hidden_size": 8, "flow_layers": (8,)}),
    (
        NCodeClassifier,
        {"hidden_size": 8, "controller_layers": (8,), "control_rank": 2, "batch_size": 32},
    ),
]


def small_instances(**overrides):
    return [cls(**{**params, **overrides}) for cls, params in SMALL]


def ids():
    return [cls.__name__ for cls, _ in SMALL]
