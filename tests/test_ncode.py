"""NCodeClassifier's model against closed forms, an oracle and its bounds; the paper's claim."""

import numpy as np
import pytest
import torch
from conftest import FAST_CASES, fast_refused, fast_vs_generic, fast_vs_generic_on_cuda, make_path
from torchdiffeq import odeint

from skfwp import NCodeClassifier
from skfwp._validation import check_X
from skfwp.datasets import FLOW_TASK_PARAMS, make_annuli, make_reflection
from skfwp.nn.ncode import CONTROLS, NCODE
from skfwp.path import InputPath


def _model(n_channels, control="closed", hidden_size=3, rank=2, input_drive=True, seed=0, tau=1.0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NCODE(
            n_channels,
            2,
            hidden_size=hidden_size,
            control=control,
            control_rank=rank,
            controller_layers=(8,),
            input_drive=input_drive,
            tau=tau,
        ).double()


TIGHT = dict(method="rk4", step_size=0.01)


# -- closed forms ---------------------------------------------------------------------


@pytest.mark.parametrize("control", ["closed", "open"])
def test_constant_control_matches_closed_form(control):
    """Controller output constant, so dθ/ds = M − λ ⊙ θ: θ(s) = M/λ + (θ0 − M/λ) e^{−λ s}."""
    ip, path = make_path(7, [6, 4])
    model = _model(ip.n_path_channels_, control)
    H, r = 3, 2
    with torch.no_grad():
        model.controller[-1].weight.zero_()  # output = bias, whatever the input
        model.controller[-1].bias.copy_(torch.linspace(-2, 2, 2 * H * r))
        model.decay_logit.copy_(torch.linspace(-3, 1, H * H).reshape(H, H))  # λ per entry
    A, B = model._factors(model.controller[-1].bias, squash=True)
    M, lam = A @ B.T, model.decay
    theta = model.trajectory(path, parts=("theta",), **TIGHT)["theta"]  # (batch, knots, H, H)
    theta0 = theta[:, 0]
    s = torch.arange(theta.shape[1], dtype=torch.float64)[None, :, None, None]
    expected = M / lam + (theta0[:, None] - M / lam) * torch.exp(-lam * s)
    torch.testing.assert_close(theta, expected, rtol=1e-7, atol=1e-7)
    assert (theta[:, -1] - theta0).abs().max() > 0.1  # θ really moved


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_zero_parameters_relax_to_tanh_of_the_bias(tau):
    """θ ≡ 0, no drive: dz/ds = (tanh(b) − z) / τ, so z(s) = tanh(b) + (z0 − tanh(b)) e^{−s/τ}."""
    ip, path = make_path(6, [5, 5])
    model = _model(ip.n_path_channels_, "static", input_drive=False, tau=tau)
    b = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    with torch.no_grad():
        model.theta_base.zero_()
        model.initial_map[-1].weight.zero_()
        model.initial_map[-1].bias.zero_()  # θ(0) = Θ + A₀B₀ᵀ = 0
        model.bias.copy_(b)
    z = model.trajectory(path, **TIGHT)
    s = torch.arange(z.shape[1], dtype=torch.float64)[None, :, None]
    expected = torch.tanh(b) + (z[:, :1] - torch.tanh(b)) * torch.exp(-s / tau)
    torch.testing.assert_close(z, expected, rtol=1e-8, atol=1e-8)


def test_tau_slows_the_state_not_theta():
    """With a constant controller output, θ(s) does not depend on τ, while z does."""
    ip, path = make_path(7, [6, 4])
    thetas, zs = [], []
    for tau in (1.0, 4.0):
        model = _model(ip.n_path_channels_, "closed", tau=tau)
        with torch.no_grad():
            model.controller[-1].weight.zero_()  # dθ/ds = M − λ ⊙ θ, whatever the state
            model.controller[-1].bias.copy_(torch.linspace(-2, 2, 12))
        out = model.trajectory(path, parts=("z", "theta"), **TIGHT)
        thetas.append(out["theta"])
        zs.append(out["z"])
    torch.testing.assert_close(thetas[0], thetas[1], rtol=1e-7, atol=1e-7)
    assert (zs[0] - zs[1]).abs().max() > 0.05


def test_nonpositive_tau_rejected():
    with pytest.raises(ValueError, match="tau=0"):
        NCODE(3, 2, tau=0)


def test_initial_state_is_E_x0_and_g_of_z0():
    ip, path = make_path(5, [4, 2])
    model = _model(ip.n_path_channels_, "closed")
    parts = model.unpack(model.initial_state(path))
    x0 = path.evaluate(0.0)
    z0 = x0 @ model.initial.weight.T + model.initial.bias
    torch.testing.assert_close(parts["z"], z0)
    out = model.initial_map(z0) / np.sqrt(model.rank)
    A0, B0 = out[:, : 3 * 2].reshape(-1, 3, 2), out[:, 3 * 2 :].reshape(-1, 3, 2)
    torch.testing.assert_close(parts["theta"], model.theta_base + A0 @ B0.transpose(1, 2))


def test_initial_map_starts_orthogonal_on_the_data_channels():
    model = NCODE(5, 2, hidden_size=3)
    E = model.initial.weight.detach()
    assert torch.equal(E[:, 0], torch.zeros(3))  # time is 0 at s = 0: no weight there
    torch.testing.assert_close(E[:, 1:] @ E[:, 1:].T, torch.eye(3))


# -- the modes: what each one lets the data reach -------------------------------------


def _same_start_different_later(n_channels=2, n_knots=8):
    """Two cases equal at s = 0 and different afterwards."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(2, n_channels, n_knots))
    X[1, :, 0] = X[0, :, 0]
    arr, lengths = check_X(X)
    ip = InputPath().fit(arr, lengths)
    return ip, ip.transform(arr, lengths, dtype=torch.float64).batch([0, 1])


@pytest.mark.parametrize("control", CONTROLS)
def test_without_input_drive_only_the_first_observation_counts(control):
    ip, path = _same_start_different_later()
    pure = _model(ip.n_path_channels_, control, input_drive=False)
    logits = pure(path, method="rk4")
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-12, atol=1e-12)
    driven = _model(ip.n_path_channels_, control, input_drive=True)
    logits = driven(path, method="rk4")
    assert (logits[0] - logits[1]).abs().max() > 1e-4


def test_open_loop_plans_theta_blind_to_the_input_closed_loop_does_not():
    ip, path = _same_start_different_later()
    theta = {}
    for control in ("open", "closed"):
        model = _model(ip.n_path_channels_, control, input_drive=True)
        theta[control] = model.trajectory(path, parts=("theta",), method="rk4")["theta"]
    torch.testing.assert_close(theta["open"][0], theta["open"][1], rtol=1e-12, atol=1e-12)
    assert (theta["closed"][0, -1] - theta["closed"][1, -1]).abs().max() > 1e-4


def test_static_keeps_theta0_and_fixed_shares_one_theta():
    ip, path = make_path(6, [5, 3], random_state=4)
    static = _model(ip.n_path_channels_, "static")
    theta = static.trajectory(path, parts=("theta",), method="rk4")["theta"]
    torch.testing.assert_close(theta, theta[:, :1].expand_as(theta), rtol=0, atol=0)
    assert (theta[0, 0] - theta[1, 0]).abs().max() > 1e-3  # θ(0) depends on the data
    fixed = _model(ip.n_path_channels_, "fixed")
    theta = fixed.trajectory(path, parts=("theta",), method="rk4")["theta"]
    assert torch.equal(theta, fixed.theta_base.expand_as(theta))
    assert fixed.initial_map is None and fixed.controller is None and fixed.decay is None


def test_fixed_is_the_plain_neural_ode():
    """control="fixed" against the plain nODE written out here and solved by dopri5."""
    ip, path = make_path(7, [6, 6], random_state=5)
    model = _model(ip.n_path_channels_, "fixed")

    def node(s, z):
        return torch.tanh(z @ model.theta_base.T + model.drive(path.evaluate(s))) - z

    z0 = model.initial(path.evaluate(0.0))
    times = torch.tensor([0.0, 6.0], dtype=torch.float64)
    z_end = odeint(node, z0, times, method="dopri5", rtol=1e-10, atol=1e-10)[-1]
    torch.testing.assert_close(model(path, **TIGHT), model.output(z_end), rtol=1e-7, atol=1e-7)


def test_euler_at_step_one_is_a_recurrent_net_with_programmed_weights():
    """NCodeClassifier's solver, written out: at τ = 1 the Euler step from knot k to
    k + 1 is z' = tanh(θ z + U X_{k+1} + b), θ' = (1 − λ) ⊙ θ + A Bᵀ with [A, B] from
    the controller on [z, θ z, X_{k+1}] (the input read one step ahead, as the fixed-step
    solvers do), both on the generic and the fast path."""
    ip, path = make_path(6, [5, 5, 5], n_channels=3)
    model = _model(ip.n_path_channels_, "closed")
    with torch.no_grad():
        z = model.initial(path.evaluate(0.0))
        theta = model.initial_theta(z)
        expected = [z]
        for k in range(5):
            x = path.evaluate(float(k + 1))
            theta_z = (theta @ z.unsqueeze(-1)).squeeze(-1)
            A, B = model._factors(model.controller(torch.cat([z, theta_z, x], -1)), squash=True)
            z = torch.tanh(theta_z + model.drive(x))
            theta = (1 - model.decay) * theta + A @ B.transpose(-1, -2)
            expected.append(z)
        solved = model.trajectory(path, method="euler", step_size=1.0)
        fast = model(path, solver_backend="fast", method="euler", step_size=1.0)
    torch.testing.assert_close(solved, torch.stack(expected, 1), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(fast, model.output(z), rtol=1e-12, atol=1e-12)
    assert (expected[-1] - expected[-2]).abs().max() > 0.05  # z still moves at the end


def test_classifier_defaults_are_the_measured_recipe():
    """The classifier reads the Euler step and the time-warp recipe; the regressor keeps
    the shared rk4 and no augmentation (docs/benchmarks.md measured the classifier)."""
    from skfwp import NCodeRegressor

    clf, reg = NCodeClassifier().get_params(), NCodeRegressor().get_params()
    assert (clf["method"], clf["time_warp"], clf["time_crop"], clf["max_iter"]) == (
        "euler",
        0.1,
        0.1,
        300,
    )
    assert (reg["method"], reg["time_warp"], reg["observation_dropout"]) == ("rk4", 0.0, 0.0)


@pytest.mark.parametrize("control", CONTROLS)
def test_fixed_step_matches_adaptive_oracle(control):
    """rk4 with a fine step against dopri5 at tight tolerance, unequal lengths in the batch."""
    ip, path = make_path(6, [5, 3, 4], random_state=1)
    model = _model(ip.n_path_channels_, control)
    fine = model(path, **TIGHT)
    oracle = model(path, method="dopri5", rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(fine, oracle, rtol=1e-6, atol=1e-6)
    coarse = model(path, method="euler", step_size=1.0)
    assert (coarse - oracle).abs().max() > 1e-4  # the oracle tells solvers apart


@pytest.mark.parametrize("control", ["closed", "open", "static"])
def test_adjoint_gradients_match_backpropagation(control):
    """Every piece of θ's dynamics is in the solver state, so the adjoint sees it all."""
    ip, path = make_path(5, [4, 4], random_state=2)
    grads = {}
    for adjoint in (False, True):
        model = _model(ip.n_path_channels_, control)
        opts = dict(method="rk4", step_size=0.05, adjoint=adjoint)
        model(path, **opts).square().sum().backward()
        grads[adjoint] = {n: p.grad for n, p in model.named_parameters()}
    for name, grad in grads[False].items():
        assert grad is not None and grad.abs().max() > 0, name
        # the adjoint ODE is discretised on its own: agreement to O(h^4), ~1e-7 here
        error = (grads[True][name] - grad).abs().max() / grad.abs().max()
        assert error < 1e-5, (name, float(error))


# -- numerics: bounded on a long horizon, memory per step --------------------------------


def test_long_horizon_stays_within_the_bounds():
    """T = 1000 steps of random input, a saturated controller, decays from 0.002 to ~1."""
    ip, path = make_path(1001, [1000, 1000, 700], random_state=6)
    H = 4
    model = _model(ip.n_path_channels_, "closed", hidden_size=H, rank=3)
    with torch.no_grad():
        for p in model.controller.parameters():
            p.mul_(20.0)  # A and B saturate: |A Bᵀ|_ij reaches its bound 1/H
        # λ per entry, from 0.0025 up to the cap (rk4 at step 1 must stay stable there)
        model.decay_logit.copy_(torch.linspace(-6, 6, H * H).reshape(H, H))
    out = model.trajectory(path, parts=("z", "theta"), method="rk4")
    z, theta = out["z"], out["theta"]
    assert torch.isfinite(z).all() and torch.isfinite(theta).all()
    ceiling = 1 / (H * model.decay)
    bound = torch.maximum(theta[:, :1].abs(), ceiling)  # per entry
    assert (theta.abs() <= bound * (1 + 1e-6)).all()
    z_bound = torch.clamp(z[:, :1].abs(), min=1.0)
    assert (z.abs() <= z_bound * (1 + 1e-6)).all()
    # not vacuous: some entry comes within 5 % of its ceiling, and the four slowest
    # entries end far from where they started
    peak = theta.abs().amax(dim=(0, 1))
    assert (peak >= 0.95 * ceiling).any()
    late = theta[:, 500:].abs().amax(dim=(0, 1)).flatten()[:4]
    assert (late > 3 * theta[:, 0].abs().amax(0).flatten()[:4]).all()


def _saved_elements(model, path, state):
    """Tensor elements autograd keeps for the backward of one field evaluation."""
    saved = []

    def pack(t):
        saved.append(t)
        return t

    params = {id(p) for p in model.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.forward_field(torch.tensor(0.5, dtype=torch.float64), state, path)
    return sum(t.numel() for t in saved if id(t) not in params)


def test_memory_per_step_grows_as_hidden_size_times_rank():
    """What one step keeps: H·r beyond θ-sized tensors (linear in r, slope linear in H)."""
    ip, path = make_path(4, [3, 3], random_state=7)

    def count(H, rank):
        model = _model(ip.n_path_channels_, "closed", hidden_size=H, rank=rank)
        state = model.initial_state(path).detach().requires_grad_(True)
        return _saved_elements(model, path, state)

    slope = {H: (count(H, 4) - count(H, 2)) / 2 for H in (8, 16)}  # per unit of rank
    assert count(16, 8) - count(16, 4) == 4 * slope[16]  # linear in the rank
    assert slope[16] == 2 * slope[8] > 0  # and that slope linear in H (not H²)
    # the rest grows no faster than θ itself (H²): doubling H at most quadruples it
    base = {H: count(H, 2) for H in (4, 8, 16)}
    assert base[16] / base[8] <= 4 and base[8] / base[4] <= 4


# -- the estimator --------------------------------------------------------------------


@pytest.mark.parametrize("layers", [(0,), (8, -1), (2.5,), (True,)])
def test_bad_controller_layers_rejected(layers, tiny_panel):
    X, y = tiny_panel
    with pytest.raises(ValueError, match="controller_layers"):
        NCodeClassifier(controller_layers=layers, max_iter=1).fit(X, y)


def test_unknown_control_rejected(tiny_panel):
    X, y = tiny_panel
    with pytest.raises(ValueError, match="control"):
        NCodeClassifier(control="feedback", max_iter=1).fit(X, y)


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_nonpositive_tau_rejected_by_the_estimator(tau, tiny_panel):
    X, y = tiny_panel
    with pytest.raises(ValueError, match="'tau' parameter"):
        NCodeClassifier(tau=tau, max_iter=1).fit(X, y)


@pytest.mark.parametrize("control", CONTROLS)
def test_every_mode_learns_the_tiny_task(control, tiny_panel):
    X, y = tiny_panel
    clf = NCodeClassifier(
        control=control,
        hidden_size=4,
        controller_layers=(8,),
        max_iter=25,
        learning_rate_init=1e-2,
        random_state=0,
    ).fit(X, y)
    assert clf.module_.control == control
    assert clf.score(X, y) >= 0.9


# -- static problems no flow of the input can solve -----------------------------------


def test_annuli_are_an_inner_disk_and_an_outer_ring():
    X, y = make_annuli(501, n_timepoints=4, random_state=0)
    assert X.shape == (501, 2, 4)
    np.testing.assert_array_equal(X, X[:, :, :1].repeat(4, axis=2))  # constant paths
    r = np.hypot(X[:, 0, 0], X[:, 1, 0])
    assert r[y == "inner"].max() <= 0.5 and 1.0 <= r[y == "outer"].min() <= r.max() <= 1.5
    assert (y == "inner").sum() == 251  # balanced, the extra case inner
    # uniform by area: half the ring's cases lie beyond the radius that halves its area
    assert abs(np.mean(r[y == "outer"] > np.sqrt((1 + 1.5**2) / 2)) - 0.5) < 0.07
    angle = np.arctan2(X[:, 1, 0], X[:, 0, 0])
    assert abs(np.mean(angle > 0) - 0.5) < 0.07
    again = make_annuli(501, n_timepoints=4, random_state=0)
    np.testing.assert_array_equal(again[0], X)
    assert not np.array_equal(make_annuli(501, n_timepoints=4, random_state=1)[0], X)
    with pytest.raises(ValueError, match="radii"):
        make_annuli(10, inner_radius=1.2)
    with pytest.raises(ValueError, match="n_timepoints"):
        make_annuli(10, n_timepoints=1)


def test_reflection_puts_the_inner_interval_between_two_sides():
    X, y = make_reflection(400, n_timepoints=3, random_state=0)
    x = X[:, 0, 0]
    assert X.shape == (400, 1, 3) and (y == "inner").sum() == 200
    assert np.abs(x[y == "inner"]).max() <= 0.3
    outer = x[y == "outer"]
    assert np.abs(outer).min() >= 0.6 and np.abs(outer).max() <= 1.0
    assert 0.4 < np.mean(outer > 0) < 0.6  # on both sides
    # no threshold on x beats 3/4: the best one cuts off one side only
    best = max(
        max(np.mean((x > c) == (y == "inner")), np.mean((x < c) == (y == "inner")))
        for c in np.linspace(-1.1, 1.1, 221)
    )
    assert 0.70 < best < 0.80
    with pytest.raises(ValueError, match="widths"):
        make_reflection(10, inner_width=0.7)


#: The claim's settings: a fine step, so that the solver's map is a flow of the plane
#: (with step 1, rk4's one-step map of a steep field can fold the line: the fixed
#: nODE then scored 0.956 on the reflection task, which no flow of the line can).
CLAIM = dict(
    **FLOW_TASK_PARAMS,
    max_iter=40,
    n_iter_no_change=40,
    label_smoothing=0.0,  # the setting the claim was measured in (docs/models/ncode.md)
)


def _accuracy(make, control, seed, **params):
    X, y = make(150, n_timepoints=3, random_state=0)
    X_test, y_test = make(1000, n_timepoints=3, random_state=1)
    clf = NCodeClassifier(**{**CLAIM, **params}, control=control, random_state=seed)
    return clf.fit(X, y).score(X_test, y_test)


def test_ncode_separates_the_annuli_where_the_plain_node_cannot():
    """Seed 0 (the slow test below runs three). Measured: closed 1.000, open 0.991,
    fixed 0.669."""
    closed, fixed = _accuracy(make_annuli, "closed", 0), _accuracy(make_annuli, "fixed", 0)
    assert closed >= 0.95 and _accuracy(make_annuli, "open", 0) >= 0.95
    assert fixed <= 0.9
    assert closed - fixed >= 0.1


@pytest.mark.slow
def test_ncode_annuli_claim_over_seeds():
    """The paper's claim on seeds 0-2: closed and open loop >= 0.95, fixed clearly below.

    Measured on seeds 0-5 (docs/models/ncode.md): closed 0.987-1.000, open
    0.979-0.995, fixed 0.669-0.887; on seeds 0-2 the mean gap closed - fixed is 0.29.
    """
    results = {
        control: [_accuracy(make_annuli, control, seed) for seed in range(3)]
        for control in ("closed", "open", "fixed")
    }
    assert min(results["closed"]) >= 0.95 and min(results["open"]) >= 0.95
    assert max(results["fixed"]) <= 0.9
    assert np.mean(results["closed"]) - np.mean(results["fixed"]) >= 0.2


@pytest.mark.slow
def test_ncode_solves_the_reflection_task_with_a_one_dimensional_state():
    closed = _accuracy(make_reflection, "closed", 0, hidden_size=1)
    fixed = _accuracy(make_reflection, "fixed", 0, hidden_size=1)
    assert closed >= 0.95
    assert fixed <= 0.80  # a flow of the line and a threshold: at most ~0.75


# -- the fast path ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "step_size"), FAST_CASES)
@pytest.mark.parametrize(
    ("control", "input_drive"),
    [("closed", True), ("open", True), ("static", True), ("fixed", True), ("closed", False)],
)
@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_fast_path_matches_generic(method, step_size, control, input_drive, tau):
    """Logits and parameter gradients of the fast path and torchdiffeq's, unequal lengths."""
    ip, path = make_path(9, [8, 5, 3], random_state=3)
    model = _model(ip.n_path_channels_, control, input_drive=input_drive, tau=tau)
    fast, _ = fast_vs_generic(model, path, method, step_size)
    assert fast.abs().max() > 1e-3


def test_fast_path_refuses_adaptive_methods_and_adjoint():
    ip, path = make_path(5, [4, 2])
    fast_refused(_model(ip.n_path_channels_), path)


@pytest.mark.parametrize("control", CONTROLS)
def test_fast_path_in_recomputed_chunks_matches_generic(control, monkeypatch):
    """A run cut into chunks (no graph in the forward, recomputed in the backward)."""
    from skfwp.nn import fast_solver

    ip, path = make_path(12, [11, 6], random_state=4)
    model = _model(ip.n_path_channels_, control)
    monkeypatch.setattr(fast_solver, "FIXED_GRID_MEMORY", 0)  # chunks of ⌈√n⌉ steps
    fast_vs_generic(model, path, "rk4", 0.5)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fast_path_on_cuda_matches_generic(method):
    ip, _ = make_path(9, [8, 5, 3], random_state=3)
    fast_vs_generic_on_cuda(_model(ip.n_path_channels_), method)
