"""The parameter schema of every skfwp estimator: defaults, constraints, docs.

The estimators' base (:mod:`skfwp.base`) composes each class's ``__init__`` from its
model's own parameters and the shared ones below (:func:`keyword_init`), and fills the
``{common}`` and ``{fitted}`` slots of its docstring from the texts below. Names
follow ``sklearn.neural_network.MLPClassifier`` / ``MLPRegressor``.
"""

from __future__ import annotations

import inspect
import numbers

import torch
from sklearn.utils._param_validation import Interval, StrOptions

from .nn.solver import METHODS
from .path import INTERPOLATIONS

__all__ = [
    "CLASSIFIER_FITTED_DOC",
    "CLASSIFIER_ONLY",
    "COMMON_CONSTRAINTS",
    "COMMON_PARAMS",
    "COMMON_PARAMS_DOC",
    "FITTED_ATTRIBUTES_DOC",
    "REGRESSOR_DOC",
    "REGRESSOR_FITTED_DOC",
    "SECTIONS_DOC",
    "WARP_RECIPE",
    "keyword_init",
    "parameters_doc",
    "shown_defaults",
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
    "lr_schedule": "plateau",
    "alpha": 0.0,
    "early_stopping": False,
    "validation_fraction": 0.1,
    "n_iter_no_change": 20,
    "loss_window": 1,
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
    "floor_tol": None,
    "observation_dropout": 0.3,
    "time_warp": 0.0,
    "time_crop": 0.0,
    "average_epochs": 0,
    "n_estimators": 1,
    "bidirectional": False,
    "test_time_augmentation": 8,
}

#: The time-warp training recipe: warped training cases and test-time copies, three
#: times the epochs and a longer patience (augmented cases need them: 200 epochs left the
#: cropped, warped cases of several sets unfitted), watched on the mean loss of the last
#: 10 epochs (the augmented epochs' losses are noisy), and 16 test-time copies (the
#: mean of more copies is less noisy). The defaults of the classifiers it was measured
#: for on the development list (the Delta FWP and the Neural CDE, three seeds each;
#: docs/benchmarks.md); the others keep COMMON_PARAMS.
WARP_RECIPE = {
    "time_warp": 0.1,
    "max_iter": 300,
    "n_iter_no_change": 50,
    "loss_window": 10,
    "test_time_augmentation": 16,
}

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
    method : str, default={method}
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
        AdamW's initial learning rate (see ``lr_schedule``).
    lr_schedule : {{"plateau", "cosine"}}, default={lr_schedule}
        How the learning rate moves from epoch to epoch. "plateau": halved when the
        monitored score (training loss, or validation loss with ``early_stopping``)
        has not improved for ``max(n_iter_no_change // 2, 1)`` epochs. "cosine":
        ``learning_rate_init * (1 + cos(pi * e / max_iter)) / 2`` after epoch ``e``
        (Loshchilov & Hutter 2017, without restarts), reaching 0 at ``max_iter``.
    alpha : float, default={alpha}
        Decoupled weight decay (AdamW, Loshchilov & Hutter 2019): each step shrinks
        every weight by ``learning_rate * alpha`` besides the Adam step.
    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training cases (stratified by class for
        a classifier), stop when the validation score (accuracy; R² for a regressor)
        stops improving, and restore the best weights.
    validation_fraction : float, default=0.1
        Share of training cases held out when ``early_stopping``.
    n_iter_no_change : int, default={n_iter_no_change}
        Epochs without an improvement larger than ``tol`` before training stops.
    loss_window : int, default={loss_window}
        Without ``early_stopping``, the patience and the "plateau" schedule watch the
        mean training loss of the last ``loss_window`` epochs (1: each epoch's own).
        Augmented training cases make the epoch's loss noisy; averaging keeps one
        lucky epoch from setting a best the next ``n_iter_no_change`` epochs must beat
        (:class:`skfwp._training.ImprovementMonitor`).
    tol : float, default=1e-4
        Minimum improvement of the monitored score (training loss, or validation
        score with validation loss as tie-break when ``early_stopping``).
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
        afresh (same classes or number of targets, and channels, required).
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
    floor_tol : float or None, default={floor_tol}
        Training ends once an epoch's training loss is within ``floor_tol`` of the least
        it can be: the entropy of the label-smoothed target, which a case's
        cross-entropy reaches only where the predicted probabilities equal that target
        (0 without label smoothing). Nothing is then left to learn on the training set;
        ``stop_reason_`` says so. None: off.
    observation_dropout : float in [0, 1), default={observation_dropout}
        Augmentation: in every epoch, each training case's observations other than its
        first and last are dropped (made NaN in every channel but ``time_channel``) with
        this probability, and the path is rebuilt through the remaining ones at their
        true times: a continuous-time model reads the same series sampled differently.
    time_warp : float, default={time_warp}
        Augmentation: in every epoch, each training case is read at randomly warped
        times (:func:`skfwp.path.warp_positions`: four stretches sped up or slowed down
        by factors ``exp(time_warp * z)``, ``z`` standard normal; values read linearly
        between observations; a ``time_channel`` keeps its timestamps), before
        ``observation_dropout``. 0: off.
    time_crop : float in [0, 1), default={time_crop}
        Augmentation (window slicing): in every epoch, each training case is read over
        a random window of its time span, ``1 - time_crop * u`` of it (``u`` uniform
        on [0, 1]) at a uniformly random offset, stretched back to its length
        (:func:`skfwp.path.crop_positions`; composed with ``time_warp``, before
        ``observation_dropout``). 0: off.
    average_epochs : int, default={average_epochs}
        The fitted weights are the mean of the weights at the end of the last
        ``average_epochs`` epochs (stochastic weight averaging, Izmailov et al. 2018;
        :class:`skfwp._training.WeightAverage`). 0: the last epoch's weights. With
        ``early_stopping`` the best epoch's weights are kept instead.
    n_estimators : int, default={n_estimators}
        Seed ensemble: this many copies of the model, each initialised from its own
        seed, trained side by side on the same batches (the loss is their mean, so each
        copy's Adam step is the one it would take alone) and averaged at prediction (a
        classifier's probabilities, a regressor's outputs). ``module_`` is then a
        :class:`skfwp.nn.ensemble.SeedEnsemble`.
    bidirectional : bool, default={bidirectional}
        Read each case twice, with two models of the same architecture and their own
        weights: one from the first observation to the last, one from the last to the
        first (:func:`skfwp.path.reverse_cases`; a ``time_channel`` is mirrored), and
        sum their outputs (one linear read-out of both final states). Each model
        remembers best what it read last, so together they see both ends of a series.
        Twice the parameters and about twice the solver work. ``module_`` (and each
        member of a seed ensemble) is then a :class:`skfwp.nn.ensemble.Bidirectional`;
        state plots and ``trajectories`` need ``bidirectional=False``.
    test_time_augmentation : int, default={test_time_augmentation}
        At prediction, average the predictions (a classifier's class probabilities, a
        regressor's outputs) of the full path and of this many copies augmented as in
        training (``time_warp`` and ``time_crop``, then ``observation_dropout``; with
        all 0 there is nothing to augment and the full path alone is read). A case's
        draws come from a generator seeded by its own values, so it predicts the same
        alone, in any batch and at every call. 0: the full path only. Costs this many
        extra predictions; fit is unchanged. The validation score of ``early_stopping``
        reads the full path only."""

#: The fitted attributes every skfwp estimator has, for the ``{fitted}`` slot of its
#: docstring (after its own ``module_`` and its task's attributes, below).
FITTED_ATTRIBUTES_DOC = """\
n_features_in_ : int
        Number of input channels seen in ``fit``.
    input_path_ : skfwp.path.InputPath
        The fitted input path (time and count scales).
    device_ : torch.device
        Where the module lives.
    history_ : list of dict
        One dict per epoch: ``epoch``, ``loss``, ``learning_rate``, ``seconds`` and,
        with early stopping, ``val_loss`` and the validation score (``val_accuracy``;
        a regressor's ``val_r2``).
    loss_curve_ : list of float
        Training loss per epoch.
    n_iter_ : int
        Epochs run.
    best_epoch_ : int
        Epoch of the best monitored score (whose weights are kept with early stopping).
    stop_reason_ : str or None
        What ended training early ("a callback", "max_time=...s", "KeyboardInterrupt",
        a classifier's "the training loss reached its floor ..." of ``floor_tol``), or
        None (``max_iter`` epochs, or ``n_iter_no_change`` without improvement).
    validation_scores_ : list of float
        Validation accuracy (a regressor's R²) per epoch (only with ``early_stopping``).
    best_validation_score_ : float
        The best of them (only with ``early_stopping``)."""

#: The fitted attributes of a classifier, before :data:`FITTED_ATTRIBUTES_DOC`.
CLASSIFIER_FITTED_DOC = """\
classes_ : ndarray of shape (n_classes,)
        Class labels seen in ``fit``.
    """

#: The fitted attributes of a regressor, before :data:`FITTED_ATTRIBUTES_DOC`.
REGRESSOR_FITTED_DOC = """\
n_outputs_ : int
        Number of targets (columns of ``y``) seen in ``fit``.
    target_mean_, target_scale_ : ndarray of shape (n_outputs,)
        The training targets' weighted mean and standard deviation: the module learns
        ``(y - target_mean_) / target_scale_``, and ``predict`` undoes it.
    """

#: The body of a regressor's docstring, after its one-line summary: a model's
#: regressor says only what differs from its classifier (``_regressor_doc`` names the
#: torch module, its module in :mod:`skfwp.nn` and the example's small settings).
REGRESSOR_DOC = """

    The same model, parameters and solvers as :class:`{classifier}` (the equations are
    there and in :mod:`skfwp.nn.{nn}`); the module's last linear layer maps to
    ``n_outputs`` standardised targets, trained on the weighted mean squared error
    (:class:`skfwp.base.BaseSequenceRegressor` says how targets are standardised).

    {{sections}}

    See Also
    --------
    {classifier} : the classifier on the same model.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp import {name}
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 2, 12))
    >>> y = X[:, 0].mean(axis=1) - X[:, 1].mean(axis=1)
    >>> reg = {name}({example}, max_iter=5, random_state=0)
    >>> reg.fit(X, y).predict(X[:3]).shape
    (3,)
    """

#: The ``{sections}`` slot of every estimator's docstring: its parameters (the model's
#: own ``{model}``, then the shared ``{common}``) and fitted attributes (``module_``, of
#: the model's ``{module}`` class, then the task's and the shared ``{fitted}``).
SECTIONS_DOC = """\
Parameters
    ----------
    {model}
    {common}

    Attributes
    ----------
    module_ : {module}
        The fitted torch module.
    {fitted}"""

#: Shared parameters only a classifier takes (a regressor's loss is the squared error).
CLASSIFIER_ONLY = ("class_weight", "label_smoothing", "floor_tol")


def shown_defaults(defaults):
    """``{name: text}`` for a docstring's ``default=`` fields: strings quoted, the rest as
    ``str`` gives them (``(128,)``, ``0.1``, ``None``)."""
    return {k: f'"{v}"' if isinstance(v, str) else v for k, v in defaults.items()}


def parameters_doc(names, defaults):
    """The ``{common}`` slot of a docstring: :data:`COMMON_PARAMS_DOC`'s entries of
    ``names`` (in its order), its ``{default}`` fields filled from ``defaults``."""
    values = {**COMMON_PARAMS, **defaults}  # the dropped entries' fields need a value too
    text = COMMON_PARAMS_DOC.format(**shown_defaults(values))
    entries, current = [], []
    for line in text.splitlines():
        if current and line.startswith("    ") and not line.startswith("     "):
            entries.append(current)  # a new ``name : type`` line (4 spaces deep)
            current = []
        current.append(line)
    entries.append(current)
    kept = []
    for entry in entries:
        entry_names = {n.strip() for n in entry[0].split(" : ")[0].split(",")}
        if entry_names <= set(names):
            kept.append("\n".join(entry).strip() if not kept else "\n".join(entry))
    return "\n".join(kept)


COMMON_CONSTRAINTS = {
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
    "lr_schedule": [StrOptions({"plateau", "cosine"})],
    "alpha": [Interval(numbers.Real, 0, None, closed="left")],
    "early_stopping": ["boolean"],
    "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
    "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
    "loss_window": [Interval(numbers.Integral, 1, None, closed="left")],
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
    "time_warp": [Interval(numbers.Real, 0, None, closed="left")],
    "time_crop": [Interval(numbers.Real, 0, 1, closed="left")],
    "floor_tol": [Interval(numbers.Real, 0, None, closed="left"), None],
    "average_epochs": [Interval(numbers.Integral, 0, None, closed="left")],
    "n_estimators": [Interval(numbers.Integral, 1, None, closed="left")],
    "bidirectional": ["boolean"],
    "test_time_augmentation": [Interval(numbers.Integral, 0, None, closed="left")],
}


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
    >>> from skfwp._params import keyword_init
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
