"""Persistence, training safeguards, threads and scale-out, for every classifier."""

import json
import math
import pickle
import re
import warnings

import numpy as np
import pytest
import torch
from conftest import make_tiny_panel
from estimators import SMALL, ids
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline

import skfwp
from skfwp import ChannelStandardScaler
from skfwp._training import ImprovementMonitor, NonFiniteStep
from skfwp.persistence import FORMAT_VERSION, _digest


@pytest.fixture(scope="module", params=SMALL, ids=ids())
def fitted(request):
    cls, params = request.param
    X, y = make_tiny_panel()
    clf = cls(**params, max_iter=5, learning_rate_init=1e-2, random_state=0).fit(X, y)
    return clf, X, y


# -- persistence ---------------------------------------------------------------------


def test_save_load_identical_predictions(fitted, tmp_path):
    clf, X, _ = fitted
    clf.save(tmp_path / "model.pt")
    loaded = skfwp.load(tmp_path / "model.pt")
    assert type(loaded) is type(clf)
    assert loaded.get_params() == clf.get_params()
    np.testing.assert_array_equal(loaded.classes_, clf.classes_)
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert loaded.history_ == clf.history_


def test_model_file_is_plain_data(fitted, tmp_path):
    clf, _, _ = fitted
    clf.save(tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)  # raises on any object
    assert blob["format_version"] == FORMAT_VERSION
    assert blob["skfwp_version"] == skfwp.__version__
    assert blob["torch_version"] == str(torch.__version__)


def test_truncated_file_is_refused(fitted, tmp_path):
    clf, _, _ = fitted
    clf.save(tmp_path / "model.pt")
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated"):
        skfwp.load(tmp_path / "cut.pt")


def test_tampered_weights_are_refused(fitted, tmp_path):
    clf, _, _ = fitted
    clf.save(tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    name = next(iter(blob["state_dict"]))
    blob["state_dict"][name] = blob["state_dict"][name] + 1e-3  # digest left as it was
    torch.save(blob, tmp_path / "tampered.pt")
    with pytest.raises(ValueError, match="integrity"):
        skfwp.load(tmp_path / "tampered.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    blob["params"] = blob["params"].replace('"max_iter": 5', '"max_iter": 6')
    torch.save(blob, tmp_path / "tampered_params.pt")
    with pytest.raises(ValueError, match="integrity"):
        skfwp.load(tmp_path / "tampered_params.pt")


def test_newer_format_is_refused(fitted, tmp_path):
    clf, _, _ = fitted
    clf.save(tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    blob["format_version"] = FORMAT_VERSION + 1
    torch.save(blob, tmp_path / "newer.pt")
    with pytest.raises(ValueError, match="newer"):
        skfwp.load(tmp_path / "newer.pt")


def test_file_missing_a_fitted_scale_is_refused(fitted, tmp_path):
    """A file from a version that did not save ``increment_rms_`` (digest valid)."""
    clf, _, _ = fitted
    clf.save(tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    fitted_attrs = json.loads(blob["fitted"])
    del fitted_attrs["input_path_"]["increment_rms_"]
    blob["fitted"] = json.dumps(fitted_attrs)
    meta = {k: v for k, v in blob.items() if k not in ("state_dict", "sha256")}
    blob["sha256"] = _digest(meta, blob["state_dict"])
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(ValueError, match="increment_rms_"):
        skfwp.load(tmp_path / "old.pt")


def test_file_from_before_the_matrix_readout_loads_as_a_query_readout(tmp_path):
    """A Delta FWP file without ``readout`` (written before it existed, digest valid)
    holds a query read-out: it loads as one, whatever today's default."""
    X, y = make_tiny_panel()
    clf = skfwp.ContinuousDeltaClassifier(
        hidden_size=4, n_heads=2, max_iter=2, readout="query", random_state=0
    ).fit(X, y)
    clf.save(tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    params = json.loads(blob["params"])
    del params["readout"]
    blob["params"] = json.dumps(params)
    meta = {k: v for k, v in blob.items() if k not in ("state_dict", "sha256")}
    blob["sha256"] = _digest(meta, blob["state_dict"])
    torch.save(blob, tmp_path / "old.pt")
    loaded = skfwp.load(tmp_path / "old.pt")
    assert loaded.readout == "query" != skfwp.ContinuousDeltaClassifier().readout
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_format_1_file_with_the_old_layer_names_loads(fitted, tmp_path):
    """Format 1 named the final linear layer ``classifier`` (``readout`` in the Neural
    CDE); such a file (digest valid) loads into ``output`` and predicts the same."""
    clf, X, _ = fitted
    clf.save(tmp_path / "model.pt")
    blob = torch.load(tmp_path / "model.pt", weights_only=True)
    old = "readout" if isinstance(clf, skfwp.NeuralCDEClassifier) else "classifier"
    state = {k.replace("output.", f"{old}."): v for k, v in blob["state_dict"].items()}
    assert state.keys() != blob["state_dict"].keys()
    blob["state_dict"], blob["format_version"] = state, 1
    meta = {k: v for k, v in blob.items() if k not in ("state_dict", "sha256")}
    blob["sha256"] = _digest(meta, state)
    torch.save(blob, tmp_path / "v1.pt")
    loaded = skfwp.load(tmp_path / "v1.pt")
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


def test_cuda_pickle_predicts_on_cpu_only_machine(fitted, monkeypatch):
    """A model whose device_ is CUDA unpickles on a machine without CUDA, with a warning."""
    clf, X, _ = fitted
    state = pickle.dumps(clf)
    expected = clf.predict_proba(X)
    faked = pickle.loads(state)
    faked.device_ = torch.device("cuda")  # what a CUDA fit leaves, module already on CPU
    blob = pickle.dumps(faked)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="fitted on CUDA"):
        restored = pickle.loads(blob)
    assert restored.device_.type == "cpu"
    np.testing.assert_array_equal(restored.predict_proba(X), expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_pickles_to_cpu_module(fitted):
    clf, X, y = fitted
    gpu = clone(clf).set_params(device="cuda").fit(X, y)
    restored = pickle.loads(pickle.dumps(gpu))
    assert all(p.device.type == "cuda" for p in restored.module_.parameters())
    np.testing.assert_allclose(restored.predict_proba(X), gpu.predict_proba(X), atol=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fits_repeat_within_the_documented_tolerance(fitted):
    """docs/user_guide.md: on CUDA two fits with one random_state agree to 1e-5."""
    clf, X, y = fitted
    a, b = (clone(clf).set_params(device="cuda").fit(X, y).predict_proba(X) for _ in range(2))
    np.testing.assert_allclose(a, b, atol=1e-5)
    cpu = clone(clf).fit(X, y).predict_proba(X)
    np.testing.assert_allclose(a, cpu, atol=1e-3)  # same initial weights, other kernels


# -- training safeguards ---------------------------------------------------------------


def test_diverging_training_never_leaves_nan_weights(fitted):
    """Input at 1e30 with a learning rate of 1e3: finite weights, or a clear error."""
    clf, X, y = fitted
    model = clone(clf).set_params(learning_rate_init=1e3, max_iter=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            model.fit(X * 1e30, y)
        except FloatingPointError as exc:
            assert re.search(r"diverged at epoch \d+", str(exc))
            with pytest.raises(NotFittedError):  # a failed fit leaves no half-fitted model
                model.predict(X)
            return
    for p in model.module_.parameters():
        assert torch.isfinite(p).all()
    assert np.isfinite(model.predict_proba(X * 1e30)).all()


def test_nonfinite_step_rolls_back_and_lowers_learning_rate(fitted, monkeypatch):
    clf, X, y = fitted
    model = clone(clf).set_params(max_iter=3, n_iter_no_change=100)
    calls = {"n": 0}
    original = type(model)._run_epoch

    def flaky(self, *args):
        calls["n"] += 1
        if calls["n"] == 2:  # second epoch: poison the loss once
            for p in self.module_.parameters():
                p.data.fill_(float("nan"))
            raise NonFiniteStep("non-finite loss")
        return original(self, *args)

    monkeypatch.setattr(type(model), "_run_epoch", flaky)
    with pytest.warns(RuntimeWarning, match="rolled back"):
        model.fit(X, y)
    assert model.n_iter_ == 3
    assert model.history_[1]["learning_rate"] == pytest.approx(
        0.1 * model.history_[0]["learning_rate"]
    )
    for p in model.module_.parameters():
        assert torch.isfinite(p).all()


def test_learning_rate_schedules_follow_their_rules(fitted, monkeypatch):
    """cosine: ``lr0 (1 + cos(pi e / max_iter)) / 2`` after epoch e; plateau: halved once
    the training loss has not improved for more than ``n_iter_no_change // 2`` epochs."""
    clf, X, y = fitted
    lr0 = 0.01
    cosine = clone(clf).set_params(
        max_iter=4, n_iter_no_change=100, learning_rate_init=lr0, lr_schedule="cosine"
    )
    cosine.fit(X, y)
    expected = [lr0 * (1 + math.cos(math.pi * e / 4)) / 2 for e in range(1, 5)]
    assert [r["learning_rate"] for r in cosine.history_] == pytest.approx(expected, abs=1e-12)

    plateau = clone(clf).set_params(max_iter=10, n_iter_no_change=4, learning_rate_init=lr0)
    monkeypatch.setattr(type(plateau), "_run_epoch", lambda self, *args: 1.0)  # a flat loss
    plateau.fit(X, y)
    # epoch 1 sets the best; epochs 2-4 do not improve (3 > 4 // 2): halved after
    # epoch 4; the fourth epoch without improvement (epoch 5) ends training
    assert [r["learning_rate"] for r in plateau.history_] == [lr0] * 3 + [lr0 / 2] * 2


def _stop_epoch(losses, window, patience, tol):
    """When the patience ends on the trailing ``window``-epoch mean of ``losses`` (an
    oracle written apart from ImprovementMonitor); len(losses) when it never does."""
    best, stall = math.inf, 0
    for epoch in range(1, len(losses) + 1):
        recent = losses[max(epoch - window, 0) : epoch]
        smoothed = sum(recent) / len(recent)
        if smoothed < best - tol:
            best, stall = smoothed, 0
        else:
            stall += 1
            if stall >= patience:
                return epoch
    return len(losses)


@pytest.mark.parametrize("window", [1, 3])
def test_loss_window_averages_the_loss_the_patience_watches(fitted, monkeypatch, window):
    """A lucky epoch (0.3 at epoch 3) ends a patience of 4 at epoch 7 on the raw loss;
    the mean of the last 3 epochs dips less and recovers, so training runs on."""
    clf, X, y = fitted
    losses = [1.0, 0.9, 0.3] + [0.8 - 0.05 * k for k in range(12)]
    scripted = iter(losses)
    model = clone(clf).set_params(
        max_iter=len(losses), n_iter_no_change=4, loss_window=window, lr_schedule="cosine"
    )
    monkeypatch.setattr(type(model), "_run_epoch", lambda self, *args: next(scripted))
    model.fit(X, y)
    assert model.n_iter_ == _stop_epoch(losses, window, 4, model.tol)
    assert model.n_iter_ == (7 if window == 1 else len(losses))
    assert model.loss_curve_ == losses[: model.n_iter_]


@pytest.mark.parametrize("window", [1, 2])
def test_loss_window_is_what_the_plateau_schedule_watches(fitted, monkeypatch, window):
    """A lucky 0.3 at epoch 2, then a steady fall from 0.8. The raw loss never beats
    0.3: the rate halves at the fourth epoch without improvement (epoch 6; the
    scheduler's patience is 6 // 2 = 3) and the patience of 6 ends training at epoch
    8. The 2-epoch mean (1.0, 0.65, 0.55, 0.775, 0.725, ...) is best at epoch 3 and
    beaten at epoch 9: halved at epoch 7, and training runs to max_iter."""
    clf, X, y = fitted
    losses = [1.0, 0.3] + [0.8 - 0.05 * k for k in range(8)]
    scripted = iter(losses)
    lr0 = 0.01
    model = clone(clf).set_params(
        max_iter=len(losses), n_iter_no_change=6, loss_window=window, learning_rate_init=lr0
    )
    monkeypatch.setattr(type(model), "_run_epoch", lambda self, *args: next(scripted))
    model.fit(X, y)
    rates = [r["learning_rate"] for r in model.history_]
    if window == 1:
        assert rates == [lr0] * 5 + [lr0 / 2] * 3 and model.n_iter_ == 8
    else:
        assert rates == [lr0] * 6 + [lr0 / 2] * 4 and model.n_iter_ == 10
    assert model.n_iter_ == _stop_epoch(losses, window, 6, model.tol)


def test_loss_window_does_not_touch_a_watched_validation_score(fitted, monkeypatch):
    """With early_stopping the validation score is watched as it is: the same scripted
    validation scores stop a fit at the same epoch whatever ``loss_window`` says (their
    5-epoch mean would be beaten at epochs 6 and 8 and run the fit to the end)."""
    clf, X, y = fitted
    stops = []
    for window in (1, 5):
        scores = iter([0.5, 0.9, 0.6, 0.6, 0.7, 0.75, 0.8, 0.85])
        model = clone(clf).set_params(
            max_iter=8,
            early_stopping=True,
            validation_fraction=0.25,
            n_iter_no_change=4,
            loss_window=window,
        )
        monkeypatch.setattr(type(model), "_run_epoch", lambda self, *args: 1.0)
        monkeypatch.setattr(type(model), "_evaluate", lambda self, *a, s=scores: (1.0, next(s)))
        model.fit(X, y)
        stops.append((model.n_iter_, model.best_epoch_))
    assert stops == [(6, 2), (6, 2)]


def test_keyboard_interrupt_keeps_a_usable_model(fitted):
    clf, X, y = fitted

    def interrupt(estimator, record):
        if record["epoch"] == 3:
            raise KeyboardInterrupt

    model = clone(clf).set_params(
        max_iter=50, callbacks=[interrupt], early_stopping=True, validation_fraction=0.25
    )
    with pytest.warns(UserWarning, match="interrupted"):
        model.fit(X, y)
    assert model.n_iter_ == 3 and model.stop_reason_ == "KeyboardInterrupt"
    best = max(r["val_accuracy"] for r in model.history_)
    assert model.best_validation_score_ == best
    assert np.isfinite(model.predict_proba(X)).all()


def test_callback_and_max_time_stop_training(fitted):
    clf, X, y = fitted
    seen = []
    model = clone(clf).set_params(
        max_iter=50, callbacks=[lambda est, rec: seen.append(rec["epoch"]) or rec["epoch"] == 2]
    )
    model.fit(X, y)
    assert seen == [1, 2] and model.n_iter_ == 2 and model.stop_reason_ == "a callback"
    model = clone(clf).set_params(max_iter=50, max_time=1e-9).fit(X, y)
    assert model.n_iter_ == 1 and model.stop_reason_.startswith("max_time")


def test_n_threads_applies_during_fit_and_is_restored(fitted):
    clf, X, y = fitted
    before = torch.get_num_threads()
    during = []
    clone(clf).set_params(
        max_iter=2, n_threads=1, callbacks=[lambda e, r: during.append(torch.get_num_threads())]
    ).fit(X, y)
    assert during == [1, 1]
    assert torch.get_num_threads() == before


# -- determinism and scale-out ------------------------------------------------------


def _grid(clf):
    pipe = make_pipeline(ChannelStandardScaler(), clone(clf).set_params(max_iter=3))
    name = pipe.steps[-1][0]
    return pipe, {f"{name}__learning_rate_init": [1e-2, 3e-3], f"{name}__hidden_size": [4, 8]}


def test_grid_search_same_results_across_n_jobs(fitted):
    clf, X, y = fitted
    pipe, grid = _grid(clf)
    one = GridSearchCV(pipe, grid, cv=2, n_jobs=1).fit(X, y)
    two = GridSearchCV(pipe, grid, cv=2, n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(
        one.cv_results_["mean_test_score"], two.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(one.predict_proba(X), two.predict_proba(X))


@pytest.mark.slow
def test_grid_search_on_dask_local_cluster_matches_n_jobs_1(fitted):
    """A real 2-worker Dask LocalCluster on localhost runs the grid through joblib."""
    distributed = pytest.importorskip("distributed")
    import joblib

    clf, X, y = fitted
    pipe, grid = _grid(clf)
    local = GridSearchCV(pipe, grid, cv=2, n_jobs=1).fit(X, y)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert len(client.scheduler_info()["workers"]) == 2
        with joblib.parallel_backend("dask"):
            remote = GridSearchCV(pipe, grid, cv=2, n_jobs=-1).fit(X, y)
    np.testing.assert_array_equal(
        local.cv_results_["mean_test_score"], remote.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(local.predict_proba(X), remote.predict_proba(X))


# -- issue 14: no NaN answers, no half-states (each test failed before its fix) --------


def _quiet_fit(model, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return model.fit(X, y)


@pytest.mark.parametrize("max_iter", [1, 3])
def test_cause1_fit_never_returns_a_model_that_answers_nan(fitted, max_iter):
    """Adam at lr=1e30 leaves finite weights whose forward overflows: refused or rolled back."""
    clf, X, y = fitted
    model = clone(clf).set_params(learning_rate_init=1e30, max_iter=max_iter)
    try:
        _quiet_fit(model, X, y)
    except FloatingPointError as exc:
        assert re.search(r"diverged at epoch \d+", str(exc))
        with pytest.raises(NotFittedError):
            model.predict(X)
        return
    assert np.isfinite(model.predict_proba(X)).all()


def test_cause1_rollback_goes_back_past_the_step_that_made_the_bad_weights(fitted, monkeypatch):
    """Epoch 1 ends on finite weights whose forward overflows. The rollback must return
    to the weights before them, the start of epoch 1 (before: it restored the start of
    epoch 2, the bad weights, so every retry failed and the fit raised)."""
    clf, X, y = fitted
    model = clone(clf).set_params(max_iter=3, n_iter_no_change=100)
    calls = {"n": 0}
    original = type(model)._run_epoch

    def poisoned_last_step(self, *args):
        loss = original(self, *args)
        calls["n"] += 1
        if calls["n"] == 1:
            with torch.no_grad():
                for p in self.module_.parameters():
                    p.fill_(3e38)  # finite float32, overflows any sum of two products
        return loss

    monkeypatch.setattr(type(model), "_run_epoch", poisoned_last_step)
    with pytest.warns(RuntimeWarning, match="rolled back"):
        model.fit(X, y)
    assert model.n_iter_ == 3
    assert model.history_[1]["learning_rate"] == pytest.approx(0.1 * clf.learning_rate_init)
    assert np.isfinite(model.predict_proba(X)).all()


def test_cause2_solver_underflow_names_the_case_and_spares_the_batch(fitted, monkeypatch):
    """torchdiffeq's ``AssertionError: underflow in dt`` on one case of a batch."""
    clf, X, _ = fitted
    model = pickle.loads(pickle.dumps(clf))
    expected = model.predict_proba(X[:3])
    X_bad = X[:3].copy()
    X_bad[1] *= 1e20
    forward = type(model.module_).forward

    def underflow(module, path, **options):
        forward_path = path[0] if isinstance(path, tuple) else path  # a bidirectional pair
        if forward_path.coeffs.abs().max() > 1e10:
            raise AssertionError("underflow in dt 0.0")
        return forward(module, path, **options)

    monkeypatch.setattr(type(model.module_), "forward", underflow)
    with pytest.raises(ValueError, match=r"not finite for case\(s\) \[1\]"):
        model.predict_proba(X_bad)
    np.testing.assert_array_equal(model.predict_proba(X[:3]), expected)


def test_cause2_nonfinite_logits_raise_instead_of_answering_classes_0(fitted, monkeypatch):
    clf, X, _ = fitted
    model = pickle.loads(pickle.dumps(clf))
    forward = type(model.module_).forward

    def nan_for_case_2(module, path, **options):
        logits = forward(module, path, **options)
        if len(logits) == len(X):
            logits[2] = float("nan")
        return logits

    monkeypatch.setattr(type(model.module_), "forward", nan_for_case_2)
    for method in (model.predict, model.predict_proba, model.decision_function):
        with pytest.raises(ValueError, match=r"not finite for case\(s\) \[2\]"):
            method(X)


def test_cause5_load_predicts_bit_identically_after_set_params_and_warm_refit(fitted, tmp_path):
    clf, X, y = fitted
    model = pickle.loads(pickle.dumps(clf))
    model.set_params(interpolation="linear")  # the fitted path stays hermite
    model.save(tmp_path / "a.pt")
    np.testing.assert_array_equal(
        skfwp.load(tmp_path / "a.pt").predict_proba(X), model.predict_proba(X)
    )
    warm = clone(clf).set_params(max_iter=1, warm_start=True).fit(X, y)
    warm.set_params(interpolation="rectilinear", observation_intensity=True).fit(X, y)
    warm.save(tmp_path / "b.pt")
    np.testing.assert_array_equal(
        skfwp.load(tmp_path / "b.pt").predict_proba(X), warm.predict_proba(X)
    )


def test_cause8_save_to_a_missing_folder_or_onto_a_folder_raises_oserror(fitted, tmp_path):
    clf, _, _ = fitted
    with pytest.raises(FileNotFoundError, match="no folder"):
        clf.save(tmp_path / "missing" / "model.pt")
    with pytest.raises(IsADirectoryError, match="onto a folder"):
        clf.save(tmp_path)


def test_cause9_object_string_labels_from_pandas_save_and_load(fitted, tmp_path):
    pd = pytest.importorskip("pandas")
    clf, X, y = fitted
    model = clone(clf).set_params(max_iter=1).fit(X, pd.Series(list(y), dtype=object))
    assert model.classes_.dtype == object
    model.save(tmp_path / "model.pt")
    loaded = skfwp.load(tmp_path / "model.pt")
    assert loaded.classes_.dtype == object and list(loaded.classes_) == ["down", "up"]
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))


def test_cause10_interrupt_in_the_first_epoch_with_early_stopping(fitted, monkeypatch):
    """Before: TypeError ('NoneType' object is not subscriptable), every attribute gone."""
    clf, X, y = fitted
    model = clone(clf).set_params(early_stopping=True, validation_fraction=0.25, max_iter=5)

    def interrupted(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "_run_epoch", interrupted)
    with pytest.warns(UserWarning, match="interrupted during epoch 1"):
        model.fit(X, y)
    assert model.n_iter_ == 0 and model.stop_reason_ == "KeyboardInterrupt"
    assert np.isnan(model.best_validation_score_)
    proba = model.predict_proba(X)
    assert np.isfinite(proba).all() and proba.shape == (len(X), 2)


def test_cause10_interrupt_before_training_leaves_the_previous_model(fitted, monkeypatch):
    clf, X, y = fitted
    model = pickle.loads(pickle.dumps(clf))
    expected = model.predict_proba(X)
    model.set_params(interpolation="linear")

    def interrupted(self, *args):
        raise KeyboardInterrupt

    monkeypatch.setattr(type(model), "_new_module", interrupted)
    with pytest.warns(UserWarning, match="left as it was"), pytest.raises(KeyboardInterrupt):
        model.fit(X, y)
    assert model.input_path_.interpolation == clf.input_path_.interpolation
    np.testing.assert_array_equal(model.predict_proba(X), expected)


@pytest.mark.parametrize("warm", [False, True], ids=["refit", "warm"])
def test_cause11_a_failed_refit_leaves_the_estimator_as_it_was(fitted, monkeypatch, warm):
    clf, X, y = fitted
    model = pickle.loads(pickle.dumps(clf)).set_params(warm_start=warm, max_iter=3)
    expected, history = model.predict_proba(X), list(model.history_)
    names = set(vars(model))
    if not warm:  # the new input path has more channels than the old module reads
        model.set_params(observation_intensity=True)

        def fails(self, *args):
            raise RuntimeError("out of memory")

        monkeypatch.setattr(type(model), "_build_module", fails)
    else:  # one epoch trains the module in place, then training fails
        original, calls = type(model)._run_epoch, []

        def fails(self, *args):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("out of memory")
            return original(self, *args)

        monkeypatch.setattr(type(model), "_run_epoch", fails)
    with pytest.raises(RuntimeError, match="out of memory"):
        model.fit(X, y)
    monkeypatch.undo()
    assert set(vars(model)) == names
    assert model.history_ == history
    np.testing.assert_array_equal(model.predict_proba(X), expected)


def test_cause16_random_state_none_leaves_numpy_global_rng_untouched(fitted):
    clf, X, y = fitted
    before = np.random.get_state()
    clone(clf).set_params(random_state=None, max_iter=1).fit(X, y)
    after = np.random.get_state()
    assert after[1].tolist() == before[1].tolist() and after[2:] == before[2:]


def test_improvement_monitor_breaks_validation_ties_by_loss():
    """Under validation the score decides; an equal score improves only through a
    validation loss lower by more than tol, and the best weights are copied then."""
    module = torch.nn.Linear(1, 1)
    monitor = ImprovementMonitor(tol=0.01, patience=2, validation=True, score_key="val_accuracy")
    records = [(0.5, 1.0), (0.5, 0.995), (0.5, 0.8), (0.6, 2.0), (0.605, 2.5), (0.59, 0.1)]
    stops = []
    for epoch, (score, val_loss) in enumerate(records, start=1):
        with torch.no_grad():
            module.weight.fill_(epoch)
        record = {"epoch": epoch, "val_accuracy": score, "val_loss": val_loss, "loss": 9.0}
        stops.append(monitor.update(record, module))
    assert stops == [False, False, False, False, False, True]
    assert monitor.best_epoch == 4 and monitor.best_score == 0.6
    assert float(monitor.best_state["weight"]) == 4.0  # a copy, not the live weights
    assert monitor.plateau_value == 0.1  # the last validation loss, not the training loss
