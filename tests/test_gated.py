"""GatedNODEClassifier's model against closed forms and an oracle; the flip-flop data."""

import math

import numpy as np
import pytest
import torch
from conftest import FAST_CASES, fast_refused, fast_vs_generic, fast_vs_generic_on_cuda, make_path

from skfwp import GatedNODEClassifier
from skfwp.datasets import make_flip_flop
from skfwp.nn.gated import GatedNODE, find_fixed_points


def _model(n_channels, gated=True, hidden_size=3, flow_layers=(8,), tau=1.0, seed=0, **options):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GatedNODE(
            n_channels,
            2,
            hidden_size=hidden_size,
            flow_layers=flow_layers,
            tau=tau,
            gated=gated,
            **options,
        ).double()


def _constant_flow(model, c, gate_bias=None):
    """F ≡ c (last layer zeroed, bias c); gate weights zeroed so that G = sigmoid(b_g)."""
    with torch.no_grad():
        model.flow[-1].weight.zero_()
        model.flow[-1].bias.copy_(c)
        if gate_bias is not None:
            model.gate.weight.zero_()
            model.gate.bias.copy_(gate_bias)


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_constant_flow_matches_closed_form(gated, method):
    """F ≡ c, G = sigmoid(b_g): h(s) = c + (h0 − c) exp(−G s / τ) at every knot."""
    ip, path = make_path(7, [6, 3])
    tau = 2.5
    model = _model(ip.n_path_channels_, gated=gated, tau=tau)
    c = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    b = torch.tensor([-1.0, 0.0, 2.0], dtype=torch.float64)
    _constant_flow(model, c, b if gated else None)
    G = torch.sigmoid(b) if gated else torch.ones(3, dtype=torch.float64)
    opts = dict(method=method, step_size=0.05, rtol=1e-10, atol=1e-12)
    traj = model.trajectory(path, **opts)  # (batch, n_knots, H)
    h0 = model.initial(path.evaluate(0.0))
    s = torch.arange(traj.shape[1], dtype=torch.float64)[None, :, None]
    expected = c + (h0[:, None] - c) * torch.exp(-G * s / tau)
    torch.testing.assert_close(traj, expected, rtol=1e-7, atol=1e-7)
    # the state really moved, and the gate set the speed
    assert (traj[:, -1] - h0).abs().max() > 0.5


def test_initial_state_is_linear_in_first_observation():
    ip, path = make_path(5, [4, 2])
    model = _model(ip.n_path_channels_)
    x0 = path.evaluate(0.0)
    torch.testing.assert_close(
        model.initial_state(path), x0 @ model.initial.weight.T + model.initial.bias
    )


@pytest.mark.parametrize("gated", [True, False])
def test_fixed_step_matches_adaptive_oracle(gated):
    """rk4 with a fine step against dopri5 at tight tolerance, on random input paths."""
    ip, path = make_path(6, [5, 3], random_state=1)
    model = _model(ip.n_path_channels_, gated=gated, flow_layers=(8, 8), tau=0.7)
    fine = model(path, method="rk4", step_size=0.05)
    # ReLU kinks cost rk4 its order locally (and dopri5 many small steps): 1e-5 is
    # what step 0.05 reaches, 1e-8 what keeps the oracle's error well below it
    oracle = model(path, method="dopri5", rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(fine, oracle, rtol=1e-5, atol=1e-5)
    coarse = model(path, method="euler", step_size=1.0)
    assert (coarse - oracle).abs().max() > 1e-3  # the oracle tells solvers apart


def test_euler_at_step_tau_is_the_gru_like_update():
    """Euler with Δs = τ = 1 is the released code's update h_t = (1 − G) h_{t−1} + G F.

    G and F read ``x_t``, the observation at the step's end (euler reads its input
    there), so the last observation reaches the state.
    """
    ip, path = make_path(8, [7, 7], random_state=2)
    model = _model(ip.n_path_channels_, flow_layers=(8,), tau=1.0)
    traj = model.trajectory(path, method="euler", step_size=1.0)
    h = model.initial_state(path)
    for k in range(7):
        hx = torch.cat([h, path.evaluate(float(k + 1))], dim=-1)
        G = torch.sigmoid(model.gate(hx))
        h = (1 - G) * h + G * model.flow(hx)
        torch.testing.assert_close(traj[:, k + 1], h)


@pytest.mark.parametrize("gated", [True, False])
@pytest.mark.parametrize("leak", [True, False])
def test_released_options_match_a_hand_written_recursion(gated, leak):
    """leak, gain and a tanh on F, at Euler step τ = 1: the authors' discrete update.

    ``h_t = h_{t−1} + z_t ⊙ (−h_{t−1} [if leak] + g tanh(W_2 relu(W_1 [h, x_t] + b_1) + b_2))``
    with ``z_t = sigmoid(W_g [h, x_t] + b_g)`` (1 without the gate), written out from
    the weights, not from the module's methods.
    """
    ip, path = make_path(8, [7, 4], random_state=5)
    model = _model(ip.n_path_channels_, gated=gated, leak=leak, gain=True, flow_activation="tanh")
    with torch.no_grad():
        model.gain.fill_(1.7)
    traj = model.trajectory(path, method="euler", step_size=1.0)
    W1, W2 = model.flow[0], model.flow[2]
    h = model.initial.weight @ path.evaluate(0.0).T
    h = (h + model.initial.bias[:, None]).T
    for k in range(7):
        hx = torch.cat([h, path.evaluate(float(k + 1))], dim=-1)
        f = 1.7 * torch.tanh(torch.relu(hx @ W1.weight.T + W1.bias) @ W2.weight.T + W2.bias)
        drive = f - h if leak else f
        z = torch.sigmoid(hx @ model.gate.weight.T + model.gate.bias) if gated else 1.0
        h = h + z * drive
        torch.testing.assert_close(traj[:, k + 1], h)
    # every option changes the model (the recursion above would pass a no-op too)
    plain = _model(ip.n_path_channels_, gated=gated)
    assert (plain.trajectory(path, method="euler", step_size=1.0) - traj).abs().max() > 1e-2


def test_minimal_gru_special_case():
    """flow_layers=() with a tanh: F = tanh(W [h, x] + b), the minimal GRU's candidate."""
    model = _model(4, flow_layers=(), flow_activation="tanh")
    assert [type(m).__name__ for m in model.flow] == ["Linear", "Tanh"]
    h, x = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 4).double()
    W = model.flow[0]
    expected = torch.tanh(torch.cat([h, x], -1) @ W.weight.T + W.bias) - h
    expected = torch.sigmoid(model.gate(torch.cat([h, x], -1))) * expected
    torch.testing.assert_close(model.velocity(h, x), expected)
    assert model.velocity(100 * h, x).abs().le(100 * h.abs() + 1.0 + 1e-9).all()


@pytest.mark.parametrize(
    ("flow_layers", "flow_activation"), [((8,), None), ((), "tanh"), ((16,), "tanh")]
)
def test_critical_init_puts_the_jacobian_at_the_edge(flow_layers, flow_activation):
    """The rightmost eigenvalue of ∂(−h + F)/∂h at h = 0, x = 0 has real part 0."""
    n_channels, H = 3, 4
    model = _model(
        n_channels,
        hidden_size=H,
        flow_layers=flow_layers,
        flow_activation=flow_activation,
        init="critical",
    )
    default = _model(
        n_channels, hidden_size=H, flow_layers=flow_layers, flow_activation=flow_activation
    )
    x = torch.zeros(n_channels, dtype=torch.float64)

    def rightmost(m):
        jac = torch.autograd.functional.jacobian(
            lambda h: m.flow(torch.cat([h, x])) - h, torch.zeros(H, dtype=torch.float64)
        )
        return torch.linalg.eigvals(jac).real.max().item()

    assert abs(rightmost(model)) < 1e-5  # rescaled in float32, at construction
    assert abs(rightmost(default)) > 1e-2  # the default initialisation is elsewhere
    # only F's last layer was rescaled (same seed, same other weights)
    for (name, p), q in zip(model.named_parameters(), default.parameters(), strict=True):
        if name != f"flow.{len(model.flow) - 1 - (flow_activation is not None)}.weight":
            torch.testing.assert_close(p, q)


def test_fixed_points_without_leak_are_zeros_of_f():
    """leak=False: dh/ds = G ⊙ g F, so the fixed points are the zeros of F, not of F − h."""
    model = _model(2, hidden_size=1, flow_layers=(), leak=False)
    with torch.no_grad():  # F(h, x) = 2 h − 1 + 0 x: one zero at h = 0.5, unstable
        model.flow[0].weight.copy_(torch.tensor([[2.0, 0.0, 0.0]]))
        model.flow[0].bias.fill_(-1.0)
    seeds = torch.linspace(-2, 2, 5, dtype=torch.float64)[:, None]
    points, stable, _ = model.fixed_points(torch.zeros(2), seeds)
    torch.testing.assert_close(points, torch.tensor([[0.5]], dtype=torch.float64))
    assert not stable.item()


def test_bad_released_options_are_named(tiny_panel):
    with pytest.raises(ValueError, match="flow_activation='relu'"):
        GatedNODE(3, 2, flow_activation="relu")
    with pytest.raises(ValueError, match="init='he'"):
        GatedNODE(3, 2, init="he")
    X, y = tiny_panel
    with pytest.raises(ValueError, match="flow_activation"):
        GatedNODEClassifier(flow_activation="relu", max_iter=1).fit(X, y)
    with pytest.raises(ValueError, match="init"):
        GatedNODEClassifier(init="he", max_iter=1).fit(X, y)


def test_classifier_builds_the_released_options(tiny_panel):
    X, y = tiny_panel
    clf = GatedNODEClassifier(
        hidden_size=2,
        flow_layers=(),
        leak=False,
        gain=True,
        flow_activation="tanh",
        init="critical",
        max_iter=2,
        random_state=0,
    ).fit(X, y)
    for m in (clf.module_.forward_model, clf.module_.reverse_model):  # bidirectional
        assert (m.leak, type(m.flow[-1]).__name__) == (False, "Tanh")
        assert m.gain is not None and m.gain.item() != 1.0  # the gain was trained


def test_trajectory_ends_where_forward_reads_out():
    ip, path = make_path(9, [8, 4, 6], random_state=3)
    model = _model(ip.n_path_channels_)
    traj = model.trajectory(path, method="rk4")
    h_end = traj[torch.arange(3), path.ends]
    torch.testing.assert_close(model.output(h_end), model(path, method="rk4"))


def test_plain_node_has_no_gate_and_ignores_gate_parameters():
    model = _model(3, gated=False)
    assert model.gate is None
    h, x = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 3, dtype=torch.float64)
    expected = model.flow(torch.cat([h, x], -1)) - h
    torch.testing.assert_close(model.velocity(h, x), expected)


def set_clamp_flow(model):
    """Make ``F_i(h) = clamp(2 h_i, −1, 1)``, blind to the input, from ReLUs (in place).

    ``model``: a GatedNODE with hidden_size=2 and flow_layers=(4,). Each coordinate of
    −h + F has zeros −1, 0, 1 (slopes −1, +1, −1), so the plane has 9 fixed points:
    the 4 corners (±1, ±1) stable, the other 5 unstable, gated or not.
    """
    first, last = model.flow[0], model.flow[-1]
    with torch.no_grad():
        first.weight.zero_()
        first.weight[:, :2] = torch.tensor([[2.0, 0], [2, 0], [0, 2], [0, 2]])
        first.bias.copy_(torch.tensor([1.0, -1, 1, -1]))
        last.weight.copy_(torch.tensor([[1.0, -1, 0, 0], [0, 0, 1, -1]]))
        last.bias.fill_(-1.0)
    return model


CLAMP_FIXED_POINTS = {(a, b) for a in (-1.0, 0.0, 1.0) for b in (-1.0, 0.0, 1.0)}


@pytest.mark.parametrize("gated", [True, False])
def test_fixed_points_of_a_known_field(gated):
    model = set_clamp_flow(_model(3, gated=gated, hidden_size=2, flow_layers=(4,)))
    x = torch.tensor([0.3, -0.5, 1.0], dtype=torch.float64)
    grid = torch.linspace(-2, 2, 7, dtype=torch.float64)
    seeds = torch.cartesian_prod(grid, grid)
    points, stable, speed = model.fixed_points(x, seeds)
    found = {tuple(p) for p in np.round(points.numpy(), 6).tolist()}
    assert found == CLAMP_FIXED_POINTS
    corners = points.abs().min(dim=1).values > 0.5
    assert torch.equal(stable, corners)
    assert (speed < 1e-10).all()


def test_find_fixed_points_drops_seeds_that_do_not_converge():
    # h² + 1 has no real zero: nothing may be reported
    none = find_fixed_points(lambda h: h**2 + 1, torch.linspace(-2, 2, 5)[:, None].double())
    assert none.shape == (0, 1)
    # (h − 1)(h + 2): both zeros, each once, from many seeds
    two = find_fixed_points(lambda h: (h - 1) * (h + 2), torch.linspace(-4, 4, 9)[:, None].double())
    torch.testing.assert_close(two.sort(0).values, torch.tensor([[-2.0], [1.0]]).double())


def test_module_rejects_bad_tau():
    with pytest.raises(ValueError, match="tau"):
        GatedNODE(3, 2, tau=0.0)


# -- estimator ----------------------------------------------------------------------


@pytest.mark.parametrize("flow_layers", [(0,), (8, -1), (2.5,), (True,)])
def test_bad_flow_layers_rejected(flow_layers, tiny_panel):
    X, y = tiny_panel
    with pytest.raises(ValueError, match="flow_layers"):
        GatedNODEClassifier(flow_layers=flow_layers, max_iter=1).fit(X, y)


@pytest.mark.parametrize("hidden_size", [1, 2])
@pytest.mark.parametrize("gated", [True, False])
def test_tiny_states_learn(hidden_size, gated, tiny_panel):
    X, y = tiny_panel
    clf = GatedNODEClassifier(
        hidden_size=hidden_size,
        flow_layers=(16,),
        gated=gated,
        bidirectional=False,  # one model's tiny state
        max_iter=30,
        learning_rate_init=1e-2,
        random_state=0,
    ).fit(X, y)
    assert clf.module_.output.in_features == hidden_size
    assert (clf.module_.gate is not None) == gated
    assert clf.score(X, y) >= 0.9


def test_affine_flow_and_deeper_flow_build():
    clf = GatedNODEClassifier(flow_layers=(), hidden_size=4)
    assert len(clf._build_module(3, 2).flow) == 1  # one Linear: F affine
    clf = GatedNODEClassifier(flow_layers=[5, 6], hidden_size=4)
    widths = [m.out_features for m in clf._build_module(3, 2).flow if hasattr(m, "out_features")]
    assert widths == [5, 6, 4]


# -- flip-flop data ------------------------------------------------------------------


def _last_pulse_signs(X):
    """Sign of each channel's last non-zero value, (n_cases, n_bits)."""
    nonzero = X != 0
    last = X.shape[2] - 1 - np.argmax(nonzero[:, :, ::-1], axis=2)
    return np.sign(np.take_along_axis(X, last[..., None], axis=2)[..., 0])


def test_flip_flop_labels_are_last_pulse_signs():
    X, y = make_flip_flop(300, n_bits=3, n_timepoints=60, random_state=0)
    assert X.shape == (300, 3, 60) and y.shape == (300,)
    assert (X != 0).any(axis=2).all()  # every channel of every case has a pulse
    signs = _last_pulse_signs(X)
    expected = np.array(["".join("+" if s > 0 else "-" for s in row) for row in signs])
    np.testing.assert_array_equal(y, expected)
    assert set(np.unique(X)) == {-1.0, 0.0, 1.0}
    assert len(set(y)) == 8  # 2**3 classes


def test_flip_flop_pulses_and_rate():
    X, _ = make_flip_flop(400, n_bits=2, random_state=1, pulse_rate=0.06, pulse_width=3)
    # runs of a non-zero value have length pulse_width unless pulses overlap
    onsets = (X != 0) & (np.diff(X, axis=2, prepend=0) != 0)
    per_channel = onsets.sum(axis=2).mean()
    assert 4.0 < per_channel < 6.5  # ~0.06 x 98 onsets, fewer where pulses merge
    assert not (X[:, :, -1] != 0).all()


def test_flip_flop_is_deterministic_and_continuous_variant():
    a = make_flip_flop(5, random_state=3)
    b = make_flip_flop(5, random_state=3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    c = make_flip_flop(5, random_state=4)
    assert not np.array_equal(a[0], c[0])
    X, y = make_flip_flop(50, random_state=0, continuous=True)
    values = np.abs(X[X != 0])
    assert values.min() >= 0.1 and values.max() <= 1.0 and len(np.unique(values)) > 10
    expected = np.array(
        ["".join("+" if s > 0 else "-" for s in row) for row in _last_pulse_signs(X)]
    )
    np.testing.assert_array_equal(y, expected)


def test_flip_flop_amplitude_target_is_the_last_pulse_value():
    """target="amplitude": the value of each channel's last pulse (regression), from
    the same draws as the class labels."""
    X, y = make_flip_flop(60, n_bits=2, random_state=5, continuous=True, target="amplitude")
    _, labels = make_flip_flop(60, n_bits=2, random_state=5, continuous=True)
    assert y.shape == (60, 2) and y.dtype == np.float64
    nonzero = X != 0
    last = X.shape[2] - 1 - np.argmax(nonzero[:, :, ::-1], axis=2)
    np.testing.assert_array_equal(y, np.take_along_axis(X, last[..., None], axis=2)[..., 0])
    signs = np.array([["+" if v > 0 else "-" for v in row] for row in y])
    np.testing.assert_array_equal(["".join(row) for row in signs], labels)
    _, y1 = make_flip_flop(10, n_bits=1, random_state=0, target="amplitude")
    assert y1.shape == (10,) and set(np.abs(y1)) == {1.0}


def test_flip_flop_rejects_bad_arguments():
    with pytest.raises(ValueError, match="target must be"):
        make_flip_flop(5, target="magnitude")
    with pytest.raises(ValueError, match="pulse_width"):
        make_flip_flop(5, n_timepoints=10, pulse_width=11)
    with pytest.raises(ValueError, match="n_bits"):
        make_flip_flop(5, n_bits=0)


# -- the fast path ----------------------------------------------------------------------


@pytest.mark.parametrize(("method", "step_size"), FAST_CASES)
@pytest.mark.parametrize(
    ("gated", "flow_layers", "options"),
    [
        (True, (8,), {}),
        (False, (6, 5), {}),
        (True, (), {}),
        (True, (), {"leak": False, "gain": True, "flow_activation": "tanh"}),
    ],
)
def test_fast_path_matches_generic(method, step_size, gated, flow_layers, options):
    """Logits and parameter gradients of the fast path and torchdiffeq's, unequal lengths."""
    ip, path = make_path(9, [8, 5, 3], random_state=3)
    model = _model(ip.n_path_channels_, gated=gated, flow_layers=flow_layers, tau=0.7, **options)
    fast, _ = fast_vs_generic(model, path, method, step_size)
    assert fast.abs().max() > 1e-3


def test_fast_path_refuses_adaptive_methods_and_adjoint(tiny_panel):
    ip, path = make_path(5, [4, 2])
    fast_refused(_model(ip.n_path_channels_), path)
    X, y = tiny_panel
    with pytest.raises(ValueError, match="method='dopri5'"):
        GatedNODEClassifier(solver_backend="fast", method="dopri5", max_iter=1).fit(X, y)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fast_path_in_recomputed_chunks_matches_generic(method, monkeypatch):
    """A run cut into chunks (no graph in the forward, recomputed in the backward)."""
    from skfwp.nn import fast_solver

    ip, path = make_path(12, [11, 6], random_state=4)
    model = _model(ip.n_path_channels_, tau=0.7)
    monkeypatch.setattr(fast_solver, "FIXED_GRID_MEMORY", 0)  # chunks of ⌈√n⌉ steps
    fast_vs_generic(model, path, method, 0.5)


def _uses_hand_written_backward(model, path):
    h = model.integrate_fast(model.initial_state(path), path, "rk4")
    return type(h.grad_fn).__name__ == "_GatedRKBackward"


#: Every branch of the hand-written backward: gated x leak x gain x tanh x depth of F.
HAND_WRITTEN = [
    (gated, flow_layers, {"leak": leak, "gain": gain, "flow_activation": activation})
    for gated in (True, False)
    for flow_layers in ((), (7,), (6, 5))
    for leak in (True, False)
    for gain in (False, True)
    for activation in (None, "tanh")
]


@pytest.mark.parametrize(
    ("method", "step_size"), [("euler", 1.0), ("midpoint", 0.7), ("rk4", 0.5), ("rk4", 0.7)]
)
@pytest.mark.parametrize(("gated", "flow_layers", "options"), HAND_WRITTEN)
def test_hand_written_backward_matches_generic(method, step_size, gated, flow_layers, options):
    """The hand-written backward (:mod:`skfwp.nn.gated_fast`) against torchdiffeq's autograd.

    Cases end at knots 8, 5, 0 (a single observation, read at the initial state) and
    3; step 0.7 reads them between grid points and ends on a shorter step.
    """
    ip, path = make_path(9, [8, 5, 0, 3], random_state=6)
    model = _model(ip.n_path_channels_, gated=gated, flow_layers=flow_layers, tau=0.7, **options)
    if options["gain"]:
        with torch.no_grad():
            model.gain.fill_(1.3)
    assert _uses_hand_written_backward(model, path)
    fast, _ = fast_vs_generic(model, path, method, step_size)
    assert fast.abs().max() > 1e-3


@pytest.mark.parametrize("method", ["midpoint", "rk4"])
def test_hand_written_backward_matches_the_autograd_loop(method, monkeypatch):
    """Logits and gradients equal those of the autograd loop it replaces, to rounding."""
    from skfwp.nn import gated

    ip, path = make_path(12, [11, 6, 9], random_state=7)
    model = _model(ip.n_path_channels_, flow_layers=(6, 5), tau=0.7, gain=True)
    params = list(model.parameters())

    def run():
        logits = model(path, solver_backend="fast", method=method, step_size=0.7)
        return logits, torch.autograd.grad(logits.square().sum(), params)

    new, new_grads = run()
    monkeypatch.setattr(gated, "flow_layers", lambda flow: None)  # the autograd loop
    assert not _uses_hand_written_backward(model, path)
    old, old_grads = run()
    torch.testing.assert_close(new, old, rtol=1e-12, atol=1e-12)
    for a, b in zip(new_grads, old_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-12)
    with torch.no_grad():  # prediction runs the same loop without keeping anything
        torch.testing.assert_close(model(path, method=method, step_size=0.7), new.detach())


@pytest.mark.parametrize("options", [{}, {"gain": True, "flow_activation": "tanh", "leak": False}])
def test_hand_written_backward_gradcheck_in_chunks(options, monkeypatch):
    """gradcheck of every input, the path's values included, with the run in chunks."""
    from skfwp.nn import fast_solver
    from skfwp.nn.fast_solver import StagePlan
    from skfwp.nn.gated_fast import integrate_gated

    monkeypatch.setattr(fast_solver, "FIXED_GRID_MEMORY", 0)  # chunks of ⌈√n⌉ steps
    ends = torch.tensor([5, 2, 4])
    plan = StagePlan(ends, "rk4", 0.7, torch.float64)
    assert plan.n_steps > math.ceil(math.sqrt(plan.n_steps))  # more than one chunk
    H, K, width = 2, 3, 4
    gen = torch.Generator().manual_seed(0)  # fixed inputs: no draw lands on a ReLU kink

    def rand(*shape):
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()

    tensors = (
        rand(3, H),  # h0
        rand(len(plan.times), 3, K),  # x
        rand(width + H, H),  # w_state
        rand(width + H, K),  # w_input
        rand(width + H),  # bias
        rand(3, width),  # W_1
        rand(3),  # b_1
        rand(H, 3),  # W_2
        rand(H),  # b_2
        rand(()),  # gain
    )

    def run(h0, x, w_state, w_input, bias, W1, b1, W2, b2, gain):
        return integrate_gated(
            h0,
            x,
            plan,
            w_state,
            w_input,
            bias,
            [(W1, b1), (W2, b2)],
            width=width,
            gated=True,
            leak=options.get("leak", True),
            tanh=options.get("flow_activation") == "tanh",
            tau=0.8,
            gain=gain if options.get("gain") else None,
        )

    assert torch.autograd.gradcheck(run, tensors)


def test_unknown_flow_falls_back_to_the_autograd_loop():
    """A flow that is not Linear/ReLU layers runs the autograd loop, and still agrees."""
    ip, path = make_path(9, [8, 5, 3], random_state=3)
    model = _model(ip.n_path_channels_, flow_layers=(8,), tau=0.7)
    model.flow[1] = torch.nn.Tanh()  # a tanh hidden layer: not what mlp builds here
    assert not _uses_hand_written_backward(model, path)
    fast_vs_generic(model, path, "rk4", 0.5)


@pytest.mark.gpu
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fast_path_on_cuda_matches_generic(method):
    ip, _ = make_path(9, [8, 5, 3], random_state=3)
    fast_vs_generic_on_cuda(_model(ip.n_path_channels_, tau=0.7), method)


def test_critical_init_warns_when_f_ignores_the_state_at_the_origin():
    model = _model(3, hidden_size=2, flow_layers=(4,))
    with torch.no_grad():  # every ReLU unit off at h = 0, x = 0
        model.flow[0].bias.fill_(-1.0)
    before = model.flow[-1].weight.clone()
    with pytest.warns(UserWarning, match="no rescaling reaches the edge"):
        model.critical_scale()
    torch.testing.assert_close(model.flow[-1].weight, before)


def test_classifier_defaults_are_the_measured_recipe():
    """The classifier reads the Euler step (the released update above), window slicing
    and a 128-wide flow; the regressor keeps rk4, no crop and 64 (docs/benchmarks.md
    measured the classifier)."""
    from skfwp import GatedNODERegressor

    clf, reg = GatedNODEClassifier().get_params(), GatedNODERegressor().get_params()
    assert (clf["method"], clf["time_crop"], tuple(clf["flow_layers"])) == ("euler", 0.1, (128,))
    assert (reg["method"], reg["time_crop"], tuple(reg["flow_layers"])) == ("rk4", 0.0, (64,))
