"""sktime adapters: every skfwp classifier as an sktime ``BaseClassifier``, every
regressor as a ``BaseRegressor``.

Each adapter delegates to the scikit-learn estimator of the same name: its
parameters are that estimator's (same names, same defaults), and ``fit`` builds and
fits ``estimator_ = skfwp.<Name>(**params)``. There is no second implementation, and
the core estimators stay plain scikit-learn; sktime is an optional extra
(``pip install 'skfwp[sktime]'``).

One adapter base per task, :class:`SkfwpClassifierAdapter` and
:class:`SkfwpRegressorAdapter`, does the work; an estimator's adapter is a subclass
that names ``_estimator_class``. :func:`all_adapters` gives one for every estimator
that :mod:`skfwp` exports (see :func:`skfwp.registry.all_estimators`), generated, so
a new estimator is usable from sktime (and by ``skfwp-benchmark``) as soon as skfwp
exports it. The regressor adapters take one target (sktime's ``numpy1D``); several
targets go through the scikit-learn estimators.

Input: any sktime Panel. Equal-length panels arrive as ``numpy3D``; unequal-length
ones as ``df-list`` (each case a DataFrame, rows = time points), whose time index is
not read: observations are taken as equally spaced unless ``time_channel`` names a
channel of timestamps, as in the scikit-learn estimators. NaN marks a missing value.
"""

from __future__ import annotations

import inspect

import numpy as np
from sktime.classification.base import BaseClassifier
from sktime.regression.base import BaseRegressor

from ._params import keyword_init
from .registry import all_estimators

__all__ = [  # + one per estimator
    "SkfwpClassifierAdapter",
    "SkfwpRegressorAdapter",
    "adapter_for",
    "all_adapters",
]


def _parameters_section(doc):
    """The "Parameters" section of a numpydoc docstring (4-space indented), with its
    heading, up to the next section; empty when there is none."""
    lines = (doc or "").splitlines()
    heads = [i for i, line in enumerate(lines) if line.strip() == "Parameters"]
    if not heads:
        return ""
    start = heads[0]
    rules = [i for i in range(start + 2, len(lines)) if set(lines[i].strip()) == {"-"}]
    end = rules[0] - 1 if rules else len(lines)
    return "\n".join(lines[start:end]).rstrip() + "\n"


_DOC_TEMPLATE = """

    The sktime adapter of :class:`skfwp.{name}`: every parameter is that scikit-learn
    estimator's, with the same default; ``fit`` fits
    ``estimator_ = skfwp.{name}(**self.get_params())``. Takes any sktime Panel of
    equal or unequal length, multivariate, with NaN for missing values.

{parameters}
    Attributes
    ----------
    estimator_ : skfwp.{name}
        The fitted scikit-learn estimator.
{task_attributes}
    See Also
    --------
    skfwp.{name} : the scikit-learn estimator this adapter delegates to.

    Examples
    --------
    >>> from sktime.datasets import load_unit_test
    >>> from skfwp.sktime import {name}
    >>> X, y = load_unit_test(split="train", return_X_y=True)
{example}    """

_CLASSIFIER_ATTRIBUTES = """    classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
"""
_CLASSIFIER_EXAMPLE = """    >>> clf = {name}(hidden_size=8, max_iter=2, random_state=0)
    >>> clf.fit(X, y).predict_proba(X.iloc[:3]).shape
    (3, 2)
"""
_REGRESSOR_EXAMPLE = """    >>> y = X.iloc[:, 0].map(lambda series: series.iloc[-1])  # last values
    >>> reg = {name}(hidden_size=8, max_iter=2, random_state=0)
    >>> reg.fit(X, y).predict(X.iloc[:3]).shape
    (3,)
"""


def _as_cases(X):
    """sktime inner data -> what skfwp estimators take: 3D array or list of (C, n_i) arrays."""
    if isinstance(X, np.ndarray):
        return X  # numpy3D: (n_cases, n_channels, n_timepoints)
    return [np.asarray(case, dtype=np.float64).T for case in X]  # df-list: (n_i, C) frames


class _Adapter:
    """What both adapter bases share: generated ``__init__`` and docstring, delegation
    of ``fit`` and ``predict``, and ``get_test_params``."""

    _estimator_class = None
    _test_params = (
        {"max_iter": 2, "batch_size": 16, "random_state": 0},
        {"max_iter": 1, "interpolation": "linear", "random_state": 1},
    )
    #: The adapter's sktime base, whose ``__init__`` runs after the parameters are stored.
    _sktime_base = None
    _task_attributes = ""
    _example = ""

    _tags = {
        # packaging info
        "authors": ["skfwp developers"],
        "python_dependencies": ["torch", "torchdiffeq", "torchcde"],
        # capabilities
        "capability:multivariate": True,
        "capability:unequal_length": True,
        "capability:missing_values": True,
        "capability:random_state": True,
        "property:randomness": "derandomized",
        # inner types: numpy3D input stays numpy3D; every other Panel mtype converts to
        # the first entry, df-list, which also holds unequal-length panels
        "X_inner_mtype": ["df-list", "numpy3D"],
        "y_inner_mtype": "numpy1D",
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        estimator_class = cls.__dict__.get("_estimator_class")
        if estimator_class is None:
            return
        name = estimator_class.__name__
        defaults = {
            param: p.default for param, p in inspect.signature(estimator_class).parameters.items()
        }
        cls.__init__ = keyword_init(
            cls,
            defaults,
            f"Store the parameters of :class:`skfwp.{name}`.",
            after=cls._sktime_base.__init__,
        )
        first = (estimator_class.__doc__ or name).strip().splitlines()[0].rstrip(".")
        summary = (cls.__doc__ or f"{first}, for sktime.").rstrip()
        cls.__doc__ = summary + _DOC_TEMPLATE.format(
            name=name,
            parameters=_parameters_section(estimator_class.__doc__),
            task_attributes=cls._task_attributes,
            example=cls._example.format(name=name),
        )

    def _fit(self, X, y):
        estimator = self._estimator_class(**self.get_params(deep=False))
        self.estimator_ = estimator.fit(_as_cases(X), y)
        return self

    def _predict(self, X):
        return self.estimator_.predict(_as_cases(X))

    @classmethod
    def get_test_params(cls, parameter_set="default"):
        """Tiny settings (a few epochs, a small state) for sktime's estimator checks.

        Parameters
        ----------
        parameter_set : str, default="default"
            Unused: every set is the default one.

        Returns
        -------
        list of dict
        """
        tiny = cls._estimator_class._get_test_params()
        return [{**tiny, **params} for params in cls._test_params]


class SkfwpClassifierAdapter(_Adapter, BaseClassifier):
    """Base of the classifiers' sktime adapters (not for direct use); see the module
    docstring.

    A subclass sets ``_estimator_class`` to an skfwp classifier; its ``__init__``
    (the estimator's parameters and defaults) and docstring are then generated
    (:func:`adapter_for` writes the subclass). ``get_test_params`` gives the
    estimator's own tiny settings (``_get_test_params``) with each of
    ``_test_params``' training settings.

    Examples
    --------
    >>> from skfwp.sktime import SkfwpClassifierAdapter, all_adapters
    >>> adapters = all_adapters()
    >>> issubclass(adapters["ContinuousDeltaClassifier"], SkfwpClassifierAdapter)
    True
    """

    _sktime_base = BaseClassifier
    _task_attributes = _CLASSIFIER_ATTRIBUTES
    _example = _CLASSIFIER_EXAMPLE
    _tags = {**_Adapter._tags, "capability:predict_proba": True}

    def _predict_proba(self, X):
        # skfwp's classes_ are np.unique(y), the order sktime's classes_ has too
        return self.estimator_.predict_proba(_as_cases(X))


class SkfwpRegressorAdapter(_Adapter, BaseRegressor):
    """Base of the regressors' sktime adapters (not for direct use); see the module
    docstring and :class:`SkfwpClassifierAdapter`.

    Examples
    --------
    >>> from skfwp.sktime import SkfwpRegressorAdapter, all_adapters
    >>> issubclass(all_adapters()["NeuralCDERegressor"], SkfwpRegressorAdapter)
    True
    """

    _sktime_base = BaseRegressor
    _example = _REGRESSOR_EXAMPLE


def adapter_for(estimator_class):
    """The sktime adapter class of an skfwp estimator class.

    Generated once, named as the classifier and kept as an attribute of this module
    (so that ``from skfwp.sktime import <Name>`` works and it pickles by reference);
    every classifier :mod:`skfwp` exports has its adapter from the import on.

    Parameters
    ----------
    estimator_class : type
        A subclass of :class:`skfwp.base.BaseSequenceClassifier` or
        :class:`skfwp.base.BaseSequenceRegressor`.

    Returns
    -------
    type
        A subclass of :class:`SkfwpClassifierAdapter` or :class:`SkfwpRegressorAdapter`.

    Examples
    --------
    >>> import skfwp
    >>> from skfwp.sktime import adapter_for
    >>> adapter_for(skfwp.NeuralCDEClassifier).__module__
    'skfwp.sktime'
    """
    name = estimator_class.__name__
    base = (
        SkfwpClassifierAdapter
        if estimator_class._task == "classification"
        else (SkfwpRegressorAdapter)
    )
    adapter = globals().get(name)
    if not (
        isinstance(adapter, type)
        and issubclass(adapter, base)
        and adapter._estimator_class is estimator_class
    ):
        adapter = type(name, (base,), {"_estimator_class": estimator_class})
        adapter.__module__ = __name__
        globals()[name] = adapter
    return adapter


def all_adapters():
    """The sktime adapter of every estimator :mod:`skfwp` exports, by name.

    Returns
    -------
    dict of str to type
        ``{name: adapter class}``, in the order of
        :func:`skfwp.registry.all_estimators`.

    Examples
    --------
    >>> from skfwp.sktime import all_adapters
    >>> {"ContinuousDeltaClassifier", "NeuralCDEClassifier"} <= set(all_adapters())
    True
    """
    return {name: adapter_for(cls) for name, cls in all_estimators().items()}


for _name, _cls in all_estimators().items():  # the adapters, generated
    adapter_for(_cls)
    __all__.append(_name)
