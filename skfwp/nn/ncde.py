"""Neural controlled differential equations (Kidger, Morrill, Foster & Lyons, NeurIPS 2020).

The hidden state ``z`` is driven by the input path ``X(s)`` through a learned matrix
field::

    z(0)   = ζ(X(0))                          ζ linear,            (H,)
    dz(s)  = f(z(s)) dX(s)                    f(z) in R^{H x K}
    outputs = ℓ(z(T_i))                       ℓ linear, at each case's own final knot

with ``f = tanh ∘ MLP`` whose output of size ``H K`` is reshaped to ``(H, K)``. The
CDE is solved as the ODE ``dz/ds = f(z) · dX/ds(s)`` by the shared solver wrapper
:func:`skfwp.nn.solver.integrate`: exactly the reduction ``torchcde.cdeint`` makes
internally, so one wrapper serves every skfwp model (and handles the per-case final
knots ``T_i``, which ``cdeint`` does not).

Solvers (``solver_backend``): the fast path (:func:`skfwp.nn.ncde_fast.integrate_cde`;
methods euler, midpoint, rk4 without adjoint) evaluates ``dX/ds`` at every stage time
in one batched call and steps ``z`` with only ``f(z) · dX/ds`` in the loop, forward
and backward written by hand: the stage derivative ``k = tanh(MLP(Y)) · dX/ds`` and its
vector–Jacobian product per stage, the weight gradients as products over all stages.
A bidirectional pair (:func:`forward_pair`) runs its two models as two groups of the
same loop, each linear layer one batched product over both. A vector field that is not
the MLP :class:`CDEVectorField` builds (a replaced module) runs the autograd loop of
:func:`skfwp.nn.fast_solver.integrate_fixed_grid` instead. The generic path goes
through torchdiffeq, the spline evaluated at each stage. Euler reads ``dX/ds`` at its
step's end (:data:`skfwp.nn.fast_solver.INPUT_AHEAD_METHODS`): at step 1 that is the
increment ``x_{n+1} − x_n`` for both the linear and the Hermite path, the Euler scheme
of a CDE, ``z_{n+1} = z_n + f(z_n) (x_{n+1} − x_n)``.
"""

from __future__ import annotations

import torch
from torch import nn

from .fast_solver import StagePlan, integrate_fixed_grid, use_fast_path
from .gated_fast import flow_layers
from .layers import mlp
from .ncde_fast import integrate_cde
from .solver import solve

__all__ = ["CDEVectorField", "NeuralCDE"]


class CDEVectorField(nn.Module):
    """The matrix field ``f(z) = tanh(MLP(z))`` reshaped to ``(H, K)``.

    ``MLP`` has ``n_layers`` hidden ReLU layers of ``width`` units (``n_layers=0``: one
    linear map). ``forward(z)`` takes ``(batch, H)`` and returns ``(batch, H, K)``.

    Parameters
    ----------
    hidden_size : int
        ``H``, the size of the CDE state.
    n_channels : int
        ``K``, the channels of the driving path.
    width : int
    n_layers : int

    Examples
    --------
    >>> import torch
    >>> f = CDEVectorField(hidden_size=4, n_channels=3, width=8, n_layers=1)
    >>> f(torch.zeros(2, 4)).shape
    torch.Size([2, 4, 3])
    """

    def __init__(self, hidden_size, n_channels, width=128, n_layers=1):
        super().__init__()
        self.hidden_size, self.n_channels = hidden_size, n_channels
        self.net = mlp(hidden_size, [width] * n_layers, hidden_size * n_channels, final=nn.Tanh)

    def forward(self, z):
        return self.net(z).unflatten(-1, (self.hidden_size, self.n_channels))  # (batch, H, K)


class _ControlledField(nn.Module):
    """``dz/ds = f(z) · dX/ds(s)``: the CDE as an ODE, in the solver's ``field(s, z, path)``."""

    def __init__(self, vector_field):
        super().__init__()
        self.vector_field = vector_field

    def forward(self, s, z, path):
        dX = path.derivative(s)  # (batch, K)
        return (self.vector_field(z) @ dX.unsqueeze(-1)).squeeze(-1)  # (batch, H)


def _linear_layers(net):
    """The ``nn.Linear`` layers of ``f``'s MLP as :func:`~skfwp.nn.layers.mlp` builds it.

    ``Linear, ReLU, ..., Linear, Tanh``: the layers, for
    :func:`skfwp.nn.ncde_fast.integrate_cde`; None for any other stack of modules
    (a replaced module), which the autograd loop runs instead.
    """
    layers = flow_layers(net)
    if layers is None or not layers[1]:
        return None
    return [net[0], *layers[0]]


class NeuralCDE(nn.Module):
    """Neural CDE: linear initial map, ``dz = f(z) dX``, linear readout.

    Parameters
    ----------
    n_channels : int
        Channels ``K`` of the input path (time channel included).
    n_outputs : int
        Width of the final linear layer ``output``: classes, or regression targets.
    hidden_size : int
        ``H``, the size of the CDE state.
    vector_field_width : int
        Width of the hidden layers of ``f``'s MLP.
    vector_field_layers : int
        Number of hidden layers of ``f``'s MLP (0: ``f = tanh(W z + b)``).

    Notes
    -----
    ``forward(path, solver_backend="auto", **solver_options)`` returns outputs of shape
    ``(batch, n_outputs)`` (a classifier's logits, a regressor's standardised targets);
    the state passed to the solver is ``z`` of shape ``(batch, H)``. ``solver_backend``:
    ``"fast"`` (module docstring; a ValueError names the setting that prevents it),
    ``"generic"`` or ``"auto"`` (fast where it applies).

    Examples
    --------
    >>> import numpy as np, torch
    >>> from skfwp.path import InputPath
    >>> X, lengths = np.random.default_rng(0).normal(size=(3, 2, 6)), np.array([6, 6, 4])
    >>> ip = InputPath().fit(X, lengths)
    >>> path = ip.transform(X, lengths).batch([0, 1, 2])
    >>> model = NeuralCDE(ip.n_path_channels_, n_outputs=2, hidden_size=4)
    >>> model(path, method="rk4").shape
    torch.Size([3, 2])
    """

    def __init__(
        self,
        n_channels,
        n_outputs,
        hidden_size=32,
        vector_field_width=128,
        vector_field_layers=1,
    ):
        super().__init__()
        self.initial = nn.Linear(n_channels, hidden_size)  # ζ
        self.vector_field = CDEVectorField(
            hidden_size, n_channels, vector_field_width, vector_field_layers
        )  # f
        self.output = nn.Linear(hidden_size, n_outputs)  # ℓ

    def initial_state(self, path):
        """``z(0) = ζ(X(0))``, shape (batch, H)."""
        return self.initial(path.evaluate(0.0))

    def forward(self, path, solver_backend="auto", **solver_options):
        z0 = self.initial_state(path)
        field = _ControlledField(self.vector_field)
        z_end = solve(field, z0, path, self.integrate_fast, solver_backend, **solver_options)
        return self.output(z_end)

    def integrate_fast(self, z0, path, method="rk4", step_size=None):
        """``z(T_i)`` on the fixed grid, shape (batch, H).

        ``dX/ds`` at every stage time, shape (n_times, batch, K), comes from one
        vectorised spline evaluation; each stage computes ``f(z) · dX/ds``. A vector
        field built by :class:`CDEVectorField` (every setting of this class) runs in
        :func:`skfwp.nn.ncde_fast.integrate_cde`, whose backward is written by hand; any
        other ``self.vector_field.net`` (a replaced module) in
        :func:`skfwp.nn.fast_solver.integrate_fixed_grid`, by autograd.
        """
        if int(path.ends.max()) == 0:  # every case is a single observation
            return z0
        plan = StagePlan(path.ends, method, step_size, z0.dtype)
        dX = path.derivative(plan.times).transpose(0, 1)  # (n_times, batch, K)
        linears = _linear_layers(self.vector_field.net)
        if linears is not None:  # one group: G = 1
            weights = [layer.weight[None] for layer in linears]
            biases = [layer.bias[None] for layer in linears]
            return integrate_cde(z0[None], dX[:, None], plan, weights, biases)[0]

        def field(z, terms):
            (z,), (dX,) = z, terms
            return (torch.bmm(self.vector_field(z), dX.unsqueeze(-1)).squeeze(-1),)

        width = sum(
            layer.out_features for layer in self.vector_field.net if hasattr(layer, "out_features")
        )
        step_bytes = 4 * len(plan.tableau[0]) * width * z0.element_size()
        inputs = tuple(self.vector_field.parameters())
        (z_end,) = integrate_fixed_grid(
            field, (z0,), (dX,), plan, step_bytes=step_bytes, inputs=inputs
        )
        return z_end

    @staticmethod
    def forward_pair(forward_model, reverse_model, path, reversed_path, **solver_options):
        """Both directions of a bidirectional pair in one solve (:func:`forward_pair`)."""
        return forward_pair(forward_model, reverse_model, path, reversed_path, **solver_options)


def forward_pair(
    forward_model, reverse_model, path, reversed_path, solver_backend="auto", **options
):
    """``forward_model(path) + reverse_model(reversed_path)`` in one fixed-grid solve.

    The two Neural CDEs of a :class:`skfwp.nn.ensemble.Bidirectional` pair share the
    grid (a reversed case ends at the same knot), so their states go side by side as
    the two groups of :func:`skfwp.nn.ncde_fast.integrate_cde`, ``(2, batch, H)``, and
    each stage evaluates both fields at once: every linear layer of ``f`` is one batched
    product over the two models' stacked weights (``torch.bmm``), half the operations
    of two solves, with the same hand-written backward. Where the fast path does not
    apply (``solver_backend``, ``method``, ``adjoint``), or where a model's field is not
    the MLP that :class:`CDEVectorField` builds (a replaced module) or the two differ in
    shape, the two models run one after the other. Same outputs as the separate solves
    up to float rounding.
    """
    method = options.get("method", "rk4")
    models = (forward_model, reverse_model)
    linears = [_linear_layers(m.vector_field.net) for m in models]
    shapes = [None if ls is None else [layer.weight.shape for layer in ls] for ls in linears]
    fast = use_fast_path(solver_backend, method, options.get("adjoint", False))
    if not fast or shapes[0] is None or shapes[0] != shapes[1]:
        return forward_model(path, solver_backend, **options) + reverse_model(
            reversed_path, solver_backend, **options
        )
    paths = (path, reversed_path)
    z0 = torch.stack([m.initial_state(p) for m, p in zip(models, paths, strict=True)])
    z_end = z0  # (2, batch, H)
    if int(path.ends.max()) > 0:
        plan = StagePlan(path.ends, method, options.get("step_size"), z0.dtype)
        # (n_times, 2, batch, K)
        dX = torch.stack([p.derivative(plan.times).transpose(0, 1) for p in paths], 1)
        pairs = list(zip(*linears, strict=True))
        weights = [torch.stack([layer.weight for layer in pair]) for pair in pairs]
        biases = [torch.stack([layer.bias for layer in pair]) for pair in pairs]
        z_end = integrate_cde(z0, dX, plan, weights, biases)
    return forward_model.output(z_end[0]) + reverse_model.output(z_end[1])
