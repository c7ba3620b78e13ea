"""The fast solver against torchdiffeq (solver level) and the generic path (model level)."""

import numpy as np
import pytest
import torch
from torchdiffeq import odeint

from skfwp import ContinuousDeltaClassifier
from skfwp._validation import check_X
from skfwp.nn import fast_solver
from skfwp.nn.delta import (
    AFFINE_RULES,
    LEARNING_RULES,
    ContinuousFWP,
    learning_rule_update,
    rank_one_form,
)
from skfwp.nn.fast_solver import (
    FAST_METHODS,
    INPUT_AHEAD_METHODS,
    StagePlan,
    fixed_grid,
    integrate_rank_one,
)
from skfwp.path import InputPath

DTYPE = torch.float64
RTOL = 1e-6


@pytest.fixture(autouse=True)
def _seed():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        yield


def _relative_error(actual, expected):
    actual, expected = actual.detach(), expected.detach()
    return float((actual - expected).abs().max() / expected.abs().max())


# -- solver level: integrate_rank_one against torchdiffeq on the same stage values ----


def _torchdiffeq_oracle(S0, p, q, beta, plan, ends, method, step_size, decay):
    """torchdiffeq's fixed-grid solve of the same ODE, read out as skfwp.nn.solver does.

    The field looks its coefficients up by stage time: the lookup fails unless the
    plan's stage times are exactly the times torchdiffeq asks for (euler: the next
    grid point, where it reads its input).
    """
    grid = fixed_grid(float(ends.max()), step_size, DTYPE)

    def field(t, S):
        if method in INPUT_AHEAD_METHODS:
            t = grid[min(int(torch.searchsorted(grid, t.reshape(1), right=True)), len(grid) - 1)]
        (i,) = torch.nonzero(plan.times == t)[0]
        error = p[i] - (S @ q[i].unsqueeze(-1)).squeeze(-1) if decay else p[i]
        return beta[i][..., None, None] * error.unsqueeze(-1) * q[i].unsqueeze(-2)

    times, slot = torch.unique(ends, sorted=True, return_inverse=True)
    if int(times[0]) != 0:
        times, slot = torch.cat([times.new_zeros(1), times]), slot + 1
    zs = odeint(field, S0, times.to(DTYPE), method=method, options={"step_size": step_size})
    return zs[slot, torch.arange(len(ends))]


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("step_size", [1.0, 0.3, 2.0])
@pytest.mark.parametrize("decay", [True, False])
@pytest.mark.parametrize(
    ("chunk_size", "recompute"), [(None, False), (1, True), (3, True), (3, False)]
)
def test_rank_one_solver_matches_torchdiffeq(
    method, step_size, decay, chunk_size, recompute, monkeypatch
):
    if recompute:  # keep no state: the backward recomputes each chunk from its first
        monkeypatch.setattr(fast_solver, "STATE_MEMORY", 0)
    # unequal ends, one at 0; step 0.3 and 2.0 read cases out between grid points
    ends = torch.tensor([4, 7, 0, 5])
    plan = StagePlan(ends, method, step_size, DTYPE)
    n_times, batch, heads, d = len(plan.times), len(ends), 2, 3
    S0 = torch.randn(batch, heads, d, d, dtype=DTYPE, requires_grad=True)
    p = torch.randn(n_times, batch, heads, d, dtype=DTYPE, requires_grad=True)
    q = torch.randn(n_times, batch, heads, d, dtype=DTYPE).softmax(-1).requires_grad_()
    beta = torch.rand(n_times, batch, heads, dtype=DTYPE, requires_grad=True)
    inputs = (S0, p, q, beta)

    fast = integrate_rank_one(*inputs, plan, decay=decay, chunk_size=chunk_size)
    oracle = _torchdiffeq_oracle(*inputs, plan, ends, method, step_size, decay)
    assert _relative_error(fast, oracle) < 1e-12
    weight = torch.randn_like(oracle)
    grads_fast = torch.autograd.grad((fast * weight).sum(), inputs)
    grads_oracle = torch.autograd.grad((oracle * weight).sum(), inputs)
    for name, g_fast, g_oracle in zip(
        ("S0", "p", "q", "beta"), grads_fast, grads_oracle, strict=True
    ):
        assert g_oracle.abs().max() > 0, name
        assert _relative_error(g_fast, g_oracle) < 1e-12, name


@pytest.mark.parametrize("method", FAST_METHODS)
@pytest.mark.parametrize("recompute", [False, True])
def test_rank_one_solver_gradcheck(method, recompute, monkeypatch):
    if recompute:
        monkeypatch.setattr(fast_solver, "STATE_MEMORY", 0)
    gen = torch.Generator().manual_seed(2)
    ends = torch.tensor([3, 5])
    plan = StagePlan(ends, method, 0.7, DTYPE)
    shape = (len(plan.times), 2, 1, 2)
    inputs = (
        torch.randn(2, 1, 2, 2, dtype=DTYPE, generator=gen).requires_grad_(),
        torch.randn(shape, dtype=DTYPE, generator=gen).requires_grad_(),
        torch.randn(shape, dtype=DTYPE, generator=gen).requires_grad_(),
        torch.rand(shape[:-1], dtype=DTYPE, generator=gen).requires_grad_(),
    )
    assert torch.autograd.gradcheck(lambda *x: integrate_rank_one(*x, plan, chunk_size=2), inputs)


@pytest.mark.parametrize("recompute", [False, True])
def test_rank_one_backward_is_hand_written(recompute, monkeypatch):
    # the backward runs the hand-written factor backward on every chunk and records no
    # autograd graph; it recomputes the chunks' steps only when they were not kept
    if recompute:
        monkeypatch.setattr(fast_solver, "STATE_MEMORY", 0)
    calls = {"_run": 0, "_step_factors_backward": 0}

    def spy(name, original):
        def counted(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        return counted

    for name in calls:
        monkeypatch.setattr(fast_solver, name, spy(name, getattr(fast_solver, name)))
    gen = torch.Generator().manual_seed(3)
    plan = StagePlan(torch.tensor([7, 4]), "rk4", 1.0, DTYPE)
    shape = (len(plan.times), 2, 2, 3)
    S0 = torch.randn(2, 2, 3, 3, dtype=DTYPE, generator=gen).requires_grad_()
    p = torch.randn(shape, dtype=DTYPE, generator=gen).requires_grad_()
    q = torch.randn(shape, dtype=DTYPE, generator=gen).requires_grad_()
    beta = torch.rand(shape[:-1], dtype=DTYPE, generator=gen).requires_grad_()
    out = integrate_rank_one(S0, p, q, beta, plan, chunk_size=3)  # chunks of 3, 3, 1 steps
    assert calls == {"_run": 3, "_step_factors_backward": 0}

    def no_graph(*args, **kwargs):
        raise AssertionError("the backward differentiated a graph")

    monkeypatch.setattr(torch.autograd, "grad", no_graph)
    out.sum().backward()
    assert calls == {"_run": 6 if recompute else 3, "_step_factors_backward": 3}
    assert all(x.grad.abs().max() > 0 for x in (S0, p, q, beta))


def test_rank_one_solver_takes_strided_inputs():
    gen = torch.Generator().manual_seed(4)
    plan = StagePlan(torch.tensor([5, 3]), "rk4", 1.0, DTYPE)
    n_times = len(plan.times)
    S0 = torch.randn(2, 2, 3, 3, dtype=DTYPE, generator=gen)
    # batch-major then transposed, and beta a slice: none of them contiguous
    p, q = torch.randn(2, 2, n_times, 2, 3, dtype=DTYPE, generator=gen).transpose(1, 2).unbind()
    beta = torch.rand(n_times, 2, 2, 3, dtype=DTYPE, generator=gen)[..., 0]
    inputs = [x.requires_grad_() for x in (S0, p, q, beta)]
    strided = integrate_rank_one(*inputs, plan)
    grads = torch.autograd.grad(strided.sum(), inputs)
    copies = [x.detach().contiguous().requires_grad_() for x in inputs]
    dense = integrate_rank_one(*copies, plan)
    torch.testing.assert_close(strided, dense, rtol=0, atol=0)
    for g, g_dense in zip(grads, torch.autograd.grad(dense.sum(), copies), strict=True):
        torch.testing.assert_close(g, g_dense, rtol=0, atol=0)


class _OneStep(torch.autograd.Function):
    """One step ``P_n + Q_n R_n (B_n − V_n P_n)`` from stage values, ``P_n`` fixed.

    Forward by ``_step_factors``, backward by ``_step_factors_backward``, fed with the
    products that the recurrence's sweep makes from ``G = dL/dP_{n+1}`` (``Ẽ = B − V
    P``): ``Ẽ Gᵀ``, ``dL/dB = R Qᵀ G``, ``−dL/dV = dL/dB Pᵀ`` and ``K = Qᵀ G Ẽᵀ``.
    ``p, q`` (stages, n, M, d), ``beta`` (stages, n, M), ``P`` (n, M, d, d), ``dt`` (n,).
    """

    @staticmethod
    def forward(ctx, p, q, beta, P, dt, tableau):
        (Q, R, B, V), saved = fast_solver._step_factors([*p], [*q], [*beta], dt, tableau)
        Qt, B, V = (fast_solver._matrices(f) for f in (Q, B, V))
        E = B - V @ P
        ctx.save_for_backward(p, q, beta, P, dt, Qt, R, E)
        ctx.tableau, ctx.saved = tableau, saved
        return P + Qt.transpose(-1, -2) @ (R * E)

    @staticmethod
    def backward(ctx, G):
        p, q, beta, P, dt, Qt, R, E = ctx.saved_tensors
        grads = [torch.zeros_like(x) for x in (p, q, beta)]
        grad_E = Qt @ G
        grad_B = R * grad_E
        step_grads = (E @ G.transpose(-1, -2), grad_B, grad_B @ P.transpose(-1, -2))
        K = grad_E @ E.transpose(-1, -2)
        stage = ([*p], [*q], [*beta])
        fast_solver._step_factors_backward(
            step_grads, K, *stage, dt, ctx.tableau, ctx.saved, [[*g] for g in grads]
        )
        return *grads, None, None, None


@pytest.mark.parametrize("method", FAST_METHODS)
def test_step_factors_backward_gradcheck(method):
    # the hand-written vector-Jacobian product of the step factors against finite
    # differences, each stage's inputs independent (the solver shares stage times)
    gen = torch.Generator().manual_seed(1)
    tableau = fast_solver.TABLEAUS[method]
    stages, n, m, d = len(tableau[2]), 3, 2, 3
    p = torch.randn(stages, n, m, d, dtype=DTYPE, generator=gen).requires_grad_()
    q = torch.randn(stages, n, m, d, dtype=DTYPE, generator=gen).requires_grad_()
    beta = torch.rand(stages, n, m, dtype=DTYPE, generator=gen).requires_grad_()
    P = torch.randn(n, m, d, d, dtype=DTYPE, generator=gen)
    dt = torch.rand(n, dtype=DTYPE, generator=gen) + 0.5

    def step(p, q, beta):
        return _OneStep.apply(p, q, beta, P, dt, tableau)

    assert torch.autograd.gradcheck(step, (p, q, beta))


@pytest.mark.parametrize("rule", AFFINE_RULES)
def test_rank_one_form_is_the_learning_rule(rule):
    W = torch.randn(5, 2, 4, 4, dtype=DTYPE)
    k = torch.randn(5, 2, 4, dtype=DTYPE).softmax(-1)
    v = torch.randn(5, 2, 4, dtype=DTYPE).tanh()
    beta = torch.rand(5, 2, dtype=DTYPE)
    p, q, decay, transposed = rank_one_form(rule, k, v)
    S = W.transpose(-1, -2) if transposed else W
    error = p - (S @ q.unsqueeze(-1)).squeeze(-1) if decay else p
    dS = beta[..., None, None] * error.unsqueeze(-1) * q.unsqueeze(-2)
    dW = dS.transpose(-1, -2) if transposed else dS
    torch.testing.assert_close(dW, learning_rule_update(rule, W, k, v, beta))


# -- model level: fast and generic paths of ContinuousFWP ----------------------------


def _panel(seed=0):
    """Unequal lengths (one case a single observation), NaN gaps, two channels."""
    rng = np.random.default_rng(seed)
    cases = [rng.normal(size=(2, n)) for n in (9, 5, 12, 1, 7)]
    for case in cases[:3]:
        case[rng.random(case.shape) < 0.2] = np.nan
    return cases


@pytest.fixture(scope="module")
def path():
    X, lengths = check_X(_panel())
    data = InputPath(observation_intensity=True).fit(X, lengths).transform(X, lengths, DTYPE)
    return data.batch(np.arange(len(lengths)))


def _logits_and_grads(module, path, **options):
    module.zero_grad()
    logits = module(path, **options)
    (logits * torch.arange(1.0, 4.0, dtype=DTYPE)).sum().backward()
    return logits.detach(), {name: p.grad.clone() for name, p in module.named_parameters()}


def _small_fwp(path, rule, variant, post_tanh=False):
    return ContinuousFWP(
        path.n_channels,
        3,
        hidden_size=8,
        n_heads=2,
        learning_rule=rule,
        variant=variant,
        post_tanh=post_tanh,
    ).double()


def _assert_fast_matches_generic(path, rule, variant, post_tanh=False, **options):
    module = _small_fwp(path, rule, variant, post_tanh)
    logits, grads = _logits_and_grads(module, path, solver_backend="generic", **options)
    fast_logits, fast_grads = _logits_and_grads(module, path, solver_backend="fast", **options)
    assert _relative_error(fast_logits, logits) < RTOL
    assert grads.keys() == fast_grads.keys()
    for name, grad in grads.items():
        assert grad.abs().max() > 0, name
        assert _relative_error(fast_grads[name], grad) < RTOL, name


@pytest.mark.parametrize("rule", AFFINE_RULES)
@pytest.mark.parametrize("variant", ["cde", "ode"])
@pytest.mark.parametrize("method", FAST_METHODS)
def test_fast_matches_generic(path, rule, variant, method):
    _assert_fast_matches_generic(path, rule, variant, method=method)


@pytest.mark.parametrize("rule", AFFINE_RULES)
@pytest.mark.parametrize("step_size", [0.5, 0.7])
def test_fast_matches_generic_other_step_sizes(path, rule, step_size):
    # 0.7 does not divide the final knots: cases are read out between grid points
    _assert_fast_matches_generic(path, rule, "cde", method="rk4", step_size=step_size)


# the fixed-grid fast path: every setting whose field is not affine in W
NON_AFFINE = [
    *[(rule, "cde", False) for rule in LEARNING_RULES if rule not in AFFINE_RULES],
    ("delta", "cde", True),  # post_tanh
    *[(rule, "recurrent", False) for rule in LEARNING_RULES],
]


@pytest.mark.parametrize(("rule", "variant", "post_tanh"), NON_AFFINE)
@pytest.mark.parametrize("method", FAST_METHODS)
def test_fixed_grid_fast_path_matches_generic(path, rule, variant, post_tanh, method):
    assert not _small_fwp(path, rule, variant, post_tanh).affine
    _assert_fast_matches_generic(path, rule, variant, post_tanh, method=method)


def test_fixed_grid_fast_path_other_step_size_and_chunks(path, monkeypatch):
    # 0.7 does not divide the final knots; a tiny memory budget forces checkpointed
    # chunks of steps, whose backward recomputes each chunk
    monkeypatch.setattr(fast_solver, "FIXED_GRID_MEMORY", 1)
    _assert_fast_matches_generic(path, "oja_released", "recurrent", method="rk4", step_size=0.7)


@pytest.mark.parametrize(
    ("options", "reason"),
    [({"method": "dopri5"}, "method='dopri5'"), ({"adjoint": True}, "adjoint=True")],
)
def test_fast_backend_says_why_it_cannot_run(path, options, reason):
    module = ContinuousFWP(path.n_channels, 3, hidden_size=8, n_heads=2).double()
    with pytest.raises(ValueError, match=reason):
        module(path, solver_backend="fast", **options)
    # "auto" falls back to the generic path
    with torch.no_grad():
        auto = module(path, solver_backend="auto", **options)
        generic = module(path, solver_backend="generic", **options)
    torch.testing.assert_close(auto, generic)


def test_unknown_backend(path):
    module = ContinuousFWP(path.n_channels, 3, hidden_size=8, n_heads=2).double()
    with pytest.raises(ValueError, match="solver_backend='turbo' is not one of"):
        module(path, solver_backend="turbo")


# -- estimator ------------------------------------------------------------------------


def test_classifier_rejects_fast_backend_it_cannot_run():
    X = _panel()
    clf = ContinuousDeltaClassifier(solver_backend="fast", method="dopri5", max_iter=1)
    with pytest.raises(ValueError, match="method='dopri5'"):
        clf.fit(X, [0, 1, 0, 1, 0])


def test_classifier_auto_backend_trains_as_generic():
    X, y = _panel(1), ["a", "b", "a", "b", "b"]
    params = dict(hidden_size=8, n_heads=2, max_iter=3, batch_size=3, random_state=0)
    auto = ContinuousDeltaClassifier(**params).fit(X, y)
    generic = ContinuousDeltaClassifier(solver_backend="generic", **params).fit(X, y)
    assert auto.get_params()["solver_backend"] == "auto"
    np.testing.assert_allclose(auto.loss_curve_, generic.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(auto.predict_proba(X), generic.predict_proba(X), atol=1e-4)


# -- CUDA -----------------------------------------------------------------------------

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA is not available")


@pytest.mark.gpu
@requires_cuda
@pytest.mark.parametrize("rule", AFFINE_RULES)
def test_fast_matches_generic_on_cuda(path, rule):
    cuda_path = type(path)(path.coeffs.cuda(), path.ends.cuda(), path.interpolation)
    _assert_fast_matches_generic(cuda_path, rule, "cde", method="rk4")


@pytest.mark.gpu
@requires_cuda
def test_rank_one_solver_on_cuda_matches_cpu():
    ends = torch.tensor([4, 7, 0, 5])
    plan_cpu = StagePlan(ends, "rk4", 1.0, DTYPE)
    plan_cuda = StagePlan(ends.cuda(), "rk4", 1.0, DTYPE)
    n_times = len(plan_cpu.times)
    inputs = [
        torch.randn(4, 2, 3, 3, dtype=DTYPE),
        torch.randn(n_times, 4, 2, 3, dtype=DTYPE),
        torch.randn(n_times, 4, 2, 3, dtype=DTYPE).softmax(-1),
        torch.rand(n_times, 4, 2, dtype=DTYPE),
    ]
    cpu = integrate_rank_one(*inputs, plan_cpu, chunk_size=3)
    cuda = integrate_rank_one(*[x.cuda() for x in inputs], plan_cuda, chunk_size=3)
    torch.testing.assert_close(cuda.cpu(), cpu)
