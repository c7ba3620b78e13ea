"""Every public classifier with small settings: the shared contract tests run over these.

A new classifier needs no entry here: every class of
:func:`skfwp.registry.all_classifiers` runs with its own tiny settings
(``_get_test_params``, which the sktime adapters' ``get_test_params`` also start from)
and inherits every test of test_common.py.
"""

from skfwp.registry import all_classifiers

#: (estimator class, small parameters used across the shared tests). ``batch_size=32``
#: keeps the suite's optimiser steps few (the "auto" rule is tested in test_recipe.py);
#: every other recipe default (windows, dropout, smoothing) is left as users get it.
SMALL = [(cls, {**cls._get_test_params(), "batch_size": 32}) for cls in all_classifiers().values()]


def small_instances(**overrides):
    return [cls(**{**params, **overrides}) for cls, params in SMALL]


def ids():
    return [cls.__name__ for cls, _ in SMALL]
