"""Persistence, training safeguards, threads and scale-out, for every classifier."""

import json
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
            from skfwp.base import _NonFiniteStep

            for p in self.module_.parameters():
                p.data.fill_(float("nan"))
            raise _NonFiniteStep("non-finite loss")
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
