"""The scikit-learn shell shared by every skfwp classifier, with the one training loop.

A classifier is one torch module (``skfwp.nn``) plus a small subclass of
:class:`BaseSequenceClassifier` that declares its own parameters in
``_model_params`` (name -> default) and ``_model_constraints``, and builds its module
in ``_build_module``. The base composes ``__init__`` from those and the shared
parameters below, so ``get_params`` / ``clone`` see every parameter and ``__init__``
only stores them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import inspect
import math
import numbers
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, InvalidParameterError, StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from ._validation import (
    check_float32_range,
    check_sample_weight,
    check_weight_total,
    check_X,
    check_y,
    resolve_device,
)
from .nn.ensemble import SeedEnsemble
from .path import INTERPOLATIONS, InputPath
from .registry import register
from .solver import METHODS

__all__ = [
    "COMMON_PARAMS_DOC",
    "FITTED_ATTRIBUTES_DOC",
    "BaseSequenceClassifier",
    "keyword_init",
    "prediction_batches",
]

#: Shared parameters and their defaults, in the order ``__init__`` lists them after a
#: model's own parameters. Names follow ``sklearn.neural_network.MLPClassifier``.
COMMON_PARAMS = {
    "hidden_size": 32,
    "time_channel": None,
    "observation_intensity": False,
    "interpolation": "hermite",
    "logsig_window": "auto",
    "logsig_depth": 2,
    "method": "rk4",
    "step_size": None,
    "rtol": 1e-3,
    "atol": 1e-4,
    "adjoint": False,
    "max_iter": 100,
    "batch_size": "auto",
    "learning_rate_init": 3e-3,
    "alpha": 0.0,
    "early_stopping": False,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
    "tol": 1e-4,
    "class_weight": None,
    "device": "cpu",
    "random_state": None,
    "verbose": 0,
    "warm_start": False,
    "callbacks": None,
    "max_time": None,
    "n_threads": None,
    "max_grad_norm": None,
    "label_smoothing": 0.1,
    "observation_dropout": 0.3,
    "n_estimators": 1,
    "test_time_augmentation": 8,
}

#: ``logsig_window="auto"``: windows of ``ceil((n - 1) / AUTO_WINDOW_STEPS)`` observation
#: steps for training cases of at most ``n`` observations, so that a path has at most this
#: many windows; series that short are read at every observation.
AUTO_WINDOW_STEPS = 32

#: ``batch_size="auto"``: ``n_train / AUTO_BATCH_DIVISOR`` cases per mini-batch, clipped to
#: ``AUTO_BATCH_RANGE``, so that a small training set gets several optimiser steps an
#: epoch (the FCN / ResNet rule ``min(n_train / 10, 16 or 64)``, Wang et al. 2017).
AUTO_BATCH_DIVISOR = 8
AUTO_BATCH_RANGE = (8, 32)

#: Prediction (and the validation score) runs without an autograd graph, in batches of
#: cases whose count times their longest path (in knots, after the log-signature
#: windows) is at most this many, so that the memory of the per-stage input terms
#: (a few hundred bytes per case and solver time) stays near 100 MB: many short
#: series go at once, a long one alone. Cases are batched in order of length.
PREDICT_KNOTS = 2**16

COMMON_PARAMS_DOC = """\
hidden_size : int, default={hidden_size}
        Width ``H`` of the model's hidden state.
    time_channel : int or None, default=None
        Index of an input channel holding timestamps (strictly increasing within a
        case). None: observations are equally spaced, at times ``0, 1, ...``.
    observation_intensity : bool, default=False
        Add, per channel, the cumulative count of observed values to the path
        (informative missingness).
    interpolation : {{"hermite", "linear", "rectilinear"}}, default="hermite"
        How observations become a continuous path (see :mod:`skfwp.path`).
    logsig_window : int, "auto" or None, default={logsig_window}
        None: the path has a knot at every observation and the solver takes
        ``1 / step_size`` steps per observation. ``w``: the path is cut into windows of
        ``w`` observation steps, each summarised by its log-signature (Neural RDE,
        Morrill et al. 2021; computed once per case by pysiglib), and the solver steps
        per window: ``w`` times fewer steps on long series. "auto": ``w = ceil((n - 1)
        / 32)`` for training cases of at most ``n`` observations (:data:`AUTO_WINDOW_STEPS`),
        so at most 32 windows; the fitted ``input_path_.logsig_window`` holds it.
    logsig_depth : {{1, 2, 3}}, default={logsig_depth}
        Depth of the windows' log-signatures: 1 keeps the increments (the path at the
        window boundaries), 2 adds the Lévy areas of every pair of channels, 3 the
        depth-3 brackets. Ignored when ``logsig_window`` is None.
    method : str, default="rk4"
        torchdiffeq solver: fixed step ("euler", "midpoint", "rk4", ...) or adaptive
        ("dopri5", ...).
    step_size : float or None, default=None
        Fixed solver step in units of the observation index; None: 1 (one step per
        observation, the smallest gap between observations).
    rtol, atol : float, default=1e-3, 1e-4
        Tolerances of adaptive methods.
    adjoint : bool, default=False
        Back-propagate with the adjoint method (less memory, slower).
    max_iter : int, default={max_iter}
        Maximum number of epochs.
    batch_size : int or "auto", default={batch_size}
        Cases per training mini-batch. "auto": ``ceil(n_train / 8)`` clipped to
        ``[8, 32]`` (:data:`AUTO_BATCH_DIVISOR`). Prediction, which keeps no autograd
        graph, takes as many cases at once as a memory budget allows
        (:data:`PREDICT_KNOTS`).
    learning_rate_init : float, default={learning_rate_init}
        AdamW's initial learning rate; halved when the monitored score plateaus.
    alpha : float, default={alpha}
        Decoupled weight decay (AdamW, Loshchilov & Hutter 2019): each step shrinks
        every weight by ``learning_rate * alpha`` besides the Adam step.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training cases (stratified), stop when
        validation accuracy stops improving, and restore the best weights.
    validation_fraction : float, default=0.1
        Share of training cases held out when ``early_stopping``.
    n_iter_no_change : int, default=20
        Epochs without an improvement larger than ``tol`` before training stops.
    tol : float, default=1e-4
        Minimum improvement of the monitored score (training loss, or validation
        accuracy with validation loss as tie-break when ``early_stopping``).
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes in the cross-entropy loss.
    device : {{"cpu", "cuda", "auto"}} or str, default="cpu"
        Where the model trains and predicts; "auto" takes CUDA when available.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, shuffling and the validation split, through
        local generators only: the global torch and numpy RNGs are left untouched.
    verbose : int, default=0
        Print one line per epoch when > 0.
    warm_start : bool, default=False
        Continue training the fitted module on the next ``fit`` instead of starting
        afresh (same classes and channels required).
    callbacks : list of callable or None, default=None
        Each is called as ``callback(estimator, record)`` after every epoch, with
        ``record`` the epoch's ``history_`` entry; a callback returning True stops
        training (``stop_reason_`` says so).
    max_time : float or None, default=None
        Training budget in seconds, checked after each epoch.
    n_threads : int or None, default=None
        torch CPU threads during ``fit`` and ``predict`` (restored afterwards). None
        leaves torch's setting alone (joblib workers already limit it to their share
        of the cores).
    max_grad_norm : float or None, default={max_grad_norm}
        Clip the gradient's global norm to this value before each optimiser step
        (input-driven trajectories, like recurrent nets, have occasional exploding
        gradients); None: no clipping.
    label_smoothing : float in [0, 1), default={label_smoothing}
        Label smoothing of the cross-entropy (the target puts this much mass uniformly
        on all classes).
    observation_dropout : float in [0, 1), default={observation_dropout}
        Augmentation: in every epoch, each training case's observations other than its
        first and last are dropped (made NaN in every channel but ``time_channel``) with
        this probability, and the path is rebuilt through the remaining ones at their
        true times: a continuous-time model reads the same series sampled differently.
    n_estimators : int, default={n_estimators}
        Seed ensemble: this many copies of the model, each initialised from its own
        seed, trained side by side on the same batches (the loss is their mean, so each
        copy's Adam step is the one it would take alone) and averaged in probability at
        prediction. ``module_`` is then a :class:`skfwp.nn.ensemble.SeedEnsemble`.
    test_time_augmentation : int, default={test_time_augmentation}
        At prediction, average the class probabilities of the full path and of this
        many copies with observations dropped as in training (``observation_dropout``;
        with ``observation_dropout=0`` there is nothing to drop and the full path alone
        is read). A case's drops come from a generator seeded by its own values, so it
        predicts the same alone, in any batch and at every call. 0: the full path only.
        Costs this many extra predictions; fit is unchanged. The validation score of
        ``early_stopping`` reads the full path only."""

#: The fitted attributes every skfwp classifier has, for the ``{fitted}`` slot of a
#: classifier's docstring (after its own ``module_``).
FITTED_ATTRIBUTES_DOC = """\
classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    n_features_in_ : int
        Number of input channels seen in ``fit``.
    input_path_ : skfwp.path.InputPath
        The fitted input path (time and count scales).
    device_ : torch.device
        Where the module lives.
    history_ : list of dict
        One dict per epoch: ``epoch``, ``loss``, ``learning_rate``, ``seconds`` and,
        with early stopping, ``val_loss`` and ``val_accuracy``.
    loss_curve_ : list of float
        Training loss per epoch.
    n_iter_ : int
        Epochs run.
    best_epoch_ : int
        Epoch of the best monitored score (whose weights are kept with early stopping).
    stop_reason_ : str or None
        What ended training early ("a callback", "max_time=...s", "KeyboardInterrupt"),
        or None.
    validation_scores_ : list of float
        Validation accuracy per epoch (only with ``early_stopping``).
    best_validation_score_ : float
        The best of them (only with ``early_stopping``)."""

_COMMON_CONSTRAINTS = {
    "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
    "time_channel": [numbers.Integral, None],
    "observation_intensity": ["boolean"],
    "interpolation": [StrOptions(set(INTERPOLATIONS))],
    "logsig_window": [
        Interval(numbers.Integral, 1, None, closed="left"),
        StrOptions({"auto"}),
        None,
    ],
    "logsig_depth": [Interval(numbers.Integral, 1, 3, closed="both")],
    "method": [StrOptions(set(METHODS))],
    "step_size": [Interval(numbers.Real, 0, None, closed="neither"), None],
    "rtol": [Interval(numbers.Real, 0, None, closed="neither")],
    "atol": [Interval(numbers.Real, 0, None, closed="neither")],
    "adjoint": ["boolean"],
    "max_iter": [Interval(numbers.Integral, 1, None, closed="left")],
    "batch_size": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
    "learning_rate_init": [Interval(numbers.Real, 0, None, closed="neither")],
    "alpha": [Interval(numbers.Real, 0, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
    "tol": [Interval(numbers.Real, 0, None, closed="left")],
    "class_weight": [dict, StrOptions({"balanced"}), None],
    "device": [str, torch.device],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "warm_start": ["boolean"],
    "callbacks": [list, tuple, None],
    "max_time": [Interval(numbers.Real, 0, None, closed="neither"), None],
    "n_threads": [Interval(numbers.Integral, 1, None, closed="left"), None],
    "max_grad_norm": [Interval(numbers.Real, 0, None, closed="neither"), None],
    "label_smoothing": [Interval(numbers.Real, 0, 1, closed="left")],
    "observation_dropout": [Interval(numbers.Real, 0, 1, closed="left")],
    "n_estimators": [Interval(numbers.Integral, 1, None, closed="left")],
    "test_time_augmentation": [Interval(numbers.Integral, 0, None, closed="left")],
}


_MAX_RETRIES = 4


class _NonFiniteStep(ArithmeticError):
    """A training step produced a non-finite loss or gradient."""


def prediction_batches(ends, budget=None):
    """Index arrays that split cases into prediction batches (:data:`PREDICT_KNOTS`).

    Cases go in order of their final knot ``ends`` (a batch is solved up to its longest
    case), and a batch's size times its longest path in knots stays within ``budget``
    (default :data:`PREDICT_KNOTS`), or it holds a single case.

    Parameters
    ----------
    ends : ndarray of shape (n_cases,)
        Each case's final knot index (``PathData.ends``).
    budget : int or None, default=None
        Cases times knots a batch may hold; None: :data:`PREDICT_KNOTS`.

    Returns
    -------
    list of ndarray
        Case indices, one array per batch; together every case once.

    Examples
    --------
    >>> [b.tolist() for b in prediction_batches(np.array([9, 1, 9, 3]), budget=20)]
    [[1, 3], [0, 2]]
    """
    budget = PREDICT_KNOTS if budget is None else budget
    order = np.argsort(ends, kind="stable")
    batches, start = [], 0
    for stop in range(1, len(order) + 1):
        knots = int(ends[order[stop - 1]]) + 1  # the longest so far: sorted
        if stop - start > 1 and (stop - start) * knots > budget:
            batches.append(order[start : stop - 1])
            start = stop - 1
    if start < len(order):
        batches.append(order[start:])
    return batches


class _FittedState:
    """An estimator's fitted attributes, put back by :meth:`restore` when a fit fails.

    A warm start trains ``module_`` and extends ``history_`` in place, so their
    contents are copied too; a fresh fit builds new objects and leaves the old ones be.
    """

    def __init__(self, estimator, warm):
        self.attrs = _fitted_attributes(estimator)
        module = self.attrs.get("module_") if warm else None
        self.weights = None if module is None else copy.deepcopy(module.state_dict())
        self.lists = {k: list(v) for k, v in self.attrs.items() if isinstance(v, list)}

    def restore(self, estimator):
        for name in _fitted_attributes(estimator):
            delattr(estimator, name)
        for name, value in self.attrs.items():
            setattr(estimator, name, value)
        for name, contents in self.lists.items():
            self.attrs[name][:] = contents
        if self.weights is not None:
            module = self.attrs["module_"]
            module.load_state_dict(self.weights)
            module.to(self.attrs["device_"]).eval()


def _fitted_attributes(estimator):
    return {k: v for k, v in vars(estimator).items() if k.endswith("_") and not k.startswith("_")}


@contextlib.contextmanager
def _torch_threads(n_threads):
    """Run a block with ``n_threads`` torch CPU threads (None: leave it as it is)."""
    if n_threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def keyword_init(cls, defaults, doc, after=None):
    """An ``__init__`` for ``cls`` that only stores the keyword arguments ``defaults`` names.

    scikit-learn's ``get_params`` reads the parameters from the signature, so the
    generated function carries one: keyword-only, in the order of ``defaults``. An
    unknown keyword raises a TypeError naming it. ``after(self)``, when given, runs
    once the parameters are stored (the sktime adapters call sktime's own
    ``__init__`` there).

    Parameters
    ----------
    cls : type
    defaults : dict
        Parameter name -> default, in signature order.
    doc : str
        The docstring of the generated ``__init__``.
    after : callable, optional

    Returns
    -------
    function

    Examples
    --------
    >>> import inspect
    >>> from skfwp.base import keyword_init
    >>> class Point:
    ...     pass
    >>> Point.__init__ = keyword_init(Point, {"x": 0, "y": 1}, "Store x and y.")
    >>> p = Point(y=5)
    >>> (p.x, p.y), str(inspect.signature(Point))
    ((0, 5), '(*, x=0, y=1)')
    >>> Point(z=2)
    Traceback (most recent call last):
    ...
    TypeError: Point.__init__() got unexpected keyword argument(s) ['z'].
    """

    def __init__(self, **params):
        unknown = set(params) - set(defaults)
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.__init__() got unexpected keyword argument(s) "
                f"{sorted(unknown)}."
            )
        for name, default in defaults.items():
            setattr(self, name, params.get(name, default))
        if after is not None:
            after(self)

    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
            for name, default in defaults.items()
        ]
    )
    __init__.__qualname__ = f"{cls.__name__}.__init__"
    __init__.__module__ = cls.__module__
    __init__.__doc__ = doc
    return __init__


class BaseSequenceClassifier(ClassifierMixin, BaseEstimator):
    """Base class of skfwp classifiers (not for direct use); see the module docstring.

    A subclass's ``__init__`` takes its ``_model_params`` and the shared parameters
    (:data:`COMMON_PARAMS`), keyword only, and only stores them.

    Examples
    --------
    A new model is a torch module and a small subclass; everything else (input
    formats, validation, the training loop, persistence) comes from the shell:

    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from skfwp.base import BaseSequenceClassifier
    >>> from skfwp.solver import ModelField, integrate
    >>> class Leaky(nn.Module):  # dh/ds = tanh(U X(s)) − h, h(0) = 0, logits W h(T_i)
    ...     def __init__(self, n_channels, n_classes, hidden_size):
    ...         super().__init__()
    ...         self.drive = nn.Linear(n_channels, hidden_size)
    ...         self.readout = nn.Linear(hidden_size, n_classes)
    ...     def forward_field(self, s, h, path):
    ...         return torch.tanh(self.drive(path.evaluate(s))) - h
    ...     def forward(self, path, **solver_options):
    ...         h0 = path.coeffs.new_zeros(path.batch_size, self.readout.in_features)
    ...         return self.readout(integrate(ModelField(self), h0, path, **solver_options))
    >>> class LeakyClassifier(BaseSequenceClassifier):
    ...     _model_params = {"hidden_size": 4}
    ...     def _build_module(self, n_path_channels, n_classes):
    ...         return Leaky(n_path_channels, n_classes, self.hidden_size)
    >>> X = np.random.default_rng(0).normal(size=(12, 2, 8))
    >>> y = np.where(X[:, 0].mean(axis=1) > 0, "up", "down")
    >>> clf = LeakyClassifier(max_iter=3, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape, clf.n_iter_, "hidden_size" in clf.get_params()
    ((2, 2), 3, True)
    """

    _model_params: dict = {}
    _model_constraints: dict = {}
    #: What :mod:`skfwp.persistence` checks to know a skfwp classifier (it does not
    #: import this module).
    _skfwp_classifier = True
    #: The fitted attributes that are plain data (saved beside ``classes_``,
    #: ``input_path_`` and ``module_``), and those only a fit with a validation split has.
    _plain_fitted = (
        "n_features_in_",
        "n_iter_",
        "best_epoch_",
        "loss_curve_",
        "history_",
        "stop_reason_",
    )
    _optional_plain_fitted = ("validation_scores_", "best_validation_score_")
    #: Parameters that hold the widths of hidden layers (tuples of positive integers).
    _layer_params: tuple = ()
    #: The model's own small layer sizes for :meth:`_get_test_params`.
    _tiny_params: dict = {}
    #: Parameters a model file written before they existed takes (the value that
    #: reproduces the model of its day, not today's default); subclasses add theirs.
    _saved_before = {"test_time_augmentation": 0}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        register(cls)  # what skfwp.load may rebuild, by name
        defaults = {**COMMON_PARAMS, **cls._model_params}
        names = list(cls._model_params) + [n for n in COMMON_PARAMS if n not in cls._model_params]
        cls._parameter_constraints = {**_COMMON_CONSTRAINTS, **cls._model_constraints}
        cls.__init__ = keyword_init(
            cls,
            {name: defaults[name] for name in names},
            f"Store the parameters of :class:`{cls.__name__}`.",
        )
        if cls.__doc__ and "{common}" in cls.__doc__:
            # the shared parameters' and fitted attributes' docs, with this class's defaults
            shown = {k: f'"{v}"' if isinstance(v, str) else v for k, v in defaults.items()}
            cls.__doc__ = cls.__doc__.format(
                common=COMMON_PARAMS_DOC.format(**shown), fitted=FITTED_ATTRIBUTES_DOC
            )

    # -- hooks for subclasses ------------------------------------------------------
    def _build_module(self, n_path_channels, n_classes):
        """Return the torch module; ``module(path, **solver_options) -> logits``.

        ``self.input_path_`` is fitted when this is called (in ``fit`` and in
        :func:`skfwp.load`), so a module may take its scales (``increment_rms_``) from it.
        """
        raise NotImplementedError

    def _check_params(self):
        """Cross-parameter checks beyond ``_parameter_constraints`` (override to add)."""

    def _check_common_params(self):
        """What ``_parameter_constraints`` cannot say: no bool for a number, callable callbacks.

        scikit-learn's constraints take ``True`` for an int (bool is an Integral).
        """
        for name, constraints in self._parameter_constraints.items():
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) and not {"boolean", "verbose"} & {
                c for c in constraints if isinstance(c, str)
            }:
                raise InvalidParameterError(
                    f"The {name!r} parameter of {type(self).__name__} must be a number, not "
                    f"a bool ({value!r})."
                )
        for i, callback in enumerate(self.callbacks or ()):
            if not callable(callback):
                raise InvalidParameterError(
                    f"callbacks must be callables callback(estimator, record); callbacks[{i}] "
                    f"is {callback!r} ({type(callback).__name__})."
                )

    @classmethod
    def _get_test_params(cls):
        """Tiny settings (``hidden_size=8`` and the model's ``_tiny_params``) that the
        test suite and the sktime adapters' ``get_test_params`` both start from."""
        return {"hidden_size": 8, **cls._tiny_params}

    def _check_all_params(self):
        """Every parameter check, before any work: in ``fit`` and on a loaded file's."""
        self._validate_params()
        self._check_common_params()
        self._check_layer_widths()
        self._check_params()

    def _check_layer_widths(self):
        for name in self._layer_params:
            widths = getattr(self, name)
            if not all(
                isinstance(w, numbers.Integral) and not isinstance(w, bool) and w >= 1
                for w in widths
            ):
                raise ValueError(f"{name} must be a tuple of positive integers, got {widths!r}.")

    def _new_module(self, seed, n_path_channels, n_classes):
        """``_build_module`` with its initialisation seeded, global RNG state restored."""
        members = []
        for i in range(self.n_estimators):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                members.append(self._build_module(n_path_channels, n_classes))
        return members[0] if len(members) == 1 else SeedEnsemble(members)

    # -- persistence ----------------------------------------------------------------
    def _export_fitted(self):
        """The fitted state as plain data and tensors (the inverse of :meth:`_import_fitted`).

        Returns ``(classes_, attributes, input_path_state, state_dict)``: the plain
        fitted attributes (:attr:`_plain_fitted`, and the optional ones it has),
        ``InputPath.get_state()``, and the module's tensors on the CPU, each compact
        in its own storage.
        """
        check_is_fitted(self)
        names = self._plain_fitted + tuple(
            n for n in self._optional_plain_fitted if hasattr(self, n)
        )
        attributes = {name: getattr(self, name) for name in names}
        state = {
            k: v.detach().cpu().contiguous().clone() for k, v in self.module_.state_dict().items()
        }
        return self.classes_, attributes, self.input_path_.get_state(), state

    def _import_fitted(self, classes, attributes, input_path, state_dict, device):
        """Become the fitted estimator that :meth:`_export_fitted` described (checked data)."""
        self.classes_ = classes
        for name, value in attributes.items():
            setattr(self, name, value)
        self.input_path_ = input_path
        self.device_ = resolve_device(device)
        module = self._new_module(0, input_path.n_path_channels_, len(classes))
        module.load_state_dict(state_dict, strict=True)
        self.module_ = module.to(self.device_).eval()
        return self

    def save(self, path):
        """Write the fitted classifier to ``path``; read it back with :func:`skfwp.load`.

        The file holds plain data only (JSON parameters, tensors, versions, a SHA-256
        digest) and loads with ``torch.load(weights_only=True)``: no code is executed.
        """
        from .persistence import save

        save(self, path)

    def __getstate__(self):
        state = super().__getstate__()
        module = state.get("module_")
        if module is not None and any(p.device.type != "cpu" for p in module.parameters()):
            # pickles load on CPU-only machines: the module travels on the CPU
            state["module_"] = copy.deepcopy(module).cpu()
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        device = getattr(self, "device_", None)
        if device is not None:
            if device.type == "cuda" and not torch.cuda.is_available():
                warnings.warn(
                    "this model was fitted on CUDA, which is not available here; it "
                    "predicts on the CPU.",
                    UserWarning,
                    stacklevel=2,
                )
                self.device_ = torch.device("cpu")
            self.module_ = self.module_.to(self.device_)

    # -- sklearn API ----------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        tags.input_tags.allow_nan = True
        return tags

    def _solver_options(self):
        return {
            "method": self.method,
            "step_size": self.step_size,
            "rtol": self.rtol,
            "atol": self.atol,
            "adjoint": self.adjoint,
        }

    def fit(self, X, y, sample_weight=None):
        """Fit the classifier.

        Parameters
        ----------
        X : array-like of shape (n_cases, n_channels, n_timepoints) or (n_cases, \
n_timepoints), or list of (n_channels, n_timepoints_i) arrays
            Training series; NaN marks an unobserved value.
        y : array-like of shape (n_cases,)
            Class labels of any type.
        sample_weight : array-like of shape (n_cases,), default=None
            Per-case weights in the loss.

        Returns
        -------
        self
        """
        self._check_all_params()
        X, lengths = check_X(X)
        check_float32_range(X)
        y = check_y(y, X.shape[0])
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(
                "The training data must contain at least 2 classes; it contains only "
                f"one class: {classes[0]!r}."
            )
        weights = check_weight_total(
            sample_weight * self._class_weights(y_index, classes),
            "sample_weight times class_weight",
        )
        device = resolve_device(self.device)
        warm = self.warm_start and hasattr(self, "module_")
        if warm and (
            not np.array_equal(classes, self.classes_) or X.shape[1] != self.n_features_in_
        ):
            raise ValueError(
                "warm_start=True needs the same classes and channels as the previous fit."
            )
        if self.random_state is None:  # fresh entropy: numpy's global generator untouched
            seed = int(np.random.default_rng().integers(np.iinfo(np.int32).max))
        else:
            seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        rng = np.random.default_rng(seed)
        previous = _FittedState(self, warm)
        try:
            if not warm:
                input_path = InputPath(
                    self.time_channel,
                    self.observation_intensity,
                    self.interpolation,
                    self._window(lengths),
                    self.logsig_depth,
                )
                data = input_path.fit_transform(X, lengths)
            else:
                input_path = self.input_path_
                data = input_path.transform(X, lengths)
            self.input_path_ = input_path  # before _build_module, which may read its scales
            if warm:
                module = self.module_
            else:
                module = self._new_module(seed, input_path.n_path_channels_, len(classes))
            self.classes_ = classes
            self.n_features_in_ = X.shape[1]
            self.device_ = device
            self.module_ = module.to(device)
            with _torch_threads(self.n_threads):
                self._train(data, y_index, weights, rng, self._epoch_data(X, lengths))
        except BaseException as exc:  # a failed fit leaves the estimator as it was
            previous.restore(self)
            if isinstance(exc, KeyboardInterrupt):
                warnings.warn(
                    "fit interrupted outside training; the estimator is left as it was.",
                    UserWarning,
                    stacklevel=2,
                )
            raise
        return self

    def _window(self, lengths):
        """The log-signature window in observation steps (resolves "auto")."""
        if self.logsig_window != "auto":
            return self.logsig_window
        w = math.ceil((int(lengths.max()) - 1) / AUTO_WINDOW_STEPS)
        return w if w > 1 else None

    def _epoch_data(self, X, lengths):
        """``epoch_data(rng) -> PathData`` for one training epoch, a fresh draw of
        ``observation_dropout`` (the caller's ``X`` is not modified); None without it."""
        if self.observation_dropout == 0:
            return None

        def epoch_data(rng):
            uniforms = rng.random((X.shape[0], X.shape[2]))
            return self.input_path_.transform(self._dropped(X, lengths, uniforms), lengths)

        return epoch_data

    def _dropped(self, X, lengths, uniforms):
        """A copy of ``X`` without the observations whose ``uniforms`` (n_cases, n) fall
        below ``observation_dropout``: NaN in every channel but ``time_channel``; each
        case's first and last observations stay."""
        n = X.shape[2]
        inner = (np.arange(n) > 0) & (np.arange(n) < (lengths - 1)[:, None])  # (n_cases, n)
        keep = np.ones(X.shape[1], dtype=bool)
        if self.time_channel is not None:
            keep[self.time_channel] = False
        drop = inner & (uniforms < self.observation_dropout)
        return np.where(drop[:, None, :] & keep[None, :, None], np.nan, X)

    def _batch_size(self, n_train):
        """Cases per training mini-batch: ``batch_size``, or its "auto" rule."""
        if self.batch_size != "auto":
            return self.batch_size
        low, high = AUTO_BATCH_RANGE
        return int(min(max(math.ceil(n_train / AUTO_BATCH_DIVISOR), low), high))

    def _class_weights(self, y_index, classes):
        """Per-case weight from ``class_weight``; its values must be finite and >= 0."""
        if self.class_weight is None:
            return np.ones(len(y_index))
        if self.class_weight == "balanced":
            per_class = compute_class_weight("balanced", classes=np.arange(len(classes)), y=y_index)
        else:
            lookup = {label: i for i, label in enumerate(classes)}
            per_class = np.ones(len(classes))
            for label, w in self.class_weight.items():
                if label not in lookup:
                    raise ValueError(f"class_weight names {label!r}, which is not a class of y.")
                if (
                    isinstance(w, (bool, np.bool_))
                    or not isinstance(w, numbers.Real)
                    or not 0 <= w < np.inf
                ):
                    raise ValueError(
                        f"class_weight[{label!r}] is {w!r}; a class weight must be a finite, "
                        "non-negative number."
                    )
                per_class[lookup[label]] = w
        return per_class[y_index]

    def _split(self, y_index, rng):
        """Training and validation indices (stratified where every class allows it)."""
        n = len(y_index)
        if not self.early_stopping:
            return np.arange(n), None
        counts = np.bincount(y_index)
        stratify = y_index if counts.min() >= 2 else None
        n_val = max(round(self.validation_fraction * n), len(counts) if stratify is not None else 1)
        if n - n_val < 1:
            raise ValueError(
                f"early_stopping with validation_fraction={self.validation_fraction} leaves no "
                f"training case out of {n}."
            )
        train, val = train_test_split(
            np.arange(n),
            test_size=n_val,
            stratify=stratify,
            random_state=int(rng.integers(np.iinfo(np.int32).max)),
        )
        return train, val

    def _batch_logits(self, data, index):
        """Member logits ``(n_members, batch, n_classes)`` (one member without an ensemble)."""
        path = data.batch(index, self.device_)
        try:
            logits = self.module_(path, **self._solver_options())
        except AssertionError as exc:  # torchdiffeq's adaptive solvers: "underflow in dt"
            if "underflow" not in str(exc):
                raise
            raise _NonFiniteStep(f"the adaptive solver's step size underflowed ({exc})") from None
        return logits if logits.dim() == 3 else logits.unsqueeze(0)

    @staticmethod
    def _combine(member_logits):
        """``(n_members, batch, C)`` -> ``(batch, C)``: the logits of one member, or the
        log of the members' mean probability."""
        if member_logits.shape[0] == 1:
            return member_logits[0]
        log_p = torch.log_softmax(member_logits, dim=-1)
        return torch.logsumexp(log_p, dim=0) - math.log(member_logits.shape[0])

    def _train(self, data, y_index, weights, rng, epoch_data=None):
        """The one training loop: AdamW, weighted cross-entropy, plateau LR, early stopping.

        Safeguards: a step with a non-finite loss or gradient rolls the epoch back to the
        weights it started from, divides the learning rate by 10 and runs the epoch
        again (at most ``_MAX_RETRIES`` times per fit, then a ``FloatingPointError``
        naming the epoch); Ctrl-C keeps the best weights so far and warns; callbacks and
        ``max_time`` end training cleanly after an epoch. The rollback goes back one epoch
        more when the epoch began on weights that overflow, and training ends on weights
        whose outputs are finite (:meth:`_ensure_finite`).
        """
        module = self.module_
        train_idx, val_idx = self._split(y_index, rng)
        y_t = torch.as_tensor(y_index, dtype=torch.long)
        w_t = torch.as_tensor(weights, dtype=torch.float32)
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.learning_rate_init, weight_decay=self.alpha
        )
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.5, patience=max(self.n_iter_no_change // 2, 1)
        )
        if not (self.warm_start and hasattr(self, "history_")):
            self.history_ = []
        monitor_val = val_idx is not None
        best_key, best_state, stall, retries = None, None, 0, 0
        good = older = None  # the weights at the start of this epoch and of the one before
        self.best_epoch_ = 0
        started, epoch, stop_reason = time.perf_counter(), 0, None
        try:
            while epoch < self.max_iter:
                epoch += 1
                start = time.perf_counter()
                older, good = good, copy.deepcopy((module.state_dict(), optimizer.state_dict()))
                try:
                    train_data = data if epoch_data is None else epoch_data(rng)
                    order = rng.permutation(train_idx)
                    loss = self._run_epoch(train_data, order, y_t, w_t, optimizer)
                except _NonFiniteStep as exc:
                    retries += 1
                    if retries > _MAX_RETRIES:
                        raise FloatingPointError(
                            f"Training diverged at epoch {epoch}: {exc}, even after lowering "
                            f"the learning rate {_MAX_RETRIES} times. Standardise X (e.g. with "
                            "ChannelStandardScaler) or lower learning_rate_init."
                        ) from None
                    module.load_state_dict(good[0])
                    optimizer.load_state_dict(good[1])
                    if older is not None and not self._outputs_finite(data, train_idx):
                        module.load_state_dict(older[0])  # the last step of the epoch before
                        optimizer.load_state_dict(older[1])  # made weights that overflow
                    for group in optimizer.param_groups:
                        group["lr"] *= 0.1
                    warnings.warn(
                        f"epoch {epoch}: {exc}; weights rolled back to the start of the epoch "
                        f"and learning rate lowered to {optimizer.param_groups[0]['lr']:.2e}.",
                        RuntimeWarning,
                        stacklevel=3,
                    )
                    epoch -= 1
                    continue
                record = {"epoch": epoch, "loss": loss}
                if monitor_val:
                    val_loss, val_acc = self._evaluate(data, val_idx, y_t, w_t)
                    record.update(val_loss=val_loss, val_accuracy=val_acc)
                    # higher accuracy wins; equal accuracy is broken by lower loss
                    key = (val_acc, -val_loss)
                    improved = best_key is None or (
                        val_acc > best_key[0] + self.tol
                        or (val_acc >= best_key[0] and -val_loss > best_key[1] + self.tol)
                    )
                    scheduler.step(val_loss)
                else:
                    key = (-loss,)
                    improved = best_key is None or key[0] > best_key[0] + self.tol
                    scheduler.step(loss)
                record["learning_rate"] = optimizer.param_groups[0]["lr"]
                record["seconds"] = time.perf_counter() - start
                self.history_.append(record)
                if self.verbose:
                    self._print_epoch(record)
                if improved:
                    best_key, stall, self.best_epoch_ = key, 0, epoch
                    if monitor_val:
                        best_state = copy.deepcopy(module.state_dict())
                else:
                    stall += 1
                if stall >= self.n_iter_no_change:
                    break
                if any(callback(self, record) for callback in self.callbacks or ()):
                    stop_reason = "a callback"
                    break
                if self.max_time is not None and time.perf_counter() - started > self.max_time:
                    stop_reason = f"max_time={self.max_time}s"
                    break
        except KeyboardInterrupt:
            warnings.warn(
                f"fit interrupted during epoch {epoch}; keeping the "
                + ("best weights so far." if best_state is not None else "current weights."),
                UserWarning,
                stacklevel=3,
            )
            stop_reason = "KeyboardInterrupt"
        if best_state is not None:
            module.load_state_dict(best_state)
        self._ensure_finite(data, train_idx, good, older)
        module.eval()
        self.n_iter_ = len(self.history_)
        self.stop_reason_ = stop_reason
        self.loss_curve_ = [r["loss"] for r in self.history_]
        if monitor_val:
            self.validation_scores_ = [r["val_accuracy"] for r in self.history_]
            # nan when interrupted before the first epoch ended
            self.best_validation_score_ = float(best_key[0]) if best_key else float("nan")

    @torch.no_grad()
    def _outputs_finite(self, data, train_idx):
        """Whether the module's logits on the first training batch are finite."""
        was_training = self.module_.training
        self.module_.eval()
        try:
            logits = self._batch_logits(data, train_idx[: self._batch_size(len(train_idx))])
        except _NonFiniteStep:
            return False
        finally:
            self.module_.train(was_training)
        return bool(torch.isfinite(logits).all())

    def _ensure_finite(self, data, train_idx, *fallbacks):
        """End training on weights whose outputs are finite.

        Each step's weights are checked by the next step's forward; the last step's
        (or kept best's) are checked here. When they overflow, the latest epoch start in
        ``fallbacks`` (``(state_dict, optimizer state)`` or None) whose do not is loaded.
        """
        if self._outputs_finite(data, train_idx):
            return
        for fallback in fallbacks:
            if fallback is not None:
                self.module_.load_state_dict(fallback[0])
                if self._outputs_finite(data, train_idx):
                    warnings.warn(
                        "training ended on weights whose outputs are not finite; they were "
                        "rolled back to the start of the last epoch whose outputs are.",
                        RuntimeWarning,
                        stacklevel=4,
                    )
                    return
        raise FloatingPointError(
            f"Training diverged at epoch {len(self.history_)}: the model's outputs are not "
            "finite, even at the start of the last epochs. Standardise X (e.g. with "
            "ChannelStandardScaler) or lower learning_rate_init."
        )

    def _run_epoch(self, data, order, y_t, w_t, optimizer):
        """One pass over ``order``; returns the weighted mean loss."""
        module, device = self.module_, self.device_
        module.train()
        total, total_w = 0.0, 0.0
        batch_size = self._batch_size(len(order))
        for lo in range(0, len(order), batch_size):
            index = order[lo : lo + batch_size]
            logits = self._batch_logits(data, index)  # (n_members, batch, C)
            target, w = y_t[index].to(device), w_t[index].to(device)
            losses = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1),
                target.repeat(logits.shape[0]),
                reduction="none",
                label_smoothing=self.label_smoothing,
            )
            losses = losses.view(logits.shape[:2]).mean(0)  # each member's own loss, averaged
            loss = (losses * w).sum() / w.sum().clamp_min(1e-12)
            if not torch.isfinite(loss):
                raise _NonFiniteStep("non-finite loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if not torch.isfinite(torch.stack([g.abs().max() for g in grads])).all():
                raise _NonFiniteStep("non-finite gradient")
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.max_grad_norm)
            optimizer.step()
            total += float(loss.detach()) * float(w.sum())
            total_w += float(w.sum())
        return total / max(total_w, 1e-12)

    @staticmethod
    def _print_epoch(record):
        parts = [f"epoch {record['epoch']:4d}", f"loss {record['loss']:.4f}"]
        if "val_accuracy" in record:
            parts.append(f"val_loss {record['val_loss']:.4f}")
            parts.append(f"val_acc {record['val_accuracy']:.4f}")
        parts.append(f"lr {record['learning_rate']:.2e}")
        parts.append(f"{record['seconds']:.2f}s")
        print(" | ".join(parts), flush=True)

    @torch.no_grad()
    def _evaluate(self, data, index, y_t, w_t):
        self.module_.eval()
        logits = torch.empty(len(index), len(self.classes_))
        for batch in prediction_batches(data.ends[index].numpy()):
            rows = self._combine(self._batch_logits(data, index[batch]))
            logits[torch.as_tensor(batch)] = rows.float().cpu()
        target, w = y_t[index], w_t[index]
        losses = torch.nn.functional.cross_entropy(logits, target, reduction="none")
        loss = float((losses * w).sum() / w.sum().clamp_min(1e-12))
        accuracy = float((logits.argmax(1) == target).float().mean())
        return loss, accuracy

    # -- prediction -------------------------------------------------------------------
    @torch.no_grad()
    def _logits(self, X):
        check_is_fitted(self)
        X, lengths = check_X(X, n_channels=self.n_features_in_)
        check_float32_range(X)
        self.module_.eval()
        # cases turned into spline coefficients at once: about 1M observation times
        chunk = min(1024, max(2**20 // X.shape[2], 1))
        logits = torch.empty(len(X), len(self.classes_), dtype=torch.float64)
        with _torch_threads(self.n_threads):
            for lo in range(0, len(X), chunk):
                part = slice(lo, lo + chunk)
                logits[part] = self._augmented_logits(X[part], lengths[part])
        bad = np.flatnonzero(~torch.isfinite(logits).all(dim=1).numpy())
        if bad.size:
            raise ValueError(
                f"The model's output is not finite for case(s) {bad[:10].tolist()} of X "
                f"(largest |value| there {np.nanmax(np.abs(X[bad])):.3g}): they lie too far "
                "outside the training data's range for float32 arithmetic. Rescale X as "
                "the training data was (e.g. with the same ChannelStandardScaler)."
            )
        return logits

    def _path_logits(self, X, lengths):
        """Logits of cases ``X`` read as they are, in batches of the memory budget."""
        data = self.input_path_.transform(X, lengths)
        logits = torch.empty(len(X), len(self.classes_), dtype=torch.float64)
        for batch in prediction_batches(data.ends.numpy()):
            logits[torch.as_tensor(batch)] = self._predict_batch(data, batch)
        return logits

    def _augmented_logits(self, X, lengths):
        """:meth:`_path_logits`, or with ``test_time_augmentation`` the log of the mean
        probability over the full path and the dropped copies (:meth:`_case_uniforms`)."""
        logits = self._path_logits(X, lengths)
        n_copies = self.test_time_augmentation if self.observation_dropout > 0 else 0
        if not n_copies:
            return logits
        uniforms = self._case_uniforms(X, lengths, n_copies)
        copies = [self._path_logits(self._dropped(X, lengths, u), lengths) for u in uniforms]
        return self._combine(torch.stack([logits, *copies]))  # log of the mean probability

    @staticmethod
    def _case_uniforms(X, lengths, n_copies):
        """``(n_copies, n_cases, n)`` uniforms, each case's from a generator seeded by a
        digest of its own observed values (so they do not depend on the batch)."""
        uniforms = np.empty((n_copies, X.shape[0], X.shape[2]))
        for i, n_i in enumerate(lengths):
            case = np.array(X[i, :, :n_i], dtype=np.float64) + 0.0  # -0.0 hashes as 0.0
            case[np.isnan(case)] = np.nan  # one NaN bit pattern
            digest = hashlib.blake2b(case.tobytes(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            uniforms[:, i, :n_i] = rng.random((n_copies, n_i))  # not the padded width
            uniforms[:, i, n_i:] = 1.0  # past the case's end: nothing to drop
        return uniforms

    def _predict_batch(self, data, index):
        """Logits of one batch; a case that breaks the solver gets a row of NaN, alone."""
        try:
            return self._combine(self._batch_logits(data, index)).double().cpu()
        except _NonFiniteStep:
            if len(index) == 1:
                return torch.full((1, len(self.classes_)), torch.nan, dtype=torch.float64)
            rows = [self._predict_batch(data, index[i : i + 1]) for i in range(len(index))]
            return torch.cat(rows)

    def predict_proba(self, X):
        """Class probabilities, ``ndarray of shape (n_cases, n_classes)``; rows sum to 1."""
        return torch.softmax(self._logits(X), dim=1).numpy()

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, ``ndarray of shape (n_cases, n_classes)``."""
        return torch.log_softmax(self._logits(X), dim=1).numpy()

    def decision_function(self, X):
        """Logits, ``ndarray of shape (n_cases, n_classes)`` (``(n_cases,)`` for 2 classes)."""
        logits = self._logits(X)
        if logits.shape[1] == 2:
            return (logits[:, 1] - logits[:, 0]).numpy()
        return logits.numpy()

    def predict(self, X):
        """Predicted labels, ``ndarray of shape (n_cases,)``, of the type of ``y``."""
        index = self._logits(X).argmax(1).numpy()
        return self.classes_[index]
