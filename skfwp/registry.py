"""Discovery of skfwp's classifiers, for the sktime adapters and the benchmark.

A classifier joins by being exported from :mod:`skfwp` (in ``skfwp.__all__``): no
list to keep in sync.
"""

from __future__ import annotations

__all__ = ["all_classifiers"]


def all_classifiers():
    """Every classifier that :mod:`skfwp` exports, by class name.

    Returns
    -------
    dict of str to type
        ``{name: class}`` for each subclass of
        :class:`~skfwp.base.BaseSequenceClassifier` in ``skfwp.__all__``, sorted by name.

    Examples
    --------
    >>> from skfwp.registry import all_classifiers
    >>> classifiers = all_classifiers()
    >>> "NeuralCDEClassifier" in classifiers and "ContinuousDeltaClassifier" in classifiers
    True
    """
    import skfwp

    from .base import BaseSequenceClassifier

    found = {}
    for name in skfwp.__all__:
        obj = getattr(skfwp, name)
        if isinstance(obj, type) and issubclass(obj, BaseSequenceClassifier):
            found[name] = obj
    return dict(sorted(found.items()))
