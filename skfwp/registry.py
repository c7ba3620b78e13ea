"""The one registry of skfwp's estimator classes: a leaf module, imported by the
estimators' base (which registers every subclass), by :mod:`skfwp.persistence` (which
rebuilds a saved class by name) and by the sktime adapters and the benchmark.
"""

from __future__ import annotations

import sys

__all__ = ["all_classifiers", "all_estimators", "all_regressors", "estimator_class", "register"]

#: Every skfwp estimator class (a subclass of :class:`~skfwp.base.BaseSequenceClassifier`
#: or :class:`~skfwp.base.BaseSequenceRegressor`) by class name, a user's subclasses
#: included: what :func:`skfwp.load` may rebuild.
_CLASSES: dict[str, type] = {}


def register(cls):
    """Record an estimator class by its name (the base class does it for every subclass).

    Parameters
    ----------
    cls : type

    Returns
    -------
    cls
        Unchanged.
    """
    _CLASSES[cls.__name__] = cls
    return cls


def estimator_class(name):
    """The registered estimator class called ``name``, or None.

    Parameters
    ----------
    name : str

    Returns
    -------
    type or None
    """
    return _CLASSES.get(name)


def all_estimators(task=None):
    """skfwp's own estimators, by class name.

    An estimator joins by being defined at the top level of a skfwp module under a
    public name (a class built in a test, a doctest or a user's code does not): no list
    to keep in sync. Importing this module imports :mod:`skfwp`, and with it every
    estimator module, first.

    Parameters
    ----------
    task : {"classification", "regression"} or None, default=None
        Only the estimators of this task; None: both.

    Returns
    -------
    dict of str to type
        ``{name: class}``, sorted by name.

    Examples
    --------
    >>> from skfwp.registry import all_estimators
    >>> sorted(all_estimators("regression"))[:2]
    ['ContinuousDeltaRegressor', 'GatedNODERegressor']
    """
    found = {}
    for name, cls in _CLASSES.items():
        module = sys.modules.get(cls.__module__)
        if (
            cls.__module__.split(".")[0] == "skfwp"
            and not name.startswith("_")
            and getattr(module, name, None) is cls
            and task in (None, cls._task)
        ):
            found[name] = cls
    return dict(sorted(found.items()))


def all_classifiers():
    """skfwp's own classifiers, by class name (:func:`all_estimators`).

    Returns
    -------
    dict of str to type

    Examples
    --------
    >>> from skfwp.registry import all_classifiers
    >>> classifiers = all_classifiers()
    >>> "NeuralCDEClassifier" in classifiers and "ContinuousDeltaClassifier" in classifiers
    True
    """
    return all_estimators("classification")


def all_regressors():
    """skfwp's own regressors, by class name (:func:`all_estimators`).

    Returns
    -------
    dict of str to type

    Examples
    --------
    >>> from skfwp.registry import all_regressors
    >>> "NeuralCDERegressor" in all_regressors()
    True
    """
    return all_estimators("regression")
