"""The training recipe's levers: label smoothing, observation dropout, seed ensembles,
the automatic log-signature window. Each is checked against an independent computation."""

import copy
import hashlib
import itertools

import numpy as np
import pytest
import torch
from conftest import make_tiny_panel
from sklearn.base import clone

from skfwp import ContinuousDeltaClassifier, GatedNODEClassifier, GatedNODERegressor, base
from skfwp._validation import check_X
from skfwp.nn.ensemble import SeedEnsemble
from skfwp.path import WARP_PIECES, crop_positions, read_at, warp_positions

#: One direction, no crops: these tests read the paths and members of one model (both
#: directions: test_bidirectional.py) and switch each augmentation on by itself.
SMALL_GATED = {"hidden_size": 4, "flow_layers": (8,), "bidirectional": False, "time_crop": 0.0}


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_label_smoothing_is_the_loss_minimised(smoothing):
    """With a vanishing learning rate the first epoch's loss is the initial model's
    smoothed cross-entropy, computed here with torch's own formula."""
    X, y = make_tiny_panel()
    clf = GatedNODEClassifier(
        **SMALL_GATED,
        label_smoothing=smoothing,
        observation_dropout=0.0,  # the loss of the cases as they are
        max_iter=1,
        learning_rate_init=1e-12,
        random_state=0,
    ).fit(X, y)
    logits = torch.as_tensor(clf.decision_function(X))
    logits = torch.stack([-logits / 2, logits / 2], dim=1)  # same softmax as the 2 logits
    target = torch.as_tensor(np.searchsorted(clf.classes_, y))
    expected = torch.nn.functional.cross_entropy(logits, target, label_smoothing=smoothing)
    assert clf.loss_curve_[0] == pytest.approx(float(expected), rel=1e-4)


def test_observation_dropout_draws_keep_ends_and_time_and_leave_x_alone():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3, 40))
    X[5, :, 25:] = np.nan  # a shorter case
    clf = GatedNODEClassifier(
        **SMALL_GATED, time_channel=2, observation_dropout=0.5, max_iter=1, random_state=0
    )
    X[:, 2] = np.arange(40) * 0.5  # timestamps
    X[5, 2, 25:] = np.nan
    X_before = X.copy()
    clf.fit(X, np.arange(30) % 2)
    np.testing.assert_array_equal(X, X_before)  # the caller's array is not written
    arr, lengths = check_X(X)
    draw = clf._epoch_data(arr, lengths)
    seen = []
    for seed in range(2):
        data = draw(np.random.default_rng(seed))
        plain = clf.input_path_.transform(arr, lengths)
        assert torch.equal(data.ends, plain.ends)  # every case keeps its own end
        seen.append(data.coeffs)
    assert not torch.equal(seen[0], seen[1])  # a fresh draw each epoch
    # the draw is the path of X with those observations made NaN (time channel kept)
    generator = np.random.default_rng(7)
    data = draw(np.random.default_rng(7))
    inner = (np.arange(40) > 0) & (np.arange(40) < (lengths - 1)[:, None])
    drop = inner & (generator.random(inner.shape) < 0.5)
    assert 0.4 < drop[inner].mean() < 0.6
    masked = arr.copy()
    masked[:, :2][np.broadcast_to(drop[:, None, :], masked[:, :2].shape)] = np.nan
    expected = clf.input_path_.transform(masked, lengths)
    assert torch.equal(data.coeffs, expected.coeffs)


def test_warp_positions_are_increasing_maps_with_the_given_slopes():
    lengths = np.array([50, 20, 2])
    rng = np.random.default_rng(0)
    s = warp_positions(lengths, 0.3 * rng.standard_normal((3, WARP_PIECES)))
    assert s.shape == (3, 50)
    for i, n in enumerate(lengths):
        assert s[i, 0] == 0 and s[i, n - 1] == pytest.approx(n - 1)  # ends stay
        assert (np.diff(s[i, :n]) > 0).all()  # order stays
        assert (s[i, n:] == s[i, n - 1]).all()  # padding
    identity = warp_positions(lengths, np.zeros((3, WARP_PIECES)))
    np.testing.assert_allclose(identity[0], np.arange(50))
    wide = warp_positions(lengths, np.zeros((3, WARP_PIECES)), n_timepoints=60)  # padded panel
    assert wide.shape == (3, 60) and (wide[:, :50] == identity).all() and (wide[0, 50:] == 49).all()
    # each stretch's slope is exp(log_slope) up to a common factor: with 4 stretches
    # of 10 steps in 40, the ratio of two stretches' slopes is exp of their difference
    log_slopes = rng.normal(size=(5, WARP_PIECES))
    s = warp_positions(np.full(5, 41), log_slopes)
    slopes = np.diff(s[:, [0, 10, 20, 30, 40]], axis=1) / 10
    np.testing.assert_allclose(
        np.log(slopes[:, 1:] / slopes[:, :1]), log_slopes[:, 1:] - log_slopes[:, :1], atol=1e-12
    )


def test_read_at_interpolates_keeps_missing_and_the_time_channel():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 3, 12))
    X[1, :, 9:] = np.nan  # case 1 has 9 observations
    X[0, 1, 4] = np.nan  # a missing value
    lengths = np.array([12, 9])
    positions = warp_positions(lengths, 0.4 * rng.standard_normal((2, WARP_PIECES)))
    out = read_at(X, lengths, positions, keep=2)
    for i, n in enumerate(lengths):
        for c in (0, 1):  # np.interp over the observed values of the channel
            seen = ~np.isnan(X[i, c, :n])
            expected = np.interp(positions[i, :n], np.flatnonzero(seen), X[i, c, :n][seen])
            nearest_missing = np.isnan(X[i, c, np.rint(positions[i, :n]).astype(int)])
            expected[nearest_missing] = np.nan
            np.testing.assert_allclose(out[i, c, :n], expected, rtol=1e-12)
    np.testing.assert_array_equal(out[:, 2], X[:, 2])  # kept channel as it was
    np.testing.assert_array_equal(out[1, :, 9:], X[1, :, 9:])  # padding as it was
    assert np.isnan(out[0, 1]).sum() <= 1  # at most the one position nearest to it
    identity = read_at(X, lengths, np.tile(np.arange(12.0), (2, 1)))
    np.testing.assert_array_equal(identity, X)


def test_time_warp_is_drawn_each_epoch_and_leaves_x_alone():
    X, y = make_tiny_panel()
    X_before = X.copy()
    clf = GatedNODEClassifier(
        **SMALL_GATED, observation_dropout=0.0, time_warp=0.3, max_iter=2, random_state=0
    ).fit(X, y)
    np.testing.assert_array_equal(X, X_before)
    arr, lengths = check_X(X)
    draw = clf._epoch_data(arr, lengths)
    data = draw(np.random.default_rng(3))
    normals = np.random.default_rng(3).standard_normal((len(lengths), WARP_PIECES))
    positions = warp_positions(lengths, 0.3 * normals)
    expected = clf.input_path_.transform(read_at(arr, lengths, positions), lengths)
    assert torch.equal(data.coeffs, expected.coeffs)
    assert not torch.equal(data.coeffs, draw(np.random.default_rng(4)).coeffs)
    assert clf.set_params(time_warp=0.0)._epoch_data(arr, lengths) is None
    again = clone(clf).set_params(time_warp=0.3).fit(X, y)
    np.testing.assert_array_equal(
        again.predict_proba(X), clf.set_params(time_warp=0.3).predict_proba(X)
    )


def test_crop_positions_read_a_window_of_each_case():
    """By hand: a window of ``kept`` of the span from ``offset * (1 - kept) * (n - 1)``."""
    lengths = np.array([11, 6, 1])
    s = warp_positions(lengths, np.zeros((3, WARP_PIECES)))  # every observation, padded
    out = crop_positions(s, lengths, np.array([0.8, 0.5, 0.7]), np.array([0.25, 1.0, 0.5]))
    np.testing.assert_allclose(out[0], 0.25 * 0.2 * 10 + 0.8 * np.arange(11.0))
    np.testing.assert_allclose(out[1, :6], 2.5 + 0.5 * np.arange(6.0))  # ends at the end
    assert (out[1, 6:] == 5).all() and (out[2] == 0).all()  # padding; a one-point case
    np.testing.assert_array_equal(crop_positions(s, lengths, np.ones(3), np.full(3, 0.7)), s)
    # composed with a warp: the warped positions, squeezed into the same windows
    warped = warp_positions(lengths, 0.3 * np.random.default_rng(0).normal(size=(3, 4)))
    window = crop_positions(warped, lengths, np.full(3, 0.6), np.zeros(3))
    np.testing.assert_allclose(window[0], 0.6 * warped[0])


def test_time_crop_is_drawn_each_epoch_and_at_test_time():
    """A training epoch reads each case over the window its crop draws give, after the
    warp and before the dropout; a test-time copy over the window of its case's own
    draws; the draws of the other augmentations are those made without the crop."""
    X, y = make_tiny_panel()
    X_before = X.copy()
    params = {**SMALL_GATED, "time_warp": 0.2, "time_crop": 0.3, "max_iter": 2, "random_state": 0}
    clf = GatedNODEClassifier(**params).fit(X, y)
    np.testing.assert_array_equal(X, X_before)
    arr, lengths = check_X(X)
    data = clf._epoch_data(arr, lengths)(np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the epoch's draws, in their order
    normals = rng.standard_normal((len(lengths), WARP_PIECES))
    uniforms = rng.random(arr.shape[::2])
    crops = rng.random((len(lengths), 2))
    positions = warp_positions(lengths, 0.2 * normals)
    positions = crop_positions(positions, lengths, 1 - 0.3 * crops[:, 0], crops[:, 1])
    dropped = clf._dropped(read_at(arr, lengths, positions), lengths, uniforms)
    assert torch.equal(data.coeffs, clf.input_path_.transform(dropped, lengths).coeffs)
    no_crop = copy.deepcopy(clf).set_params(time_crop=0.0)
    uncropped = no_crop._epoch_data(arr, lengths)(np.random.default_rng(3))
    assert not torch.equal(data.coeffs, uncropped.coeffs)
    # test time: the mean probability of the full path and of the cropped copies
    u, z, c = clf._case_draws(arr, lengths, 2)
    # a case's generator (seeded by a digest of its values) draws the dropout's
    # uniforms, then the warp's normals as before the crop existed, then the crop's
    digest = hashlib.blake2b(arr[5, :, : lengths[5]].tobytes(), digest_size=8).digest()
    case_rng = np.random.default_rng(int.from_bytes(digest, "little"))
    np.testing.assert_array_equal(u[:, 5], case_rng.random((2, lengths[5])))
    np.testing.assert_array_equal(z[:, 5], case_rng.standard_normal((2, WARP_PIECES)))
    np.testing.assert_array_equal(c[:, 5], case_rng.random((2, 2)))
    plain = copy.deepcopy(clf).set_params(test_time_augmentation=0)
    copies = [arr]
    for k in range(2):
        positions = warp_positions(lengths, 0.2 * z[k])
        positions = crop_positions(positions, lengths, 1 - 0.3 * c[k, :, 0], c[k, :, 1])
        copies.append(plain._dropped(read_at(arr, lengths, positions), lengths, u[k]))
    expected = np.mean([plain.predict_proba(copy_) for copy_ in copies], axis=0)
    augmented = copy.deepcopy(clf).set_params(test_time_augmentation=2)
    np.testing.assert_allclose(augmented.predict_proba(X), expected, atol=1e-6)
    # a crop alone (no warp, no dropout) is still an augmentation
    alone = clone(clf).set_params(time_warp=0.0, observation_dropout=0.0)
    assert alone._epoch_data(arr, lengths) is not None


@pytest.mark.parametrize("smoothing,n_classes", [(0.1, 2), (0.1, 9), (0.3, 5), (0.0, 3)])
def test_loss_floor_is_the_least_smoothed_cross_entropy(smoothing, n_classes):
    """torch's smoothed cross-entropy at logits log(q) (q the smoothed target) is the
    floor; random logits are above it."""
    clf = ContinuousDeltaClassifier(label_smoothing=smoothing, floor_tol=0.01)
    clf.classes_ = np.arange(n_classes)
    floor = clf._loss_floor()
    target = torch.tensor([1])
    q = torch.full((1, n_classes), smoothing / n_classes, dtype=torch.float64)
    q[0, 1] += 1 - smoothing
    logits = torch.log(q.clamp_min(1e-300))
    ce = torch.nn.functional.cross_entropy(logits, target, label_smoothing=smoothing)
    assert floor == pytest.approx(float(ce), abs=1e-12)
    others = torch.randn(
        100, n_classes, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )
    above = torch.nn.functional.cross_entropy(
        others, target.repeat(100), label_smoothing=smoothing, reduction="none"
    )
    assert (above > floor).all()
    assert clf.set_params(floor_tol=None)._loss_floor() is None


def test_floor_tol_ends_training_at_the_first_epoch_near_the_floor():
    """The same fit without the stop, read by hand: training ends at the first epoch
    whose loss is within floor_tol of the floor, on that epoch's weights."""
    X, y = make_tiny_panel()
    params = dict(**SMALL_GATED, max_iter=12, n_iter_no_change=50, random_state=0)
    states = []

    def record(estimator, _):
        states.append(copy.deepcopy(estimator.module_.state_dict()))

    full = GatedNODEClassifier(**params, floor_tol=None, callbacks=[record]).fit(X, y)
    assert full.n_iter_ == 12 and full.stop_reason_ is None
    floor = copy.deepcopy(full).set_params(floor_tol=0.0)._loss_floor()
    gaps = np.array(full.loss_curve_) - floor
    assert (gaps > 0).all()
    tol = float(np.sort(gaps)[len(gaps) // 2]) + 1e-9  # reached somewhere mid-way
    first = int(np.argmax(gaps < tol)) + 1
    assert 1 <= first < 12
    stopped = GatedNODEClassifier(**params, floor_tol=tol).fit(X, y)
    assert stopped.n_iter_ == first and stopped.loss_curve_ == full.loss_curve_[:first]
    assert "floor" in stopped.stop_reason_
    for name, value in stopped.module_.state_dict().items():
        assert torch.equal(value, states[first - 1][name])
    assert "floor_tol" not in GatedNODERegressor().get_params()


def test_average_epochs_fits_the_mean_of_the_last_epochs_weights():
    """The fitted weights are the mean of the weights the last epochs ended on, recorded
    here by a callback (an independent copy)."""
    X, y = make_tiny_panel()
    ends = []

    def record(estimator, _):
        ends.append(copy.deepcopy(estimator.module_.state_dict()))

    clf = GatedNODEClassifier(
        **SMALL_GATED, average_epochs=3, max_iter=5, callbacks=[record], random_state=0
    ).fit(X, y)
    assert len(ends) == 5
    for key, value in clf.module_.state_dict().items():
        expected = sum(state[key] for state in ends[-3:]) / 3
        torch.testing.assert_close(value, expected)
    plain = clone(clf).set_params(average_epochs=0, callbacks=None).fit(X, y)
    for key, value in plain.module_.state_dict().items():  # same training, last weights
        torch.testing.assert_close(value, ends[-1][key])
    early = clone(clf).set_params(early_stopping=True, callbacks=None).fit(X, y)
    best = clone(early).set_params(average_epochs=0).fit(X, y)  # the best epoch's weights
    np.testing.assert_array_equal(early.predict_proba(X), best.predict_proba(X))


def test_seed_ensemble_trains_each_member_as_if_alone():
    """Mean of the members' losses under one Adam = each member under its own Adam
    (Adam is per parameter and invariant to the loss's scale, up to its epsilon)."""
    g = torch.Generator().manual_seed(0)
    members = [torch.nn.Linear(3, 2).double() for _ in range(3)]
    alone = copy.deepcopy(members)
    ensemble = SeedEnsemble(members)
    x = torch.randn(16, 3, dtype=torch.float64, generator=g)
    target = torch.randint(0, 2, (16,), generator=g)
    opt = torch.optim.Adam(ensemble.parameters(), lr=1e-2, eps=1e-16)
    opts = [torch.optim.Adam(m.parameters(), lr=1e-2, eps=1e-16) for m in alone]
    for _ in range(20):
        logits = ensemble(x)  # (3, 16, 2)
        loss = torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), target.repeat(3), reduction="none"
        )
        opt.zero_grad()
        loss.view(3, 16).mean(1).mean(0).backward()
        opt.step()
        for m, o in zip(alone, opts, strict=True):
            o.zero_grad()
            torch.nn.functional.cross_entropy(m(x), target).backward()
            o.step()
    for a, b in zip(ensemble.members, alone, strict=True):
        torch.testing.assert_close(a.weight, b.weight, rtol=1e-9, atol=1e-12)


def test_seed_ensemble_predicts_the_members_mean_probability():
    X, y = make_tiny_panel()
    clf = GatedNODEClassifier(
        **SMALL_GATED, n_estimators=3, max_iter=3, random_state=0, test_time_augmentation=0
    )
    clf.fit(X, y)
    assert isinstance(clf.module_, SeedEnsemble) and len(clf.module_.members) == 3
    data = clf.input_path_.transform(*check_X(X))
    with torch.no_grad():
        path = data.batch(np.arange(len(X)))
        members = [torch.softmax(m(path, method=clf.method), dim=1) for m in clf.module_.members]
    expected = torch.stack(members).mean(0).numpy()
    np.testing.assert_allclose(clf.predict_proba(X), expected, atol=1e-6)
    # the members start apart: different seeds, different weights
    w = [m.output.weight for m in clf.module_.members]
    assert not torch.equal(w[0], w[1])


def test_auto_window_from_the_longest_training_case():
    X, y = make_tiny_panel(n_timepoints=200)
    clf = ContinuousDeltaClassifier(
        hidden_size=8, n_heads=2, logsig_window="auto", max_iter=1, random_state=0
    ).fit(X, y)
    assert clf.input_path_.logsig_window == 7  # ceil(199 / 32)
    assert int(clf.input_path_.transform(*check_X(X)).ends.max()) == 29  # ceil(199 / 7)
    short = ContinuousDeltaClassifier(
        hidden_size=8, n_heads=2, logsig_window="auto", max_iter=1, random_state=0
    ).fit(*make_tiny_panel(n_timepoints=33))
    assert short.input_path_.logsig_window is None  # 32 steps: every observation


def test_auto_batch_size_gives_small_sets_several_steps_an_epoch(monkeypatch):
    clf = GatedNODEClassifier(**SMALL_GATED, batch_size="auto", max_iter=2, random_state=0)
    assert [clf._batch_size(n) for n in (20, 100, 1000)] == [8, 13, 32]
    steps = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(
        torch.optim.AdamW, "step", lambda self, *a, **k: steps.append(1) or step(self, *a, **k)
    )
    clf.fit(*make_tiny_panel(n_cases=20))
    assert len(steps) == 2 * 3  # ceil(20 / 8) batches in each of 2 epochs


def test_prediction_batches_cover_every_case_once_within_the_budget():
    ends = np.random.default_rng(0).integers(0, 60, size=200)
    batches = base.prediction_batches(ends, budget=150)
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(200))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * (ends[batch].max() + 1) <= 150
    for shorter, longer in itertools.pairwise(batches):  # in order of length
        assert ends[shorter].max() <= ends[longer].min()
    # a batch is as large as the budget allows: adding the next case would exceed it
    for batch, following in itertools.pairwise(batches):
        assert (len(batch) + 1) * (ends[following[0]] + 1) > 150
    assert len(base.prediction_batches(np.full(10, 3))) == 1  # the default budget


def test_predictions_do_not_depend_on_the_prediction_batches(monkeypatch):
    X, y = make_tiny_panel(n_cases=12, n_timepoints=20)
    X = [case[:, : 20 - i] for i, case in enumerate(X)]  # unequal lengths
    clf = GatedNODEClassifier(**SMALL_GATED, max_iter=2, random_state=0).fit(X, y)
    together = clf.predict_proba(X)
    monkeypatch.setattr(base, "PREDICT_KNOTS", 1)  # every case alone
    np.testing.assert_allclose(clf.predict_proba(X), together, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def augmented_fit():
    X, y = make_tiny_panel(n_cases=16, n_timepoints=14)
    clf = GatedNODEClassifier(**SMALL_GATED, max_iter=2, random_state=0, test_time_augmentation=3)
    return clf.fit(X, y), X


def test_test_time_augmentation_is_per_case_and_repeatable(augmented_fit):
    clf, X = augmented_fit
    X_before = X.copy()
    together = clf.predict_proba(X)
    assert np.array_equal(X, X_before)  # the caller's array is not modified
    np.testing.assert_array_equal(clf.predict_proba(X), together)  # every call alike
    order = np.random.default_rng(0).permutation(len(X))
    np.testing.assert_allclose(clf.predict_proba(X[order]), together[order], atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X[3:4]), together[3:4], atol=1e-6)
    plain = copy.deepcopy(clf).set_params(test_time_augmentation=0)  # fitted, no copies
    assert not np.allclose(plain.predict_proba(X), together)  # the copies count


def test_test_time_augmentation_averages_the_copies_probabilities(augmented_fit, monkeypatch):
    clf, X = augmented_fit
    plain = copy.deepcopy(clf).set_params(test_time_augmentation=0)  # fitted, no copies
    full = plain.predict_proba(X)

    # no observation dropped: every copy is the full path
    def uniforms(value):
        def draws(X, lengths, k):
            shapes = (k, len(X), X.shape[2]), (k, len(X), 4), (k, len(X), 2)
            return np.full(shapes[0], value), np.zeros(shapes[1]), np.zeros(shapes[2])

        return staticmethod(draws)

    monkeypatch.setattr(type(clf), "_case_draws", uniforms(1.0))
    np.testing.assert_allclose(clf.predict_proba(X), full, atol=1e-6)
    # every inner observation dropped: the mean of the full path and the two-point path
    monkeypatch.setattr(type(clf), "_case_draws", uniforms(0.0))
    ends_only = X.copy()
    ends_only[:, :, 1:-1] = np.nan
    expected = (full + 3 * plain.predict_proba(ends_only)) / 4
    np.testing.assert_allclose(clf.predict_proba(X), expected, atol=1e-6)


def test_test_time_augmentation_without_observation_dropout_reads_the_full_path(augmented_fit):
    clf, X = augmented_fit
    without = copy.deepcopy(clf).set_params(observation_dropout=0.0)
    plain = copy.deepcopy(clf).set_params(test_time_augmentation=0)
    np.testing.assert_array_equal(without.predict_proba(X), plain.predict_proba(X))
