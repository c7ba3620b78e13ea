"""The ``solver_backend`` parameter of the estimators whose module has a fast path."""

from __future__ import annotations

from sklearn.utils._param_validation import StrOptions

from .nn.fast_solver import SOLVER_BACKENDS, use_fast_path

__all__ = ["SolverBackendMixin"]


class SolverBackendMixin:
    """Passes ``solver_backend`` to the module and refuses ``"fast"`` where it cannot run.

    A model mixin of an estimator (:class:`skfwp.base.BaseSequenceEstimator`) lists it
    among its bases, adds ``"solver_backend": "auto"`` to ``_model_params`` and
    :data:`BACKEND_CONSTRAINT` to ``_model_constraints``, and may write
    ``{solver_backend}`` in its docstring's parameters for :data:`BACKEND_DOC`.
    ``"fast"`` with an adaptive method or ``adjoint=True`` raises a ValueError naming
    the setting, in ``fit`` (:func:`skfwp.nn.fast_solver.use_fast_path`).
    """

    #: The ``_model_constraints`` entry of ``solver_backend``.
    BACKEND_CONSTRAINT = [StrOptions(set(SOLVER_BACKENDS))]
    #: The parameter's documentation (``{solver_backend}`` in a class docstring).
    BACKEND_DOC = """solver_backend : {{"auto", "fast", "generic"}}, default="auto"
        ``"fast"``: a fixed-grid loop in torch with every term that depends on the
        input path only computed for all solver stages in one batched call, and
        checkpointed chunks of steps on long series; it needs ``method`` "euler",
        "midpoint" or "rk4" and ``adjoint=False``, and raises a ValueError naming the
        setting otherwise. ``"generic"``: torchdiffeq, the whole field at each stage.
        ``"auto"``: fast where it applies. Both give the same logits and gradients up to
        float rounding (see the torch module's documentation)."""
    _doc_fragments = {"solver_backend": BACKEND_DOC}

    def _check_params(self):
        super()._check_params()
        use_fast_path(self.solver_backend, self.method, self.adjoint)

    def _solver_options(self):
        return {**super()._solver_options(), "solver_backend": self.solver_backend}
