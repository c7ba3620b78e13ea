"""NeuralCDEClassifier's model: torchcde as an independent oracle, dopri5, closed form."""

import itertools

import pytest
import torch
import torchcde
from conftest import FAST_CASES, fast_refused, fast_vs_generic, fast_vs_generic_on_cuda, make_path

from skfwp.nn import ncde_fast
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


# -- the hand-written backward (skfwp.nn.ncde_fast) ------------------------------------


def _drawn(model, seed=0):
    """``model`` in float64 with every parameter redrawn from its own generator.

    Weights uniform in ±1/√fan-in, biases in ±0.5: the field's tanh is away from
    saturation and its ReLUs from their kinks at these sizes.
    """
    gen = torch.Generator().manual_seed(seed)
    model = model.double()
    with torch.no_grad():
        for p in model.parameters():
            scale = p.shape[-1] ** -0.5 if p.dim() > 1 else 0.5
            p.uniform_(-scale, scale, generator=gen)
    return model


def _cde(n_channels, layers, seed=0):
    return _drawn(
        NeuralCDE(n_channels, 3, hidden_size=5, vector_field_width=7, vector_field_layers=layers),
        seed,
    )


def _graph(tensor):
    """The autograd nodes that ``tensor``'s backward reaches."""
    seen, todo = set(), [tensor.grad_fn]
    while todo:
        node = todo.pop()
        if node is not None and node not in seen:
            seen.add(node)
            todo.extend(next_node for next_node, _ in node.next_functions)
    return seen


def _uses_hand_written_backward(model, path, method="rk4"):
    z = model.integrate_fast(model.initial_state(path), path, method)
    return "_CDERKBackward" in {type(node).__name__ for node in _graph(z)}


#: The methods and steps of the hand-written backward's tests: step 0.7 reads cases
#: between grid points and ends on a shorter step.
HAND_CASES = [("euler", 1.0), ("midpoint", 0.7), ("rk4", 0.5), ("rk4", 0.7)]


@pytest.mark.parametrize(("method", "step_size"), HAND_CASES)
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize("interpolation", ["hermite", "linear"])
def test_hand_written_backward_matches_generic(method, step_size, layers, interpolation):
    """Logits and every parameter gradient against torchdiffeq's autograd, float64.

    Cases end at knots 8, 5, 0 (a single observation, read at the initial state) and 3.
    """
    ip, path = make_path(9, [8, 5, 0, 3], random_state=6, interpolation=interpolation)
    model = _cde(ip.n_path_channels_, layers)
    assert _uses_hand_written_backward(model, path)
    fast, _ = fast_vs_generic(model, path, method, step_size)
    assert fast.abs().max() > 1e-3


def _pair_vs_generic(layers, method, step_size, interpolation="hermite"):
    """A bidirectional pair on the fast path against its two generic solves, float64."""
    _, path = make_path(9, [8, 5, 0, 3, 6], random_state=1, interpolation=interpolation)
    _, rpath = make_path(9, [8, 5, 0, 3, 6], random_state=2, interpolation=interpolation)
    models = [_cde(3, layers, seed) for seed in (1, 2)]
    pair = Bidirectional(*models)
    params = list(pair.parameters())
    options = dict(method=method, step_size=step_size)
    got = pair((path, rpath), solver_backend="fast", **options)
    weight = torch.linspace(-1.0, 2.0, got.numel(), dtype=got.dtype).view_as(got)
    grads = torch.autograd.grad((got * weight).sum(), params)
    a, b = models
    want = a(path, solver_backend="generic", **options) + b(
        rpath, solver_backend="generic", **options
    )
    want_grads = torch.autograd.grad((want * weight).sum(), params)
    scale = float(want.detach().abs().max())
    torch.testing.assert_close(got, want, rtol=0, atol=1e-9 * scale)
    for g, w in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-8 * max(float(w.abs().max()), 1e-12))
    return got


@pytest.mark.parametrize(("method", "step_size"), HAND_CASES)
@pytest.mark.parametrize("layers", [0, 1, 2])
@pytest.mark.parametrize("interpolation", ["hermite", "linear"])
def test_hand_written_pair_matches_two_generic_solves(
    method, step_size, layers, interpolation, monkeypatch
):
    """``forward_pair`` runs both directions as the groups G = 2 of one hand-written solve."""
    from skfwp.nn import ncde

    groups = []

    def spy(z0, *args):
        out = ncde_fast.integrate_cde(z0, *args)
        groups.append((z0.shape[0], type(out.grad_fn).__name__))
        return out

    monkeypatch.setattr(ncde, "integrate_cde", spy)
    _pair_vs_generic(layers, method, step_size, interpolation)
    assert groups == [(2, "_CDERKBackward")]


@pytest.mark.parametrize(("method", "step_size"), [("euler", 1.0), ("midpoint", 0.7), ("rk4", 0.7)])
@pytest.mark.parametrize("layers", [1, 2])
def test_hand_written_backward_in_recomputed_chunks(method, step_size, layers, monkeypatch):
    """A run cut into chunks: the forward keeps each chunk's first state, the backward
    recomputes each chunk before sweeping it; single model and pair."""
    from skfwp.nn import fast_solver

    monkeypatch.setattr(fast_solver, "FIXED_GRID_MEMORY", 0)  # chunks of ⌈√n⌉ steps
    calls = []
    forward_chunk = ncde_fast._Loop.forward_chunk

    def spy(self, z, n0, n1, out=None):
        calls.append((n0, n1, out is None))
        return forward_chunk(self, z, n0, n1, out)

    monkeypatch.setattr(ncde_fast._Loop, "forward_chunk", spy)
    ip, path = make_path(12, [11, 6, 0, 9], random_state=4)
    fast_vs_generic(_cde(ip.n_path_channels_, layers), path, method, step_size)
    recomputed = [c[:2] for c in calls if c[2]]
    assert len(recomputed) > 1  # several chunks, each recomputed in the backward
    assert sorted(recomputed) == sorted(c[:2] for c in calls if not c[2])
    calls.clear()
    _pair_vs_generic(layers, method, step_size)
    assert sum(c[2] for c in calls) > 1


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_hand_written_backward_matches_the_autograd_loop(method, monkeypatch):
    """Logits and gradients equal those of the autograd loop it replaces, to rounding,
    single and pair; prediction (no graph) gives the same logits."""
    from skfwp.nn import ncde

    _, path = make_path(12, [11, 6, 9], random_state=7)
    _, rpath = make_path(12, [11, 6, 9], random_state=8)
    single = _cde(3, 2, seed=3)
    pair = Bidirectional(_cde(3, 1, seed=4), _cde(3, 1, seed=5))
    runs = [(single, path), (pair, (path, rpath))]

    def run():
        results = []
        for module, data in runs:
            logits = module(data, solver_backend="fast", method=method, step_size=0.7)
            grads = torch.autograd.grad(logits.square().sum(), list(module.parameters()))
            results.append((logits, grads))
        return results

    new = run()
    monkeypatch.setattr(ncde, "_linear_layers", lambda net: None)  # the autograd loop
    assert not _uses_hand_written_backward(single, path)
    old = run()
    for (a, a_grads), (b, b_grads) in zip(new, old, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
        for g, h in zip(a_grads, b_grads, strict=True):
            torch.testing.assert_close(g, h, rtol=1e-11, atol=1e-12)
    monkeypatch.undo()
    with torch.no_grad():  # prediction runs the same loop without keeping anything
        for (module, data), (logits, _) in zip(runs, new, strict=True):
            got = module(data, method=method, step_size=0.7)
            torch.testing.assert_close(got, logits.detach(), rtol=1e-13, atol=1e-13)


def _random_cde_inputs(G, widths, method, step_size, seed=0):
    """``integrate_cde``'s inputs drawn from a generator: ends 5, 2, 0, 4; H = 2, K = 3."""
    from skfwp.nn.fast_solver import StagePlan

    plan = StagePlan(torch.tensor([5, 2, 0, 4]), method, step_size, torch.float64)
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()

    H, K, B = 2, 3, 4
    dims = [H, *widths, H * K]
    params = []
    for n_in, n_out in itertools.pairwise(dims):
        params += [rand(G, n_out, n_in), rand(G, n_out)]
    return plan, (rand(G, B, H), rand(len(plan.times), G, B, K), *params)


def _integrate(plan):
    def run(z0, dX, *params):
        return ncde_fast.integrate_cde(z0, dX, plan, params[::2], params[1::2])

    return run


@pytest.mark.parametrize("chunked", [False, True])
@pytest.mark.parametrize("G", [1, 2])
@pytest.mark.parametrize(
    ("widths", "method", "step_size"),
    [
        ((), "rk4", 0.7),
        ((4,), "rk4", 0.7),
        ((4, 3), "rk4", 0.7),
        ((4,), "midpoint", 0.7),
        ((4,), "euler", 1.0),
    ],
)
def test_integrate_cde_gradcheck(widths, method, step_size, G, chunked, monkeypatch):
    """gradcheck of every input, ``ẋ`` included, kept and in recomputed chunks."""
    from skfwp.nn import fast_solver

    if chunked:
        monkeypatch.setattr(fast_solver, "FIXED_GRID_MEMORY", 0)  # chunks of ⌈√n⌉ steps
    plan, tensors = _random_cde_inputs(G, widths, method, step_size)
    assert torch.autograd.gradcheck(_integrate(plan), tensors)


def test_hand_written_backward_records_no_graph(monkeypatch):
    """The forward records one node whatever the length; the backward runs without
    autograd, its results detached."""
    sizes = []
    for n_knots in (5, 12):
        ip, path = make_path(n_knots, [n_knots - 1, 2], random_state=5)
        model = _cde(ip.n_path_channels_, 1)
        z = model.integrate_fast(model.initial_state(path), path, "rk4")
        sizes.append(len(_graph(z)))
    assert sizes[0] == sizes[1]
    modes = []
    backward_chunk = ncde_fast._Loop.backward_chunk

    def spy(self, *args):
        lam = backward_chunk(self, *args)
        modes.append((torch.is_grad_enabled(), lam.requires_grad))
        return lam

    monkeypatch.setattr(ncde_fast._Loop, "backward_chunk", spy)
    z = model.integrate_fast(model.initial_state(path), path, "rk4")
    grads = torch.autograd.grad(z.sum(), list(model.vector_field.parameters()))
    assert modes == [(False, False)]
    assert not any(g.requires_grad for g in grads)


def test_integrate_cde_leaves_its_inputs_untouched_and_backward_twice():
    """The caller's tensors are not written; a second backward through the same graph
    (its kept buffers overwritten by the first) recomputes and gives the same gradients."""
    plan, tensors = _random_cde_inputs(2, (4,), "rk4", 0.7)
    before = [t.detach().clone() for t in tensors]
    out = _integrate(plan)(*tensors)
    weight = torch.linspace(-1.0, 1.0, out.numel(), dtype=out.dtype).view_as(out)
    first = torch.autograd.grad((out * weight).sum(), tensors, retain_graph=True)
    second = torch.autograd.grad((out * weight).sum(), tensors)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-14)
    for t, b in zip(tensors, before, strict=True):
        assert torch.equal(t.detach(), b)


def test_integrate_cde_rejects_inconsistent_shapes():
    plan, (z0, dX, W0, b0) = _random_cde_inputs(1, (), "rk4", 0.7)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        ncde_fast.integrate_cde(z0, dX, plan, [W0[:, :-1]], [b0])  # H K − 1 outputs
    with pytest.raises(ValueError, match="inconsistent shapes"):
        ncde_fast.integrate_cde(z0, dX[:, :, :2], plan, [W0], [b0])  # batch 2, not 4


def test_replaced_vector_field_falls_back_to_the_autograd_loop():
    """A field that is not Linear/ReLU layers ending in tanh runs the autograd loop, and
    still agrees; a pair with one such model solves both there."""
    ip, path = make_path(9, [8, 5, 3], random_state=3)
    model = _cde(ip.n_path_channels_, 1)
    model.vector_field.net[1] = torch.nn.Tanh()  # a tanh hidden layer: not what mlp builds
    assert not _uses_hand_written_backward(model, path)
    fast_vs_generic(model, path, "rk4", 0.5)
    other = _cde(ip.n_path_channels_, 1, seed=1)
    pair = Bidirectional(model, other)
    got = pair((path, path), solver_backend="fast", method="rk4")
    want = model(path, solver_backend="generic", method="rk4") + other(
        path, solver_backend="generic", method="rk4"
    )
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9)
