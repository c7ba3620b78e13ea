"""NeuralCDEClassifier and NeuralCDERegressor: the Neural CDE baseline of every skfwp
paper."""

from __future__ import annotations

import numbers

from sklearn.utils._param_validation import Interval

from ._params import WARP_RECIPE
from ._solver_backend import SolverBackendMixin
from .base import BaseSequenceClassifier, BaseSequenceRegressor
from .nn.ncde import NeuralCDE

__all__ = ["NeuralCDEClassifier", "NeuralCDERegressor"]


#: The model's own parameters, the ``{model}`` slot of both estimators' docstrings.
_PARAMETERS_DOC = """\
vector_field_width : int, default=128
        Width of the hidden layers of the vector field's MLP.
    vector_field_layers : int, default=1
        Number of hidden ReLU layers of the vector field's MLP (0: ``f = tanh(W z + b)``).
    {solver_backend}"""


class _NeuralCDEModel(SolverBackendMixin):
    """The parameters and torch module of the Neural CDE, shared by
    :class:`NeuralCDEClassifier` and :class:`NeuralCDERegressor`."""

    _doc_fragments = {"model": _PARAMETERS_DOC, "module": "NeuralCDE"}

    _model_params = {
        "solver_backend": "auto",
        "vector_field_width": 128,
        "vector_field_layers": 1,
    }
    _tiny_params = {"vector_field_width": 16}
    _model_constraints = {
        "solver_backend": SolverBackendMixin.BACKEND_CONSTRAINT,
        "vector_field_width": [Interval(numbers.Integral, 1, None, closed="left")],
        "vector_field_layers": [Interval(numbers.Integral, 0, None, closed="left")],
    }

    def _build_module(self, n_path_channels, n_outputs):
        return NeuralCDE(
            n_path_channels,
            n_outputs,
            hidden_size=self.hidden_size,
            vector_field_width=self.vector_field_width,
            vector_field_layers=self.vector_field_layers,
        )


class NeuralCDEClassifier(_NeuralCDEModel, BaseSequenceClassifier):
    """Neural controlled differential equation classifier (Kidger et al., NeurIPS 2020).

    The hidden state is driven by the input path ``X(s)``::

        z(0) = ζ(X(0)),     dz(s) = f(z(s)) dX(s),     logits = ℓ(z(T_i))

    with ``ζ`` and ``ℓ`` linear, ``f = tanh ∘ MLP`` reshaped to ``(H, K)`` and the
    readout at each case's own final time ``T_i``. The CDE is solved as the ODE
    ``dz/ds = f(z) · dX/ds``, as ``torchcde.cdeint`` does. This is the baseline that
    the continuous FWP, N-CODE and gated neural ODE papers compare against; see
    :mod:`skfwp.nn.ncde`. By default two such CDEs, with their own weights, read each
    case forwards and backwards, and their logits are summed (``bidirectional=True``;
    ``module_`` is a :class:`skfwp.nn.ensemble.Bidirectional`).

    {sections}

    See Also
    --------
    ContinuousDeltaClassifier : a continuous-time Fast Weight Programmer.

    References
    ----------
    .. [1] P. Kidger, J. Morrill, J. Foster, T. Lyons. "Neural Controlled Differential
       Equations for Irregular Time Series". NeurIPS 2020, arXiv:2005.08926.

    Examples
    --------
    >>> import numpy as np
    >>> from skfwp import NeuralCDEClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(20, 2, 12))
    >>> y = np.where(X[:, 0].mean(axis=1) > 0, "up", "down")
    >>> clf = NeuralCDEClassifier(hidden_size=8, vector_field_width=16, max_iter=5,
    ...                           random_state=0)
    >>> clf.fit(X, y).predict(X[:3]).shape
    (3,)
    """

    #: The time-warp recipe (skfwp._params.WARP_RECIPE), a second model reading each
    #: case backwards, window slicing and the stop at the loss floor, each measured on
    #: the development list (docs/benchmarks.md); the regressor keeps the shared
    #: defaults (not measured there).
    _model_params = {
        **_NeuralCDEModel._model_params,
        **WARP_RECIPE,
        "bidirectional": True,
        "time_crop": 0.1,
        "floor_tol": 0.005,
    }


class NeuralCDERegressor(_NeuralCDEModel, BaseSequenceRegressor):
    """Neural controlled differential equation regressor."""

    _regressor_doc = {
        "nn": "ncde",
        "example": "hidden_size=8, vector_field_width=16",
    }
