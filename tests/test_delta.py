"""ContinuousDeltaClassifier's model: learning rules against closed forms and an oracle."""

import numpy as np
import pytest
import torch
from conftest import make_path, make_tiny_panel
from sklearn.pipeline import make_pipeline

from skfwp import ChannelStandardScaler, ContinuousDeltaClassifier
from skfwp.datasets import load_sktime_dataset
from skfwp.nn.delta import ContinuousFWP, learning_rule_update
from skfwp.nn.solver import ModelField, integrate

B, H, D, T = 2, 2, 3, 4.0


class ConstantRule(torch.nn.Module):
    """dW/ds for fixed k, v, beta: the setting of MODELS.md's closed forms."""

    def __init__(self, rule, k, v, beta):
        super().__init__()
        self.rule, self.k, self.v, self.beta = rule, k, v, beta

    def forward(self, s, W, path):
        return learning_rule_update(self.rule, W, self.k, self.v, self.beta)


def _closed_form(rule, W0, k, v, beta, t):
    b = beta[..., None, None]
    if rule == "hebb":
        return W0 + b * v[..., :, None] * k[..., None, :] * t
    if rule == "delta":
        kk = (k * k).sum(-1)[..., None, None]
        err = v - (W0 @ k[..., None])[..., 0]
        return W0 + err[..., :, None] * k[..., None, :] * (1 - torch.exp(-b * kk * t)) / kk
    vv = (v * v).sum(-1)[..., None, None]
    u = k - (W0.transpose(-1, -2) @ v[..., None])[..., 0]
    return W0 + v[..., :, None] * u[..., None, :] * (1 - torch.exp(-b * vv * t)) / vv


@pytest.mark.parametrize("rule", ["hebb", "oja", "delta"])
@pytest.mark.parametrize("method", ["rk4", "dopri5"])
def test_learning_rules_match_closed_forms(rule, method):
    g = torch.Generator().manual_seed(0)
    k = torch.softmax(torch.randn(B, H, D, generator=g, dtype=torch.float64), -1)
    v = torch.tanh(torch.randn(B, H, D, generator=g, dtype=torch.float64))
    beta = torch.sigmoid(torch.randn(B, H, generator=g, dtype=torch.float64))
    W0 = torch.randn(B, H, D, D, generator=g, dtype=torch.float64)
    _, path = make_path(int(T) + 1, [int(T), 2])
    W_end = integrate(
        ConstantRule(rule, k, v, beta),
        W0,
        path,
        method=method,
        step_size=0.1,
        rtol=1e-10,
        atol=1e-12,
    )
    for i, t in enumerate([T, 2.0]):
        expected = _closed_form(rule, W0[i], k[i], v[i], beta[i], t)
        torch.testing.assert_close(W_end[i], expected, rtol=1e-5, atol=1e-5)
    # the state actually moved: the comparison is not W0 == W0
    assert (W_end[0] - W0[0]).abs().max() > 1e-2


@pytest.mark.parametrize("rule", ["hebb", "oja", "delta"])
@pytest.mark.parametrize("variant", ["cde", "ode", "recurrent"])
def test_fixed_step_solution_matches_adaptive_oracle(rule, variant):
    """rk4 with a fine step against dopri5 at tight tolerance, on random input paths."""
    ip, path = make_path(9, [8, 5, 3], random_state=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = ContinuousFWP(
            ip.n_path_channels_, 3, hidden_size=8, n_heads=2, learning_rule=rule, variant=variant
        ).double()
    fine = model(path, method="rk4", step_size=0.05)
    oracle = model(path, method="dopri5", rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fine, oracle, rtol=1e-5, atol=1e-5)
    coarse = model(path, method="euler", step_size=1.0)
    assert (coarse - oracle).abs().max() > 1e-4  # the oracle can tell solvers apart


def test_post_tanh_delta_field():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(B, H, D, D, generator=g)
    k = torch.softmax(torch.randn(B, H, D, generator=g), -1)
    v_raw = 3 * torch.randn(B, H, D, generator=g)
    beta = torch.rand(B, H, generator=g)
    out = learning_rule_update("delta", W, k, v_raw, beta, post_tanh=True)
    expected = beta[..., None, None] * torch.einsum(
        "bhi,bhj->bhij", torch.tanh(v_raw - torch.einsum("bhij,bhj->bhi", W, k)), k
    )
    torch.testing.assert_close(out, expected)


def test_initial_state_is_one_hebbian_step():
    ip, path = make_path(6, [5, 4])
    model = ContinuousFWP(ip.n_path_channels_, 2, hidden_size=8, n_heads=2).double()
    W0 = model.initial_state(path)
    k, v, beta = model.keys_values_rates(path.derivative(0.0), path.evaluate(0.0))
    torch.testing.assert_close(W0, beta[..., None, None] * torch.einsum("bhi,bhj->bhij", v, k))


def _raw_keys_rates(model, u):
    """By hand: ``a = LayerNorm(W_in u + b_in)``, ``[k~, b~] = W_kb a`` per head; returns
    the raw keys ``k~`` (batch, h, d) and raw rates ``b~`` (batch, h)."""
    a = torch.nn.functional.layer_norm(
        u @ model.in_proj.weight.T + model.in_proj.bias,
        model.in_norm.normalized_shape,
        model.in_norm.weight,
        model.in_norm.bias,
        model.in_norm.eps,
    )
    kb = (a @ model.key_rate.weight.T).unflatten(-1, (model.n_heads, model.head_dim + 1))
    return kb[..., :-1], kb[..., -1]


def _raw_values(model, x):
    """By hand: ``v~ = W_v x + b_v`` per head, (batch, h, d)."""
    v = x @ model.value.weight.T + model.value.bias
    return v.unflatten(-1, (model.n_heads, model.head_dim))


def test_initial_map_programs_w0_from_a_linear_map_of_the_first_observation():
    """initial_map (the released EigenWorms model): ``p = L X(0) + b_L``, then by hand
    ``a = LayerNorm(W_in p + b_in)``, ``[k~, b~] = W_kb a``, ``k = softmax(k~)``,
    ``beta = sigmoid(b~)``, ``v = tanh(W_v p + b_v)`` and ``W(0) = beta v kᵀ``."""
    ip, path = make_path(6, [5, 4])
    model = ContinuousFWP(ip.n_path_channels_, 2, hidden_size=8, n_heads=2, initial_map=True)
    model = model.double()
    p = path.evaluate(0.0) @ model.initial_map.weight.T + model.initial_map.bias
    k_raw, b_raw = _raw_keys_rates(model, p)
    k, beta, v = torch.softmax(k_raw, -1), torch.sigmoid(b_raw), torch.tanh(_raw_values(model, p))
    expected = beta[..., None, None] * torch.einsum("bhi,bhj->bhij", v, k)
    torch.testing.assert_close(model.initial_state(path), expected)
    plain = ContinuousFWP(ip.n_path_channels_, 2, hidden_size=8, n_heads=2)
    assert plain.initial_map is None
    X, y = make_tiny_panel()
    small = {"hidden_size": 8, "n_heads": 2, "ff_dim": 8, "initial_map": True, "random_state": 0}
    clf = ContinuousDeltaClassifier(**small, max_iter=2).fit(X, y)
    start = ContinuousDeltaClassifier(**small, max_iter=1, learning_rate_init=1e-12).fit(X, y)
    # the estimator builds its module with the map, and training moves the map
    assert clf.module_.initial_map is not None
    assert not torch.allclose(start.module_.initial_map.weight, clf.module_.initial_map.weight)


@pytest.mark.parametrize("variant", ["cde", "ode"])
def test_values_from_the_derivative_match_a_hand_written_field(variant):
    """value_input="derivative": ``v = tanh(W_v (c ⊙ dX/ds) + b_v)`` in the Delta field
    ``beta (v − W k) kᵀ``, keys and rates as before (from ``c ⊙ dX/ds``, or ``X`` for
    the ODE variant); the fast path agrees with the generic one."""
    ip, path = make_path(7, [6, 5], random_state=3)
    model = ContinuousFWP(
        ip.n_path_channels_,
        2,
        hidden_size=6,
        n_heads=2,
        variant=variant,
        value_input="derivative",
        derivative_scale=0.5,
    ).double()
    W = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    s = 1.7
    du = 0.5 * path.derivative(s)
    u = path.evaluate(s) if variant == "ode" else du
    k_raw, b_raw = _raw_keys_rates(model, u)
    k, beta, v = torch.softmax(k_raw, -1), torch.sigmoid(b_raw), torch.tanh(_raw_values(model, du))
    error = v - torch.einsum("bhij,bhj->bhi", W, k)
    expected = beta[..., None, None] * torch.einsum("bhi,bhj->bhij", error, k)
    torch.testing.assert_close(model.forward_field(s, W, path), expected)
    fast = model(path, solver_backend="fast", method="rk4")
    torch.testing.assert_close(fast, model(path, solver_backend="generic", method="rk4"))
    with pytest.raises(ValueError, match="value_input"):
        ContinuousFWP(ip.n_path_channels_, 2, hidden_size=6, n_heads=2, value_input="x")


@pytest.mark.parametrize("rule", ["hebb_released", "oja_released"])
def test_released_rules_match_a_hand_written_slow_net(rule):
    """The released code's Hebb (v2) and Oja, computed from the weights by hand.

    ``a = LayerNorm(W_in c dX/ds + b_in)``, ``[k~, b~] = W_kb a`` per head,
    ``v~ = W_v X + b_v``; hebb_released: ``b~ v~ softmax(k~)ᵀ``; oja_released:
    ``sigmoid(b~) tanh(v~) softmax(k~ − Wᵀ tanh(v~))ᵀ``.
    """
    ip, path = make_path(7, [6, 4], random_state=8)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        model = ContinuousFWP(
            ip.n_path_channels_, 2, hidden_size=6, n_heads=2, learning_rule=rule
        ).double()
    W = torch.randn(2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    s = 2.3
    k_raw, b_raw = _raw_keys_rates(model, model.derivative_scale * path.derivative(s))
    v_raw = _raw_values(model, path.evaluate(s))
    if rule == "hebb_released":
        expected = b_raw[..., None, None] * v_raw[..., :, None] * k_raw.softmax(-1)[..., None, :]
    else:
        v = v_raw.tanh()
        key = (k_raw - torch.einsum("bhij,bhi->bhj", W, v)).softmax(-1)
        expected = torch.sigmoid(b_raw)[..., None, None] * v[..., :, None] * key[..., None, :]
    torch.testing.assert_close(model.forward_field(s, W, path), expected)
    # not MODELS.md's form: the same weights under "hebb" / "oja" give another field
    model.learning_rule = rule.removesuffix("_released")
    assert (model.forward_field(s, W, path) - expected).abs().max() > 1e-3


@pytest.mark.parametrize("rule", ["hebb_released", "oja_released"])
def test_released_rules_start_from_one_step_at_zero(rule):
    """W(0) is the rule's own field at W = 0 and s = 0 (its raw rate, its softmax)."""
    ip, path = make_path(6, [5, 4], random_state=9)
    model = ContinuousFWP(ip.n_path_channels_, 2, hidden_size=8, n_heads=2, learning_rule=rule)
    model = model.double()
    zero = torch.zeros(2, 2, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(model.initial_state(path), model.forward_field(0.0, zero, path))
    # and the oracle agrees with rk4 on the whole model (the field is smooth in W)
    fine = model(path, method="rk4", step_size=0.02)
    oracle = model(path, method="dopri5", rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fine, oracle, rtol=1e-5, atol=1e-5)


def test_readout_uses_each_case_own_end():
    """Cases of different lengths are read at their own T_i, not at the batch's end."""
    ip, path = make_path(9, [8, 4], random_state=2)
    model = ContinuousFWP(ip.n_path_channels_, 2, hidden_size=8, n_heads=2).double()
    both = model(path, method="rk4")
    short_alone = model(
        type(path)(path.coeffs[1:, :4], path.ends[1:], path.interpolation), method="rk4"
    )
    torch.testing.assert_close(both[1:], short_alone)


@pytest.mark.parametrize("variant", ["cde", "recurrent"])
def test_matrix_readout_reads_every_entry_of_the_final_fast_weights(variant):
    """``readout="matrix"``: ``z = W_o vec(W(T_i))`` with ``W(T_i)`` from the oracle
    solver, the rest of the head as in MODELS.md, and each entry of ``W`` moving the
    logits."""
    ip, path = make_path(7, [6, 3], random_state=5)
    model = ContinuousFWP(
        ip.n_path_channels_, 3, hidden_size=8, n_heads=2, variant=variant, readout="matrix"
    )
    model = model.double()
    assert model.out_proj.in_features == 2 * 4 * 4  # h d², d = 4
    W_end = integrate(ModelField(model), model.initial_state(path), path, method="rk4")
    z = W_end.reshape(2, -1) @ model.out_proj.weight.T
    expected = model.output(z + model.ff(z))
    torch.testing.assert_close(model(path, method="rk4"), expected)
    grad = torch.autograd.functional.jacobian(lambda W: model.readout(W, path).sum(), W_end)
    assert bool((grad != 0).all())


def test_query_readout_follows_the_last_stretch_of_the_path():
    """``readout="query"`` (MODELS.md) reads ``W(T_i)`` with ``q`` from the path at
    ``T_i``; ``"matrix"`` does not look at the path there, only at ``W(T_i)``."""
    ip, path = make_path(6, [5, 5], random_state=6)
    W = torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    moved = type(path)(path.coeffs * 3.0, path.ends, path.interpolation)
    for readout, changes in (("query", True), ("matrix", False)):
        model = ContinuousFWP(ip.n_path_channels_, 2, hidden_size=8, n_heads=2, readout=readout)
        model = model.double()
        differs = not torch.allclose(model.readout(W, path), model.readout(W, moved))
        assert differs == changes, readout


@pytest.mark.parametrize("variant", ["cde", "recurrent", "ode"])
def test_derivative_scale_is_a_column_scaling_of_the_input_projection(variant):
    """``u = c ⊙ dX/ds`` enters only through ``W_in u``: scaling ``W_in``'s columns by
    ``c`` gives the same logits. ``"ode"`` reads ``X``, so there ``c`` changes nothing."""
    ip, path = make_path(7, [6, 3, 4], random_state=4)
    c = torch.tensor([30.0, 0.5, 4.0], dtype=torch.float64)
    kwargs = {"hidden_size": 8, "n_heads": 2, "variant": variant}
    scaled = ContinuousFWP(ip.n_path_channels_, 2, derivative_scale=c, **kwargs).double()
    plain = ContinuousFWP(ip.n_path_channels_, 2, **kwargs).double()
    plain.load_state_dict({**scaled.state_dict(), "derivative_scale": torch.ones(3)})
    if variant == "ode":
        torch.testing.assert_close(scaled(path, method="rk4"), plain(path, method="rk4"))
        return
    assert not torch.allclose(scaled(path, method="rk4"), plain(path, method="rk4"))
    with torch.no_grad():
        plain.in_proj.weight *= c
    torch.testing.assert_close(scaled(path, method="rk4"), plain(path, method="rk4"))


def test_module_rejects_bad_settings():
    with pytest.raises(ValueError, match="divisible"):
        ContinuousFWP(3, 2, hidden_size=10, n_heads=4)
    with pytest.raises(ValueError, match="post_tanh"):
        ContinuousFWP(3, 2, hidden_size=8, n_heads=2, learning_rule="hebb", post_tanh=True)
    with pytest.raises(ValueError, match="derivative_scale"):
        ContinuousFWP(3, 2, hidden_size=8, n_heads=2, derivative_scale=[1.0, 0.0, 2.0])
    with pytest.raises(ValueError, match="derivative_scale"):
        ContinuousFWP(3, 2, hidden_size=8, n_heads=2, derivative_scale=[1.0, 2.0])
    with pytest.raises(ValueError, match="readout='last'"):
        ContinuousFWP(3, 2, hidden_size=8, n_heads=2, readout="last")


def test_classifier_names_an_unknown_readout(tiny_panel):
    X, y = tiny_panel
    with pytest.raises(ValueError, match=r"'readout' parameter .* Got 'last'"):
        ContinuousDeltaClassifier(readout="last").fit(X, y)


@pytest.mark.parametrize("standardize", [True, False])
def test_standardize_derivative_uses_the_training_increments(tiny_panel, standardize):
    X, y = tiny_panel
    clf = ContinuousDeltaClassifier(
        hidden_size=8, n_heads=2, max_iter=1, standardize_derivative=standardize, random_state=0
    ).fit(X, y)
    rms = torch.tensor(clf.input_path_.increment_rms_, dtype=torch.float32)
    expected = 1 / rms if standardize else torch.ones_like(rms)
    torch.testing.assert_close(clf.module_.derivative_scale, expected)
    assert rms[0] == pytest.approx(1 / 11)  # index time over 12 points, divided by 11


#: The setting the standardisation claim was measured in (2026-12-02): every observation
#: read, full batches, no augmentation or smoothing, the shared budget (100 epochs,
#: patience 20), one query read out of 4 heads. Measured with one torch thread, seeds
#: 0 / 1 / 2: 0.96 / 0.98 / 0.94 against 0.65 / 0.65 / 0.65 with the raw derivative.
#: At today's defaults the matrix read-out and the time-warp recipe also rescue the raw
#: derivative, unevenly (this setting with the matrix read-out of 8 heads: raw 0.87 /
#: 0.91 / 0.49; all defaults: 0.95), so the claim is about this setting.
PER_OBSERVATION = dict(
    logsig_window=None,
    batch_size=32,
    observation_dropout=0.0,
    label_smoothing=0.0,
    time_warp=0.0,
    time_crop=0.0,
    max_iter=100,
    n_iter_no_change=20,
    loss_window=1,  # each epoch's own loss, as when the claim was measured
    readout="query",
    n_heads=4,
)


@pytest.mark.slow  # ~1 min: two fits on GunPoint (50 training cases of length 150)
def test_standardized_derivative_learns_a_long_smooth_series():
    """GunPoint read at every observation (where a step's raw ``dX/ds`` is smallest),
    with the recipe of the claim (``PER_OBSERVATION``): 0.96 test accuracy measured
    (seed 0), 0.65 with the raw ``dX/ds``, whose keys barely see the data (MiniRocket:
    0.99)."""
    X_train, y_train = load_sktime_dataset("GunPoint", "train")
    X_test, y_test = load_sktime_dataset("GunPoint", "test")
    scores = {}
    for standardize in (True, False):
        clf = make_pipeline(
            ChannelStandardScaler(),
            ContinuousDeltaClassifier(
                standardize_derivative=standardize, random_state=0, **PER_OBSERVATION
            ),
        )
        scores[standardize] = clf.fit(X_train, y_train).score(X_test, y_test)
    assert scores[True] >= 0.90
    assert scores[True] - scores[False] >= 0.15


def test_classifier_trains_the_released_oja_alike_on_both_solvers(tiny_panel):
    # the rule is not affine in W: "auto" runs the fixed-grid fast path
    X, y = tiny_panel
    params = dict(
        learning_rule="oja_released", hidden_size=8, n_heads=2, max_iter=3, random_state=0
    )
    fast = ContinuousDeltaClassifier(solver_backend="fast", **params).fit(X, y)
    generic = ContinuousDeltaClassifier(solver_backend="generic", **params).fit(X, y)
    assert fast.module_.learning_rule == "oja_released"
    np.testing.assert_allclose(fast.loss_curve_, generic.loss_curve_, rtol=1e-4)
    np.testing.assert_allclose(fast.predict_proba(X), generic.predict_proba(X), atol=1e-4)
