"""NeuralCDEClassifier's model: torchcde as an independent oracle, dopri5, closed form."""

import pytest
import torch
import torchcde
from conftest import FAST_CASES, fast_refused, fast_vs_generic, fast_vs_generic_on_cuda, make_path

from skfwp.nn.ensemble import Bidirectional
from skfwp.nn.ncde import CDEVectorField, NeuralCDE, _ControlledField
from skfwp.nn.solver import integrate


def _model(n_channels, random_state=0, **kwargs):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        return NeuralCDE(n_channels, 3, **{"hidden_size": 6, "vector_field_width": 16, **kwargs})


def _cdeint_at_ends(model, path, **kwargs):
    """torchcde.cdeint on the same spline, read at each case's own final knot."""
    spline = (
        torchcde.CubicSpline(path.coeffs)
        if path.interpolation == "hermite"
        else torchcde.LinearInterpolation(path.coeffs)
    )
    times = torch.unique(torch.cat([path.ends.new_zeros(1), path.ends])).to(torch.float64)
    zs = torchcde.cdeint(
        X=spline,
        func=lambda t, z: model.vector_field(z),
        z0=model.initial_state(path),
        t=times,
        **kwargs,
    )  # (batch, len(times), H)
    slot = torch.searchsorted(times, path.ends.to(torch.float64))
    return zs[torch.arange(len(slot)), slot]


@pytest.mark.parametrize(
    "interpolation, solver",
    [
        ("hermite", {"method": "rk4", "step_size": 0.5}),
        ("linear", {"method": "rk4", "step_size": 0.5}),
        ("linear", {"method": "midpoint", "step_size": 1.0}),
        # dopri5 on the smooth spline only: linear paths have a kink at every knot
        ("hermite", {"method": "dopri5", "rtol": 1e-6, "atol": 1e-8}),
    ],
    ids=["rk4-hermite", "rk4-linear", "midpoint-linear", "dopri5-hermite"],
)
def test_solve_agrees_with_torchcde_cdeint(interpolation, solver):
    """Our f(z) · dX/ds through skfwp.nn.solver.integrate is torchcde.cdeint's solve."""
    ip, path = make_path(7, [6, 4, 2], random_state=1, interpolation=interpolation)
    model = _model(ip.n_path_channels_).double()
    options = {k: v for k, v in solver.items() if k == "step_size"}
    tolerances = {k: v for k, v in solver.items() if k in ("rtol", "atol")}
    theirs = _cdeint_at_ends(
        model, path, method=solver["method"], options=options or None, **tolerances
    )
    z0 = model.initial_state(path)
    ours = integrate(_ControlledField(model.vector_field), z0, path, **solver)
    torch.testing.assert_close(ours, theirs, rtol=1e-6, atol=1e-6)
    assert (ours - z0).abs().max() > 1e-2  # the state moved


@pytest.mark.parametrize(
    "layers, step_size, tol",
    [
        (0, 0.025, 1e-6),  # f = tanh(Wz + b) is smooth: rk4 converges at 4th order
        # ReLU kinks make f only piecewise smooth in z, which caps rk4's order there
        (2, 0.05, 1e-5),
    ],
)
def test_fixed_step_solution_matches_adaptive_oracle(layers, step_size, tol):
    """rk4 with a fine step against dopri5 at tight tolerance, on the whole model."""
    ip, path = make_path(6, [5, 3, 1], random_state=2)
    model = _model(ip.n_path_channels_, vector_field_layers=layers).double()
    fine = model(path, method="rk4", step_size=step_size)
    oracle = model(path, method="dopri5", rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fine, oracle, rtol=tol, atol=tol)
    coarse = model(path, method="euler", step_size=1.0)
    assert (coarse - oracle).abs().max() > 1e-4  # the oracle can tell solvers apart


def test_constant_field_closed_form():
    """With f(z) = F constant, z(T_i) = z(0) + F (X(T_i) − X(0)), exactly, per case."""
    ip, path = make_path(8, [7, 4, 1], random_state=3)
    model = _model(ip.n_path_channels_).double()
    last = model.vector_field.net[-2]  # the MLP's output Linear, before tanh
    with torch.no_grad():
        last.weight.zero_()
    F = torch.tanh(last.bias).view(6, ip.n_path_channels_)
    z0 = model.initial_state(path)
    z_end = integrate(_ControlledField(model.vector_field), z0, path, method="rk4")
    increment = path.evaluate_at_ends() - path.evaluate(0.0)  # (batch, K)
    torch.testing.assert_close(z_end, z0 + increment @ F.T, rtol=1e-10, atol=1e-10)


def test_vector_field_shape_and_bound():
    f = CDEVectorField(hidden_size=5, n_channels=3, width=7, n_layers=2)
    out = f(100 * torch.randn(4, 5))
    assert out.shape == (4, 5, 3)
    assert out.abs().max() <= 1.0  # ends with tanh


@pytest.mark.parametrize("interpolation", ["hermite", "linear"])
@pytest.mark.parametrize("backend", ["fast", "generic"])
def test_euler_at_step_1_is_the_cde_euler_scheme_in_increments(interpolation, backend):
    """Euler reads dX/ds at its step's end: z ← z + f(z) (x_{n+1} − x_n), every x read."""
    ip, path = make_path(7, [6, 6], random_state=2, interpolation=interpolation)
    model = _model(ip.n_path_channels_).double()
    logits = model(path, solver_backend=backend, method="euler", step_size=1.0)
    z = model.initial_state(path)
    for n in range(6):
        dx = path.evaluate(float(n + 1)) - path.evaluate(float(n))
        z = z + (model.vector_field(z) @ dx.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logits, model.output(z), rtol=1e-12, atol=1e-12)


def test_initial_state_is_linear_in_first_observation():
    ip, path = make_path(6, [5, 4])
    model = _model(ip.n_path_channels_).double()
    x0 = path.evaluate(0.0)
    torch.testing.assert_close(
        model.initial_state(path), x0 @ model.initial.weight.T + model.initial.bias
    )


def test_readout_uses_each_case_own_end():
    """Cases of different lengths are read at their own T_i, not at the batch's end."""
    ip, path = make_path(9, [8, 4], random_state=4)
    model = _model(ip.n_path_channels_).double()
    both = model(path, method="rk4")
    short_alone = model(
        type(path)(path.coeffs[1:, :4], path.ends[1:], path.interpolation), method="rk4"
    )
    torch.testing.assert_close(both[1:], short_alone)


# -- the fast path ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "step_size"), FAST_CASES)
@pytest.mark.parametrize(
    ("interpolation", "layers"), [("hermite", 1), ("linear", 2), ("hermite", 0)]
)
def test_fast_path_matches_generic(method, step_size, interpolation, layers):
    """Logits and parameter gradients of the fast path and torchdiffeq's, unequal lengths."""
    ip, path = make_path(9, [8, 5, 3], random_state=3, interpolation=interpolation)
    model = _model(ip.n_path_channels_, vector_field_layers=layers).double()
    fast, _ = fast_vs_generic(model, path, method, step_size)
    assert fast.abs().max() > 1e-3


def test_fast_path_refuses_adaptive_methods_and_adjoint():
    ip, path = make_path(5, [4, 2])
    fast_refused(_model(ip.n_path_channels_).double(), path)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fast_path_in_recomputed_chunks_matches_generic(method, monkeypatch):
    """A run cut into chunks (no graph in the forward, recomputed in the backward)."""
    from skfwp.nn import fast_solver

    ip, path = make_path(12, [11, 6], random_state=4)
    model = _model(ip.n_path_channels_).double()
    monkeypatch.setattr(fast_solver, "FIXED_GRID_MEMORY", 0)  # chunks of ⌈√n⌉ steps
    fast_vs_generic(model, path, method, 0.5)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fast_path_on_cuda_matches_generic(method):
    ip, _ = make_path(9, [8, 5, 3], random_state=3)
    fast_vs_generic_on_cuda(_model(ip.n_path_channels_).double(), method)


@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize(("method", "step_size"), FAST_CASES)
def test_bidirectional_pair_in_one_solve_equals_two_solves(layers, method, step_size):
    """``forward_pair`` (both directions side by side, stacked weights) against the two
    models solved one after the other by the generic torchdiffeq path: outputs and every
    gradient, float64; cases ending at different knots."""
    _, path = make_path(9, [8, 5, 3, 6], random_state=1)
    _, rpath = make_path(9, [8, 5, 3, 6], random_state=2)  # the same ends, other values
    models = [
        NeuralCDE(3, 4, hidden_size=5, vector_field_width=7, vector_field_layers=layers).double()
        for _ in range(2)
    ]
    pair = Bidirectional(*models)
    options = dict(method=method, step_size=step_size)
    got = pair((path, rpath), solver_backend="fast", **options)
    grads = torch.autograd.grad(got.square().sum(), list(pair.parameters()))
    a, b = models
    want = a(path, solver_backend="generic", **options) + b(
        rpath, solver_backend="generic", **options
    )
    want_grads = torch.autograd.grad(want.square().sum(), list(pair.parameters()))
    scale = float(want.detach().abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9 * scale)
    for g, w in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-8 * max(float(w.abs().max()), 1e-12))
    assert not torch.allclose(got, 2 * a(path, solver_backend="generic", **options))
