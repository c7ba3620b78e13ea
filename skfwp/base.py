"""The scikit-learn shell shared by every skfwp estimator, with the one training loop.

:class:`BaseSequenceEstimator` holds what does not depend on the task: input formats
and validation, the input path, the training loop, prediction batches, persistence.
:class:`BaseSequenceClassifier` (cross-entropy, class probabilities) and
:class:`BaseSequenceRegressor` (squared error on standardised targets) add the task.

A model is one torch module (``skfwp.nn``) that maps a path to ``n_outputs`` numbers
(a classifier's logits, a regressor's standardised targets), and per task a small
subclass that declares the model's own parameters in ``_model_params`` (name ->
default) and ``_model_constraints``, and builds the module in ``_build_module``; a
model mixin holding those serves both tasks. The base composes ``__init__`` from them
and the task's shared parameters (:mod:`skfwp._params`), so ``get_params`` / ``clone``
see every parameter and ``__init__`` only stores them.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import math
import numbers
import time
import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted

from ._params import (
    CLASSIFIER_FITTED_DOC,
    CLASSIFIER_ONLY,
    COMMON_CONSTRAINTS,
    COMMON_PARAMS,
    FITTED_ATTRIBUTES_DOC,
    REGRESSOR_DOC,
    REGRESSOR_FITTED_DOC,
    SECTIONS_DOC,
    keyword_init,
    parameters_doc,
    shown_defaults,
)
from ._training import EpochRollback, ImprovementMonitor, NonFiniteStep, WeightAverage
from ._validation import (
    check_float32_range,
    check_regression_y,
    check_sample_weight,
    check_weight_total,
    check_X,
    check_y,
    resolve_device,
)
from .nn.ensemble import Bidirectional, SeedEnsemble
from .nn.path import PathPair
from .path import (
    WARP_PIECES,
    InputPath,
    crop_positions,
    read_at,
    reverse_cases,
    warp_positions,
)
from .registry import register

__all__ = [
    "BaseSequenceClassifier",
    "BaseSequenceEstimator",
    "BaseSequenceRegressor",
    "StateTrajectoriesMixin",
    "prediction_batches",
]


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


_MAX_RETRIES = 4


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


def _reads_both_directions(module):
    """Whether a fitted ``module_`` is bidirectional (alone or as ensemble members)."""
    if isinstance(module, SeedEnsemble):
        module = module.members[0]
    return isinstance(module, Bidirectional)


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


class BaseSequenceEstimator(BaseEstimator):
    """Base class of skfwp estimators (not for direct use); see the module docstring.

    A subclass's ``__init__`` takes its ``_model_params`` and the shared parameters of
    its task (:data:`skfwp._params.COMMON_PARAMS`; a regressor has no ``class_weight``
    or ``label_smoothing``), keyword only, and only stores them. The task base
    (:class:`BaseSequenceClassifier`, :class:`BaseSequenceRegressor`) supplies how
    targets become the module's outputs and back: ``_encode_targets``, ``_losses``,
    ``_combine``, ``_validation_metrics``, the output width and the fitted attributes
    of the targets.
    """

    _model_params: dict = {}
    _model_constraints: dict = {}
    #: What :mod:`skfwp.persistence` checks to know a skfwp estimator (it does not
    #: import this module).
    _skfwp_estimator = True
    #: "classification" or "regression", set by the task bases (None here).
    _task = None
    #: The shared parameters the task does not take.
    _task_excludes: tuple = ()
    #: The task's fitted attributes, for the ``{fitted}`` slot of the docstring.
    _task_fitted_doc = ""
    #: The score the validation split reports (``history_`` key ``val_<name>``).
    _score_name = "score"
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
    #: Those of them that are arrays (saved as lists).
    _array_fitted: tuple = ()
    #: Parameters that hold the widths of hidden layers (tuples of positive integers).
    _layer_params: tuple = ()
    #: The model's own small layer sizes for :meth:`_get_test_params`.
    _tiny_params: dict = {}
    #: Parameters a model file written before they existed takes (the value that
    #: reproduces the model of its day, not today's default); subclasses add theirs.
    _saved_before = {
        "test_time_augmentation": 0,
        "time_warp": 0.0,
        "time_crop": 0.0,
        "average_epochs": 0,
        "lr_schedule": "plateau",
        "bidirectional": False,
        "floor_tol": None,  # classifiers only
        "loss_window": 1,
    }

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "_task" in cls.__dict__:
            return  # a task base, not an estimator
        register(cls)  # what skfwp.load may rebuild, by name
        shared = {k: v for k, v in COMMON_PARAMS.items() if k not in cls._task_excludes}
        defaults = {**shared, **cls._model_params}
        names = list(cls._model_params) + [n for n in shared if n not in cls._model_params]
        cls._parameter_constraints = {
            **{k: v for k, v in COMMON_CONSTRAINTS.items() if k in shared},
            **cls._model_constraints,
        }
        cls.__init__ = keyword_init(
            cls,
            {name: defaults[name] for name in names},
            f"Store the parameters of :class:`{cls.__name__}`.",
        )
        if "_regressor_doc" in cls.__dict__:  # a model's regressor: the shared body
            cls.__doc__ = cls.__doc__.rstrip() + REGRESSOR_DOC.format(
                name=cls.__name__,
                classifier=cls.__name__.replace("Regressor", "Classifier"),
                **cls._regressor_doc,
            )
        if cls.__doc__ and "{sections}" in cls.__doc__:
            # the fragments along the bases ({sections} holds the model's {model}, which
            # may hold {solver_backend}, and {module}), then the shared parameters' and
            # fitted attributes' docs, with this class's defaults
            fragments = {"sections": SECTIONS_DOC}
            for klass in reversed(cls.__mro__):
                fragments.update(vars(klass).get("_doc_fragments", {}))
            for _ in range(3):
                for name, text in fragments.items():
                    cls.__doc__ = cls.__doc__.replace("{" + name + "}", text)
            cls.__doc__ = cls.__doc__.format(
                common=parameters_doc(shared, defaults),
                fitted=cls._task_fitted_doc + FITTED_ATTRIBUTES_DOC,
                **shown_defaults(cls._model_params),  # a model fragment's default={name}
            )

    # -- hooks for subclasses ------------------------------------------------------
    def _build_module(self, n_path_channels, n_outputs):
        """Return the torch module; ``module(path, **solver_options) -> (batch, n_outputs)``.

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

    def _new_module(self, seed, n_path_channels, n_outputs):
        """``_build_module`` with its initialisation seeded, global RNG state restored."""
        members = []
        for i in range(self.n_estimators):
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed + i)
                member = self._build_module(n_path_channels, n_outputs)
                if self.bidirectional:
                    member = Bidirectional(member, self._build_module(n_path_channels, n_outputs))
                members.append(member)
        return members[0] if len(members) == 1 else SeedEnsemble(members)

    # -- persistence ----------------------------------------------------------------
    def _export_fitted(self):
        """The fitted state as plain data and tensors (the inverse of :meth:`_import_fitted`).

        Returns ``(classes_, attributes, input_path_state, state_dict)``: the class
        labels (None for a regressor), the plain fitted attributes (:attr:`_plain_fitted`,
        and the optional ones it has; arrays as lists), ``InputPath.get_state()``, and
        the module's tensors on the CPU, each compact in its own storage.
        """
        check_is_fitted(self)
        names = self._plain_fitted + tuple(
            n for n in self._optional_plain_fitted if hasattr(self, n)
        )
        attributes = {
            name: value.tolist() if isinstance(value, np.ndarray) else value
            for name, value in ((name, getattr(self, name)) for name in names)
        }
        state = {
            k: v.detach().cpu().contiguous().clone() for k, v in self.module_.state_dict().items()
        }
        classes = getattr(self, "classes_", None)
        return classes, attributes, self.input_path_.get_state(), state

    def _import_fitted(self, classes, attributes, input_path, state_dict, device):
        """Become the fitted estimator that :meth:`_export_fitted` described (checked data)."""
        if classes is not None:
            self.classes_ = classes
        for name, value in attributes.items():
            setattr(self, name, np.asarray(value) if name in self._array_fitted else value)
        self.input_path_ = input_path
        self.device_ = resolve_device(device)
        module = self._new_module(0, input_path.n_path_channels_, self._n_outputs())
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
        y : array-like of shape (n_cases,) or (n_cases, n_outputs)
            A classifier's class labels (of any type); a regressor's targets (one
            column per output).
        sample_weight : array-like of shape (n_cases,), default=None
            Per-case weights in the loss.

        Returns
        -------
        self
        """
        self._check_all_params()
        X, lengths = check_X(X)
        check_float32_range(X)
        sample_weight = check_sample_weight(sample_weight, X.shape[0])
        warm = self.warm_start and hasattr(self, "module_")
        targets, weights, target_attributes = self._encode_targets(
            y, X.shape[0], sample_weight, warm
        )
        device = resolve_device(self.device)
        if warm and (
            not self._same_targets(target_attributes) or X.shape[1] != self.n_features_in_
        ):
            raise ValueError(
                f"warm_start=True needs the same {self._targets_name} and channels as the "
                "previous fit."
            )
        if warm and self.bidirectional != _reads_both_directions(self.module_):
            raise ValueError(
                f"warm_start=True continues training the fitted module, which was fitted "
                f"with bidirectional={not self.bidirectional}; set it back, or fit afresh."
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
                forward = input_path.fit_transform(X, lengths)
            else:
                input_path, forward = self.input_path_, None
            self.input_path_ = input_path  # before _build_module, which may read its scales
            data = self._paths(X, lengths, forward=forward)
            for name, value in target_attributes.items():
                setattr(self, name, value)
            if warm:
                module = self.module_
            else:
                module = self._new_module(seed, input_path.n_path_channels_, self._n_outputs())
            self.n_features_in_ = X.shape[1]
            self.device_ = device
            self.module_ = module.to(device)
            with _torch_threads(self.n_threads):
                self._train(data, targets, weights, rng, self._epoch_data(X, lengths))
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

    def _paths(self, X, lengths, dtype=torch.float32, forward=None):
        """``X`` as the module reads it: the fitted input path's :class:`PathData`, or
        with ``bidirectional`` a :class:`PathPair` of it and of the cases reversed
        (:func:`~skfwp.path.reverse_cases`). ``forward``: the first, if already made."""
        if forward is None:
            forward = self.input_path_.transform(X, lengths, dtype)
        if not self.bidirectional:
            return forward
        reverse = reverse_cases(X, lengths, self.time_channel)
        return PathPair(forward, self.input_path_.transform(reverse, lengths, dtype))

    def _augments(self):
        """Whether training reads augmented copies (``time_warp``, ``time_crop``,
        ``observation_dropout``)."""
        return self.time_warp > 0 or self.time_crop > 0 or self.observation_dropout > 0

    def _epoch_data(self, X, lengths):
        """``epoch_data(rng) -> PathData`` for one training epoch: a fresh draw of the
        augmentation (:meth:`_augmented`; the caller's ``X`` is not modified); None
        without augmentation."""
        if not self._augments():
            return None

        def epoch_data(rng):  # each draw only when used: the others stay as they were
            n_cases, warp, drop = X.shape[0], self.time_warp > 0, self.observation_dropout > 0
            normals = rng.standard_normal((n_cases, WARP_PIECES)) if warp else None
            uniforms = rng.random((n_cases, X.shape[2])) if drop else None
            crops = rng.random((n_cases, 2)) if self.time_crop > 0 else None
            return self._paths(self._augmented(X, lengths, uniforms, normals, crops), lengths)

        return epoch_data

    def _augmented(self, X, lengths, uniforms, normals, crops):
        """A copy of ``X`` read at warped times (``time_warp``: log-slopes ``time_warp *
        normals``, (n_cases, :data:`~skfwp.path.WARP_PIECES`)) within a window of each
        case (``time_crop``: kept fraction ``1 - time_crop * crops[:, 0]``, offset
        ``crops[:, 1]``, :func:`~skfwp.path.crop_positions`), then with observations
        dropped where ``uniforms`` (n_cases, n) fall below ``observation_dropout``."""
        if self.time_warp > 0 or self.time_crop > 0:
            log_slopes = (
                self.time_warp * normals
                if self.time_warp > 0
                else np.zeros((X.shape[0], WARP_PIECES))
            )
            positions = warp_positions(lengths, log_slopes, X.shape[2])
            if self.time_crop > 0:
                kept = 1.0 - self.time_crop * crops[:, 0]
                positions = crop_positions(positions, lengths, kept, crops[:, 1])
            X = read_at(X, lengths, positions, keep=self.time_channel)
        if self.observation_dropout > 0:
            X = self._dropped(X, lengths, uniforms)
        return X

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

    def _split(self, targets, rng):
        """Training and validation indices (stratified by class where every class allows it)."""
        n = len(targets)
        if not self.early_stopping:
            return np.arange(n), None
        stratify, n_val = None, max(round(self.validation_fraction * n), 1)
        strata = self._strata(targets)
        if strata is not None and np.bincount(strata).min() >= 2:
            stratify = strata  # every class in both parts
            n_val = max(n_val, len(np.unique(strata)))
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

    def _batch_outputs(self, data, index):
        """Member outputs ``(n_members, batch, n_outputs)`` (one member without an ensemble)."""
        path = data.batch(index, self.device_)
        try:
            logits = self.module_(path, **self._solver_options())
        except AssertionError as exc:  # torchdiffeq's adaptive solvers: "underflow in dt"
            if "underflow" not in str(exc):
                raise
            raise NonFiniteStep(f"the adaptive solver's step size underflowed ({exc})") from None
        return logits if logits.dim() == 3 else logits.unsqueeze(0)

    def _train(self, data, targets, weights, rng, epoch_data=None):
        """The one training loop: AdamW, the task's weighted loss, ``lr_schedule``, early stopping.

        The bookkeeping lives in :mod:`skfwp._training`: an :class:`ImprovementMonitor`
        (best epoch, patience, the best weights under ``early_stopping``), an
        :class:`EpochRollback` (a step with a non-finite loss or gradient rolls the
        epoch back, divides the learning rate by 10 and runs the epoch again, at most
        ``_MAX_RETRIES`` times per fit) and, with ``average_epochs``, a
        :class:`WeightAverage` whose mean is the fitted weights. Ctrl-C keeps the best
        weights so far and warns; callbacks and ``max_time`` end training cleanly after
        an epoch; training ends on weights whose outputs are finite
        (:meth:`_ensure_finite`).
        """
        module = self.module_
        train_idx, val_idx = self._split(targets, rng)
        y_t = torch.as_tensor(targets)
        w_t = torch.as_tensor(weights, dtype=torch.float32)
        optimizer = torch.optim.AdamW(
            module.parameters(), lr=self.learning_rate_init, weight_decay=self.alpha
        )
        scheduler = self._lr_scheduler(optimizer)
        if not (self.warm_start and hasattr(self, "history_")):
            self.history_ = []
        score_key = f"val_{self._score_name}"
        monitor = ImprovementMonitor(
            self.tol, self.n_iter_no_change, val_idx is not None, score_key, self.loss_window
        )
        rollback = EpochRollback(module, optimizer, _MAX_RETRIES)
        average = WeightAverage(self.average_epochs) if self.average_epochs else None
        self.best_epoch_ = 0
        floor = self._loss_floor()
        started, epoch, stop_reason = time.perf_counter(), 0, None
        try:
            while epoch < self.max_iter:
                epoch += 1
                start = time.perf_counter()
                rollback.start_epoch()
                try:
                    train_data = data if epoch_data is None else epoch_data(rng)
                    order = rng.permutation(train_idx)
                    loss = self._run_epoch(train_data, order, y_t, w_t, optimizer)
                except NonFiniteStep as exc:
                    rollback.recover(exc, epoch, lambda: self._outputs_finite(data, train_idx))
                    epoch -= 1
                    continue
                record = {"epoch": epoch, "loss": loss}
                if val_idx is not None:
                    val_loss, val_score = self._evaluate(data, val_idx, y_t, w_t)
                    record.update({"val_loss": val_loss, score_key: val_score})
                stop = monitor.update(record, module)
                self.best_epoch_ = monitor.best_epoch
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(monitor.plateau_value)
                else:
                    scheduler.step()
                record["learning_rate"] = optimizer.param_groups[0]["lr"]
                record["seconds"] = time.perf_counter() - start
                self.history_.append(record)
                if average is not None:
                    average.update(module)
                if self.verbose:
                    self._print_epoch(record)
                if stop:
                    break
                if floor is not None and record["loss"] - floor < self.floor_tol:
                    stop_reason = f"the training loss reached its floor {floor:.4g} (floor_tol)"
                    break
                if any(callback(self, record) for callback in self.callbacks or ()):
                    stop_reason = "a callback"
                    break
                if self.max_time is not None and time.perf_counter() - started > self.max_time:
                    stop_reason = f"max_time={self.max_time}s"
                    break
        except KeyboardInterrupt:
            kept = "best weights so far." if monitor.best_state is not None else "current weights."
            warnings.warn(
                f"fit interrupted during epoch {epoch}; keeping the {kept}",
                UserWarning,
                stacklevel=3,
            )
            stop_reason = "KeyboardInterrupt"
        if monitor.best_state is not None:
            module.load_state_dict(monitor.best_state)
        elif average is not None and average.state() is not None:
            module.load_state_dict(average.state())
        self._ensure_finite(data, train_idx, *rollback.fallbacks)
        module.eval()
        self.n_iter_ = len(self.history_)
        self.stop_reason_ = stop_reason
        self.loss_curve_ = [r["loss"] for r in self.history_]
        if val_idx is not None:
            self.validation_scores_ = [r[score_key] for r in self.history_]
            self.best_validation_score_ = monitor.best_score

    def _loss_floor(self):
        """The least the training loss can be, where ``floor_tol`` ends training; None:
        no such stop (a regressor)."""
        return None

    def _lr_scheduler(self, optimizer):
        """The epoch-wise learning-rate schedule of ``lr_schedule``."""
        if self.lr_schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_iter)
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.5, patience=max(self.n_iter_no_change // 2, 1)
        )

    @torch.no_grad()
    def _outputs_finite(self, data, train_idx):
        """Whether the module's logits on the first training batch are finite."""
        was_training = self.module_.training
        self.module_.eval()
        try:
            logits = self._batch_outputs(data, train_idx[: self._batch_size(len(train_idx))])
        except NonFiniteStep:
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
            outputs = self._batch_outputs(data, index)  # (n_members, batch, n_outputs)
            target, w = y_t[index].to(device), w_t[index].to(device)
            losses = self._losses(outputs, target).mean(0)  # each member's own, averaged
            loss = (losses * w).sum() / w.sum().clamp_min(1e-12)
            if not torch.isfinite(loss):
                raise NonFiniteStep("non-finite loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grads = [p.grad for p in module.parameters() if p.grad is not None]
            if not torch.isfinite(torch.stack([g.abs().max() for g in grads])).all():
                raise NonFiniteStep("non-finite gradient")
            if self.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(module.parameters(), self.max_grad_norm)
            optimizer.step()
            total += float(loss.detach()) * float(w.sum())
            total_w += float(w.sum())
        return total / max(total_w, 1e-12)

    def _print_epoch(self, record):
        parts = [f"epoch {record['epoch']:4d}", f"loss {record['loss']:.4f}"]
        if "val_loss" in record:
            name = f"val_{self._score_name}"
            parts.append(f"val_loss {record['val_loss']:.4f}")
            parts.append(f"{name} {record[name]:.4f}")
        parts.append(f"lr {record['learning_rate']:.2e}")
        parts.append(f"{record['seconds']:.2f}s")
        print(" | ".join(parts), flush=True)

    @torch.no_grad()
    def _evaluate(self, data, index, y_t, w_t):
        """Weighted validation loss and score of the cases ``index`` (full paths)."""
        self.module_.eval()
        outputs = torch.empty(len(index), self._n_outputs())
        for batch in prediction_batches(data.ends[index].numpy()):
            rows = self._combine(self._batch_outputs(data, index[batch]))
            outputs[torch.as_tensor(batch)] = rows.float().cpu()
        target, w = y_t[index], w_t[index]
        losses = self._losses(outputs.unsqueeze(0), target)[0]
        loss = float((losses * w).sum() / w.sum().clamp_min(1e-12))
        return loss, self._validation_score(outputs, target, w)

    # -- prediction -------------------------------------------------------------------
    @torch.no_grad()
    def _outputs(self, X):
        """The module's outputs (combined over members and copies), float64 (n_cases, n_outputs)."""
        check_is_fitted(self)
        X, lengths = check_X(X, n_channels=self.n_features_in_)
        check_float32_range(X)
        self.module_.eval()
        # cases turned into spline coefficients at once: about 1M observation times
        chunk = min(1024, max(2**20 // X.shape[2], 1))
        outputs = torch.empty(len(X), self._n_outputs(), dtype=torch.float64)
        with _torch_threads(self.n_threads):
            for lo in range(0, len(X), chunk):
                part = slice(lo, lo + chunk)
                outputs[part] = self._augmented_outputs(X[part], lengths[part])
        bad = np.flatnonzero(~torch.isfinite(outputs).all(dim=1).numpy())
        if bad.size:
            raise ValueError(
                f"The model's output is not finite for case(s) {bad[:10].tolist()} of X "
                f"(largest |value| there {np.nanmax(np.abs(X[bad])):.3g}): they lie too far "
                "outside the training data's range for float32 arithmetic. Rescale X as "
                "the training data was (e.g. with the same ChannelStandardScaler)."
            )
        return outputs

    def _path_outputs(self, X, lengths):
        """Outputs of cases ``X`` read as they are, in batches of the memory budget."""
        data = self._paths(X, lengths)
        outputs = torch.empty(len(X), self._n_outputs(), dtype=torch.float64)
        for batch in prediction_batches(data.ends.numpy()):
            outputs[torch.as_tensor(batch)] = self._predict_batch(data, batch)
        return outputs

    def _augmented_outputs(self, X, lengths):
        """:meth:`_path_outputs`, or with ``test_time_augmentation`` the full path and its
        augmented copies (:meth:`_augmented`, drawn by :meth:`_case_draws`) combined as
        members are (:meth:`_combine`: a classifier's mean probability, a regressor's
        mean output)."""
        outputs = self._path_outputs(X, lengths)
        n_copies = self.test_time_augmentation if self._augments() else 0
        if not n_copies:
            return outputs
        draws = zip(*self._case_draws(X, lengths, n_copies), strict=True)
        copies = [self._path_outputs(self._augmented(X, lengths, *draw), lengths) for draw in draws]
        return self._combine(torch.stack([outputs, *copies]))

    @staticmethod
    def _case_draws(X, lengths, n_copies):
        """``(n_copies, n_cases, n)`` uniforms, ``(n_copies, n_cases, WARP_PIECES)``
        normals and ``(n_copies, n_cases, 2)`` crop uniforms (the arguments of
        :meth:`_augmented`), each case's from a generator seeded by a digest of its own
        observed values (so they do not depend on the batch)."""
        uniforms = np.empty((n_copies, X.shape[0], X.shape[2]))
        normals = np.empty((n_copies, X.shape[0], WARP_PIECES))
        crops = np.empty((n_copies, X.shape[0], 2))
        for i, n_i in enumerate(lengths):
            case = np.array(X[i, :, :n_i], dtype=np.float64) + 0.0  # -0.0 hashes as 0.0
            case[np.isnan(case)] = np.nan  # one NaN bit pattern
            digest = hashlib.blake2b(case.tobytes(), digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(digest, "little"))
            uniforms[:, i, :n_i] = rng.random((n_copies, n_i))  # not the padded width
            uniforms[:, i, n_i:] = 1.0  # past the case's end: nothing to drop
            normals[:, i] = rng.standard_normal((n_copies, WARP_PIECES))
            crops[:, i] = rng.random((n_copies, 2))  # drawn last: the others as before
        return uniforms, normals, crops

    def _predict_batch(self, data, index):
        """Outputs of one batch; a case that breaks the solver gets a row of NaN, alone."""
        try:
            return self._combine(self._batch_outputs(data, index)).double().cpu()
        except NonFiniteStep:
            if len(index) == 1:
                return torch.full((1, self._n_outputs()), torch.nan, dtype=torch.float64)
            rows = [self._predict_batch(data, index[i : i + 1]) for i in range(len(index))]
            return torch.cat(rows)


class StateTrajectoriesMixin:
    """``trajectories(X)`` for a model whose module has ``trajectory(path, **options)``
    (the gated neural ODE, the N-CODE): the solver state at every knot."""

    def _state_module(self, caller):
        """A float64 CPU copy of the fitted module, for ``caller`` (named in the error):
        a seed ensemble or a bidirectional model is refused, its members each having a
        state of their own."""
        check_is_fitted(self)
        if self.bidirectional:
            raise ValueError(
                f"{caller} reads one model's state, and this estimator reads each case "
                "with two models, one per direction of time (bidirectional=True); fit "
                "it with bidirectional=False."
            )
        if self.n_estimators > 1:
            raise ValueError(
                f"{caller} reads one model's state, and this estimator is a seed ensemble "
                f"of n_estimators={self.n_estimators} models, each with a flow of its own; "
                "fit it with n_estimators=1."
            )
        return copy.deepcopy(self.module_).cpu().double().eval()

    def trajectories(self, X):
        """Each case's state ``h(s)`` from ``s = 0`` to its own final knot ``T_i``.

        Solved in float64 on the CPU with the fitted solver settings, on the path
        read as it is (no observation dropout).

        Parameters
        ----------
        X : array-like of shape (n_cases, n_channels, n_timepoints)

        Returns
        -------
        list of ndarray of shape (T_i + 1, hidden_size)
            One array per case, at the knots ``s = 0, 1, ..., T_i`` of its path (one
            per observation, or per log-signature window).
        """
        model = self._state_module("trajectories")
        X, lengths = check_X(X, n_channels=self.n_features_in_)
        data = self.input_path_.transform(X, lengths, dtype=torch.float64)
        path = data.batch(np.arange(len(X)))
        options = {**self._solver_options(), "adjoint": False}
        options.pop("solver_backend", None)
        with torch.no_grad():
            states = model.trajectory(path, **options).numpy()  # (n_cases, n_knots, H)
        return [states[i, : int(end) + 1] for i, end in enumerate(path.ends)]


class BaseSequenceClassifier(ClassifierMixin, BaseSequenceEstimator):
    """Base class of skfwp classifiers (not for direct use); see the module docstring.

    The module's outputs are logits, one per class of ``classes_`` (sorted labels);
    the loss is the weighted cross-entropy with ``label_smoothing`` and
    ``class_weight``; members of a seed ensemble and test-time copies are combined as
    the log of their mean probability; the validation score is accuracy.

    Examples
    --------
    A new model is a torch module and a small subclass; everything else (input
    formats, validation, the training loop, persistence) comes from the shell:

    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from skfwp.base import BaseSequenceClassifier
    >>> from skfwp.nn.solver import ModelField, integrate
    >>> class Leaky(nn.Module):  # dh/ds = tanh(U X(s)) − h, h(0) = 0, logits W h(T_i)
    ...     def __init__(self, n_channels, n_outputs, hidden_size):
    ...         super().__init__()
    ...         self.drive = nn.Linear(n_channels, hidden_size)
    ...         self.output = nn.Linear(hidden_size, n_outputs)
    ...     def forward_field(self, s, h, path):
    ...         return torch.tanh(self.drive(path.evaluate(s))) - h
    ...     def forward(self, path, **solver_options):
    ...         h0 = path.coeffs.new_zeros(path.batch_size, self.output.in_features)
    ...         return self.output(integrate(ModelField(self), h0, path, **solver_options))
    >>> class LeakyClassifier(BaseSequenceClassifier):
    ...     _model_params = {"hidden_size": 4}
    ...     def _build_module(self, n_path_channels, n_outputs):
    ...         return Leaky(n_path_channels, n_outputs, self.hidden_size)
    >>> X = np.random.default_rng(0).normal(size=(12, 2, 8))
    >>> y = np.where(X[:, 0].mean(axis=1) > 0, "up", "down")
    >>> clf = LeakyClassifier(max_iter=3, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape, clf.n_iter_, "hidden_size" in clf.get_params()
    ((2, 2), 3, True)
    """

    _task = "classification"
    _task_fitted_doc = CLASSIFIER_FITTED_DOC
    _score_name = "accuracy"
    _targets_name = "classes"

    def _n_outputs(self):
        return len(self.classes_)

    def _encode_targets(self, y, n_cases, sample_weight, warm):
        """``(class index per case, per-case weights, {"classes_": labels})``."""
        y = check_y(y, n_cases)
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
        return y_index.astype(np.int64), weights, {"classes_": classes}

    def _same_targets(self, target_attributes):
        return np.array_equal(target_attributes["classes_"], self.classes_)

    @staticmethod
    def _strata(targets):
        return targets

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

    @staticmethod
    def _combine(member_logits):
        """``(n_members, batch, C)`` -> ``(batch, C)``: the logits of one member, or the
        log of the members' mean probability."""
        if member_logits.shape[0] == 1:
            return member_logits[0]
        log_p = torch.log_softmax(member_logits, dim=-1)
        return torch.logsumexp(log_p, dim=0) - math.log(member_logits.shape[0])

    def _loss_floor(self):
        """The entropy of the smoothed target, ``-(1 - ε + ε/K) log(1 - ε + ε/K) - (K - 1)
        (ε/K) log(ε/K)`` for ``K`` classes and ``ε = label_smoothing`` (0 without it): the
        least a case's smoothed cross-entropy can be, so the least the training loss (a
        weighted mean of them) can be. None with ``floor_tol=None``."""
        if self.floor_tol is None:
            return None
        k, eps = len(self.classes_), self.label_smoothing
        if eps == 0:
            return 0.0
        on, off = 1 - eps + eps / k, eps / k
        return -(on * math.log(on) + (k - 1) * off * math.log(off))

    def _losses(self, outputs, target, training=True):
        """Cross-entropy ``(n_members, batch)`` of logits ``(n_members, batch, C)``;
        label smoothing in training only (the validation loss is the plain one)."""
        losses = torch.nn.functional.cross_entropy(
            outputs.flatten(0, 1),
            target.repeat(outputs.shape[0]),
            reduction="none",
            label_smoothing=self.label_smoothing if training else 0.0,
        )
        return losses.view(outputs.shape[:2])

    @staticmethod
    def _validation_score(outputs, target, w):
        return float((outputs.argmax(1) == target).float().mean())

    def predict_proba(self, X):
        """Class probabilities, ``ndarray of shape (n_cases, n_classes)``; rows sum to 1."""
        return torch.softmax(self._outputs(X), dim=1).numpy()

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`, ``ndarray of shape (n_cases, n_classes)``."""
        return torch.log_softmax(self._outputs(X), dim=1).numpy()

    def decision_function(self, X):
        """Logits, ``ndarray of shape (n_cases, n_classes)`` (``(n_cases,)`` for 2 classes)."""
        logits = self._outputs(X)
        if logits.shape[1] == 2:
            return (logits[:, 1] - logits[:, 0]).numpy()
        return logits.numpy()

    def predict(self, X):
        """Predicted labels, ``ndarray of shape (n_cases,)``, of the type of ``y``."""
        index = self._outputs(X).argmax(1).numpy()
        return self.classes_[index]


class BaseSequenceRegressor(RegressorMixin, BaseSequenceEstimator):
    """Base class of skfwp regressors (not for direct use); see the module docstring.

    Targets are standardised inside the estimator: the module learns
    ``(y - target_mean_) / target_scale_`` (the training targets' weighted mean and
    standard deviation per output; a constant output has scale 1), with the weighted
    mean squared error over outputs as loss, and ``predict`` returns
    ``target_mean_ + target_scale_ * output``. Members of a seed ensemble and
    test-time copies average their outputs; the validation score is R² (mean over
    outputs, ``sklearn.metrics.r2_score``). A 1D ``y`` is predicted as 1D, a 2D ``y``
    with several columns as 2D (as ``MLPRegressor``).

    Examples
    --------
    The model mixins of :mod:`skfwp.delta`, :mod:`skfwp.gated`, :mod:`skfwp.ncde` and
    :mod:`skfwp.ncode` serve both task bases; a regressor is one more class:

    >>> import numpy as np
    >>> from skfwp import NeuralCDERegressor
    >>> X = np.random.default_rng(0).normal(size=(16, 2, 8))
    >>> y = np.stack([X[:, 0].mean(axis=1), X[:, 1].std(axis=1)], axis=1)  # 2 targets
    >>> reg = NeuralCDERegressor(hidden_size=4, vector_field_width=8, max_iter=3,
    ...                          random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape, reg.n_outputs_
    ((3, 2), 2)
    """

    _task = "regression"
    _task_excludes = CLASSIFIER_ONLY
    _task_fitted_doc = REGRESSOR_FITTED_DOC
    _score_name = "r2"
    _targets_name = "number of targets"
    _plain_fitted = (
        *BaseSequenceEstimator._plain_fitted,
        "n_outputs_",
        "target_mean_",
        "target_scale_",
    )
    _array_fitted = ("target_mean_", "target_scale_")

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _n_outputs(self):
        return self.n_outputs_

    def _encode_targets(self, y, n_cases, sample_weight, warm):
        """``(standardised targets (n_cases, n_outputs) float32, weights, attributes)``;
        a warm start keeps the previous fit's standardisation."""
        y2d, n_outputs = check_regression_y(y, n_cases)
        weights = check_weight_total(sample_weight, "sample_weight")
        if warm and self.n_outputs_ == n_outputs:
            mean, scale = self.target_mean_, self.target_scale_
        else:
            mean = np.average(y2d, axis=0, weights=weights)
            scale = np.sqrt(np.average((y2d - mean) ** 2, axis=0, weights=weights))
            scale = np.where(scale > 0, scale, 1.0)
        attributes = {"n_outputs_": n_outputs, "target_mean_": mean, "target_scale_": scale}
        return ((y2d - mean) / scale).astype(np.float32), weights, attributes

    def _same_targets(self, target_attributes):
        return target_attributes["n_outputs_"] == self.n_outputs_

    @staticmethod
    def _strata(targets):
        return None

    @staticmethod
    def _combine(member_outputs):
        """``(n_members, batch, n_outputs)`` -> ``(batch, n_outputs)``: their mean."""
        return member_outputs.mean(0)

    @staticmethod
    def _losses(outputs, target, training=True):
        """Squared error ``(n_members, batch)``, averaged over outputs."""
        return (outputs - target).square().mean(-1)

    @staticmethod
    def _validation_score(outputs, target, w):
        return float(r2_score(target.numpy(), outputs.numpy(), sample_weight=w.numpy()))

    def predict(self, X):
        """Predicted targets, ``ndarray of shape (n_cases,)`` for one target, else
        ``(n_cases, n_outputs)``."""
        y = self._outputs(X).numpy() * self.target_scale_ + self.target_mean_
        return y.ravel() if self.n_outputs_ == 1 else y
