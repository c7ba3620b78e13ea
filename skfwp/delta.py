"""ContinuousDeltaClassifier and ContinuousDeltaRegressor: the continuous-time Fast
Weight Programmer."""

from __future__ import annotations

import numbers

from sklearn.utils._param_validation import Interval, StrOptions

from ._params import WARP_RECIPE
from ._solver_backend import SolverBackendMixin
from .base import BaseSequenceClassifier, BaseSequenceEstimator, BaseSequenceRegressor
from .nn.delta import LEARNING_RULES, READOUTS, VALUE_INPUTS, VARIANTS, ContinuousFWP

__all__ = ["ContinuousDeltaClassifier", "ContinuousDeltaRegressor"]


#: The model's own parameters, the ``{model}`` slot of both estimators' docstrings.
_PARAMETERS_DOC = """\
learning_rule : {{"delta", "hebb", "oja", "hebb_released", "oja_released"}}, default="delta"
        The continuous learning rule that programs the fast weights: MODELS.md's
        Delta, Hebb and Oja, or the forms of the paper's released code:
        ``"hebb_released"`` (the raw rate ``b~``, no sigmoid, and no tanh on the
        value: ``dW/ds = b~ v~ kᵀ``) and ``"oja_released"`` (the correction inside the
        key softmax: ``dW/ds = beta v softmax(k~ − Wᵀ v)ᵀ``; not affine in ``W``:
        the fixed-grid fast path).
    post_tanh : bool, default=False
        Delta rule only: ``dW/ds = beta tanh(v~ − W k) kᵀ`` with the raw value ``v~``.
    variant : {{"cde", "ode", "recurrent"}}, default="cde"
        ``"cde"``: keys and rates from ``dX/ds`` (the paper's best); ``"ode"``: from
        ``X``; ``"recurrent"``: as ``"cde"`` plus feedback of the fast net's output.
    n_heads : int, default=8
        Number of heads; ``hidden_size`` must be divisible by it. With the default
        ``hidden_size=64``: eight ``8 x 8`` fast weight matrices, 512 numbers read out
        (more heads measured better on the development data sets with the matrix
        read-out; docs/models/continuous_delta.md).
    ff_dim : int or None, default=None
        Width of the readout feed-forward block; None means ``4 * hidden_size``.
    readout : {{"matrix", "query"}}, default="matrix"
        What the readout reads from the final fast weights ``W(T_i)``: ``"matrix"``,
        every entry (``z = W_o vec(W)``); ``"query"``, the fast net's answer to one
        query from the path's last stretch (``z = W_o W q``, ``q = softmax(W_q a)``),
        the paper's and MODELS.md's read-out. ``"matrix"`` is a design choice of
        skfwp: on the development data sets it scored higher
        (docs/models/continuous_delta.md).
    standardize_derivative : bool, default=True
        ``variant`` "cde" and "recurrent": divide the path's derivative, per channel,
        by the RMS of the training data's increments between observations before the
        slow net reads it (``InputPath.increment_rms_``). False reads the raw
        ``dX/ds`` as the reference code does, which a long smooth series makes so
        small that keys and rates barely see the data (:mod:`skfwp.nn.delta`; the
        measurements are in docs/models/continuous_delta.md).
    value_input : {{"path", "derivative"}}, default="path"
        What the slow net's values read: the path ``X`` (MODELS.md: ``v = tanh(W_v X +
        b_v)``) or the scaled derivative ``c ⊙ dX/ds`` that keys and rates read (the
        released EigenWorms model takes keys, rates and values from the log-signature
        increments).
    initial_map : bool, default=False
        Start from ``W(0)`` programmed by a learned linear map ``L`` of the first
        observation: the slow net reads ``p = L X(0) + b_L`` as both its key/rate
        input and its value input (the released EigenWorms model; with
        ``post_tanh=True``, ``value_input="derivative"``, ``logsig_window=4`` and
        ``logsig_depth=1``, that model's configuration, docs/reproducing.md). False:
        ``W(0)`` from the path's first derivative and value, as every later step.
    solver_backend : {{"auto", "fast", "generic"}}, default="auto"
        ``"fast"``: a fast path (:mod:`skfwp.nn.fast_solver`) that evaluates the slow
        net's input terms at every solver stage in one batched call: for a learning
        rule affine in ``W`` (``variant`` "cde" or "ode", ``post_tanh=False``, any rule
        but "oja_released") the rank-one solver with a hand-written, checkpointed
        backward, otherwise the fixed-grid loop. It needs ``method`` "euler",
        "midpoint" or "rk4" and ``adjoint=False``, and raises a ValueError naming the
        setting otherwise. ``"generic"``: the torchdiffeq solver, one slow-net call per
        stage. ``"auto"``: fast where it applies, generic otherwise. Both give the same
        logits and gradients up to float rounding."""


class _DeltaModel(SolverBackendMixin):
    """The parameters and torch module of the continuous-time Fast Weight Programmer,
    shared by :class:`ContinuousDeltaClassifier` and :class:`ContinuousDeltaRegressor`."""

    _doc_fragments = {"model": _PARAMETERS_DOC, "module": "ContinuousFWP"}

    _model_params = {
        "learning_rule": "delta",
        "post_tanh": False,
        "variant": "cde",
        "n_heads": 8,
        "ff_dim": None,
        "readout": "matrix",
        "standardize_derivative": True,
        "value_input": "path",
        "initial_map": False,
        "solver_backend": "auto",
        "hidden_size": 64,
    }
    #: Files saved before ``readout`` existed hold query read-outs.
    _saved_before = {**BaseSequenceEstimator._saved_before, "readout": "query"}
    _tiny_params = {"n_heads": 2, "ff_dim": 8}
    _model_constraints = {
        "learning_rule": [StrOptions(set(LEARNING_RULES))],
        "post_tanh": ["boolean"],
        "variant": [StrOptions(set(VARIANTS))],
        "n_heads": [Interval(numbers.Integral, 1, None, closed="left")],
        "ff_dim": [Interval(numbers.Integral, 1, None, closed="left"), None],
        "readout": [StrOptions(set(READOUTS))],
        "standardize_derivative": ["boolean"],
        "value_input": [StrOptions(set(VALUE_INPUTS))],
        "initial_map": ["boolean"],
        "solver_backend": SolverBackendMixin.BACKEND_CONSTRAINT,
    }

    def _check_params(self):
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be divisible by n_heads={self.n_heads}."
            )
        if self.post_tanh and self.learning_rule != "delta":
            raise ValueError(
                f"post_tanh=True applies to learning_rule='delta' only, not {self.learning_rule!r}."
            )
        super()._check_params()  # solver_backend="fast" with settings it cannot run

    def _build_module(self, n_path_channels, n_outputs):
        return ContinuousFWP(
            n_path_channels,
            n_outputs,
            hidden_size=self.hidden_size,
            n_heads=self.n_heads,
            ff_dim=self.ff_dim,
            learning_rule=self.learning_rule,
            post_tanh=self.post_tanh,
            variant=self.variant,
            readout=self.readout,
            initial_map=self.initial_map,
            value_input=self.value_input,
            derivative_scale=(
                [1.0 / r for r in self.input_path_.increment_rms_]
                if self.standardize_derivative
                else 1.0
            ),
        )


class ContinuousDeltaClassifier(_DeltaModel, BaseSequenceClassifier):
    """Continuous-time Fast Weight Programmer classifier (Irie et al., NeurIPS 2022).

    A slow net reads the input path and continuously programs the fast weights
    ``W(s)`` (one ``d x d`` matrix per head) through a learning rule::

        hebb :  dW/ds = beta v kᵀ
        oja  :  dW/ds = beta v (k − Wᵀ v)ᵀ
        delta:  dW/ds = beta (v − W k) kᵀ

    with keys ``k`` (softmax) and learning rate ``beta`` (sigmoid) from the path's
    derivative (``variant="cde"``) or value (``"ode"``), values ``v = tanh(W_v X)``,
    ``W(0)`` one Hebbian step from the first observation, and a Transformer-style
    readout of the fast weights ``W(T_i)`` at each case's own final time. See
    :mod:`skfwp.nn.delta` for the full equations.

    {sections}

    See Also
    --------
    NeuralCDEClassifier : the Neural CDE baseline.

    References
    ----------
    .. [1] K. Irie, F. Faccio, J. Schmidhuber. "Neural Differential Equations for
       Learning to Program Neural Nets Through Continuous Learning Rules".
       NeurIPS 2022, arXiv:2206.01649.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp import ContinuousDeltaClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 2, 12))
    >>> y = np.where(X[:, 0].mean(axis=1) > 0, "up", "down")
    >>> clf = ContinuousDeltaClassifier(hidden_size=8, n_heads=2, max_iter=5, random_state=0)
    >>> clf.fit(X, y).predict(X[:3]).shape
    (3,)
    """

    #: The time-warp recipe (skfwp._params.WARP_RECIPE) and window slicing
    #: (``time_crop``), each measured on the development list (docs/benchmarks.md); the
    #: regressor keeps the shared defaults (not measured there).
    _model_params = {**_DeltaModel._model_params, **WARP_RECIPE, "time_crop": 0.1}


class ContinuousDeltaRegressor(_DeltaModel, BaseSequenceRegressor):
    """Continuous-time Fast Weight Programmer regressor."""

    _regressor_doc = {"nn": "delta", "example": "hidden_size=8, n_heads=2"}
