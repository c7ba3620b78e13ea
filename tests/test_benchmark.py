"""The benchmark command and the sktime benchmarking example, on tiny settings."""

import importlib.util
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from skfwp.benchmark import (
    RESULT_COLUMNS,
    SUMMARY_COLUMNS,
    contenders,
    drop_values,
    main,
    result_columns,
    run_benchmark,
    summary_columns,
)
from skfwp.benchmark.run import _prepare
from skfwp.datasets import load_sktime_dataset
from skfwp.path import fill_gaps
from skfwp.registry import all_classifiers, all_regressors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """MiniRocket's numba OpenMP layer changes the thread count torch shares with it;
    put it back so that later tests do not run oversubscribed."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``main`` as the console script runs it: --quick, one skfwp + one sktime classifier."""
    out = tmp_path_factory.mktemp("benchmark")
    argv = ["--quick", "--max-iter", "2", "--missing", "0.2", "--out", str(out)]
    argv += ["--classifiers", "NeuralCDEClassifier", "1NN-DTW"]
    assert main(argv) == 0
    return out


def test_quick_run_writes_csv_table_and_chart(quick_run):
    assert sorted(os.listdir(quick_run)) == [
        "accuracy.png",
        "results.csv",
        "results.md",
        "summary.csv",
    ]
    results = pd.read_csv(quick_run / "results.csv")
    summary = pd.read_csv(quick_run / "summary.csv")
    assert list(results.columns) == RESULT_COLUMNS
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert list(results["classifier"]) == ["NeuralCDEClassifier", "1NN-DTW"]
    assert set(results["dataset"]) == {"ItalyPowerDemand"}  # --quick's dataset
    assert results["accuracy"].between(0, 1).all()
    assert (results[["n_train", "n_test"]].to_numpy() == [67, 1029]).all()
    assert (results["missing_fraction"] == 0.2).all()
    # NaN reach the skfwp classifier as they are; DTW gets the gaps interpolated
    assert list(results["input"]) == ["as is", "gaps interpolated"]
    np.testing.assert_allclose(summary["accuracy_mean"], results["accuracy"])
    assert (quick_run / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_run_markdown_table(quick_run):
    text = (quick_run / "results.md").read_text()
    header = (
        "| dataset | classifier | accuracy (mean ± std) | fit s | predict ms/case | runs | input |"
    )
    assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| ItalyPowerDemand")]
    assert [row.split("|")[2].strip() for row in rows] == ["NeuralCDEClassifier", "1NN-DTW"]
    assert "missing: each value" in text and "gaps filled by linear interpolation" in text


def test_every_skfwp_classifier_is_a_contender():
    found, unavailable = contenders(max_iter=1)
    assert unavailable is None  # sktime and numba are test dependencies
    assert list(found)[: len(all_classifiers())] == list(all_classifiers())
    assert {"MiniRocket", "1NN-DTW"} <= set(found)
    pipe = found["NeuralCDEClassifier"].build(3)
    assert pipe[-1].get_params()["random_state"] == 3 and pipe[-1].max_iter == 1


@pytest.fixture(scope="module")
def regression_run(tmp_path_factory):
    """``--task regression`` on Covid3Month: one skfwp regressor and the ridge baseline."""
    out = tmp_path_factory.mktemp("regression")
    argv = ["--task", "regression", "--datasets", "Covid3Month", "--seeds", "1"]
    argv += ["--max-iter", "2", "--classifiers", "NeuralCDERegressor", "Ridge", "--out", str(out)]
    assert main(argv) == 0
    return out


def test_regression_run_scores_rmse_and_r2(regression_run):
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    assert sorted(os.listdir(regression_run)) == [
        "results.csv",
        "results.md",
        "rmse.png",
        "summary.csv",
    ]
    results = pd.read_csv(regression_run / "results.csv")
    assert list(results.columns) == result_columns("regression")
    summary = pd.read_csv(regression_run / "summary.csv")
    assert list(summary.columns) == summary_columns("regression")
    assert list(results["classifier"]) == ["NeuralCDERegressor", "Ridge"]
    # the ridge row, recomputed independently of the benchmark's code
    X, y = load_sktime_dataset("Covid3Month", "train")
    X_test, y_test = load_sktime_dataset("Covid3Month", "test")
    y, y_test = y.astype(float), y_test.astype(float)
    scaler = StandardScaler().fit(X[:, 0])
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(scaler.transform(X[:, 0]), y)
    pred = ridge.predict(scaler.transform(X_test[:, 0]))
    row = results.set_index("classifier").loc["Ridge"]
    np.testing.assert_allclose(row["rmse"], np.sqrt(np.mean((pred - y_test) ** 2)), rtol=1e-9)
    np.testing.assert_allclose(row["r2"], r2_score(y_test, pred), rtol=1e-9)
    text = (regression_run / "results.md").read_text()
    assert "| dataset | estimator | RMSE (mean ± std) | R² | fit s |" in text


def test_every_skfwp_regressor_is_a_regression_contender():
    found, _ = contenders(max_iter=1, task="regression")
    assert list(found)[: len(all_regressors())] == list(all_regressors())
    assert {"Ridge", "MiniRocket"} <= set(found)
    with pytest.raises(ValueError, match="task must be one of"):
        contenders(task="clustering")


def test_drop_values_is_seeded_and_drops_the_fraction():
    cases = [np.ones((3, 400)), np.ones((3, 250))]
    a = drop_values(cases, 0.3, np.random.default_rng(0))
    b = drop_values(cases, 0.3, np.random.default_rng(0))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
    assert abs(np.mean(np.isnan(np.concatenate(a, axis=1))) - 0.3) < 0.03
    assert not np.isnan(cases[0]).any()  # the input is left alone
    single = drop_values([np.ones((1, 1))], 0.999, np.random.default_rng(0))
    assert not np.isnan(single[0]).all()  # every case keeps a value


def test_prepare_imputes_and_pads_only_for_classifiers_that_need_it():
    found, _ = contenders()
    rng = np.random.default_rng(0)
    cases = [rng.normal(size=(2, n)) for n in (5, 8, 6)]
    cases[1][0, 3] = np.nan
    X, how = _prepare(cases, found["NeuralCDEClassifier"], pad_to=8)
    assert isinstance(X, list) and np.isnan(X[1][0, 3]) and how == "as is"
    X, how = _prepare(cases, found["MiniRocket"], pad_to=8)
    assert X.shape == (3, 2, 8) and not np.isnan(X).any()
    assert how == "gaps interpolated, edge-padded to 8"
    np.testing.assert_allclose(X[1], fill_gaps(cases[1]))
    np.testing.assert_allclose(X[1][0, 3], (cases[1][0, 2] + cases[1][0, 4]) / 2)
    np.testing.assert_array_equal(X[0][:, 5:], np.repeat(cases[0][:, -1:], 3, axis=1))


def test_bad_names_list_the_choices():
    with pytest.raises(ValueError, match=r"Unknown classification estimator.*NeuralCDEClassifier"):
        run_benchmark(["GunPoint"], ["NoSuchClassifier"], seeds=1)
    with pytest.raises(ValueError, match=r"'NoSuchData' was found in none of.*archive-dir"):
        run_benchmark(["NoSuchData"], ["1NN-DTW"], seeds=1)
    with pytest.raises(ValueError, match="missing"):
        run_benchmark(["GunPoint"], ["1NN-DTW"], seeds=1, missing=1.0)


def _write_archive(folder):
    """A UCR-layout TSV set (trailing NaN: a shorter case; inner NaN: a gap) and a UEA
    ``.ts`` set in its own folder, as the archives' downloads lay them out."""
    (folder / "Toy_TRAIN.tsv").write_text("1\t0.0\t1.0\t2.0\t3.0\n2\t5.0\tNaN\t4.0\tNaN\n")
    (folder / "Toy_TEST.tsv").write_text("2\t1.0\t1.0\t1.0\t1.0\n")
    (folder / "Duo").mkdir()
    header = "@problemName Duo\n@timeStamps false\n@univariate false\n@dimensions 2\n"
    header += "@equalLength true\n@seriesLength 3\n@classLabel true a b\n@data\n"
    for split in ("TRAIN", "TEST"):
        (folder / "Duo" / f"Duo_{split}.ts").write_text(header + "1,2,3:4,5,6:a\n3,2,1:6,5,4:b\n")


def test_archive_dir_tsv_and_ts_layouts(tmp_path):
    from skfwp.datasets import load_archive_dataset, load_dataset

    _write_archive(tmp_path)
    X, y = load_archive_dataset("Toy", "train", tmp_path)
    assert isinstance(X, list) and y.tolist() == ["1", "2"]
    np.testing.assert_array_equal(X[0], [[0.0, 1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(X[1], [[5.0, np.nan, 4.0]])  # gap kept, padding cut
    X, y = load_archive_dataset("Duo", "test", tmp_path)
    assert X.shape == (2, 2, 3) and y.tolist() == ["a", "b"]
    np.testing.assert_array_equal(X[1], [[3, 2, 1], [6, 5, 4]])
    # a local archive comes first; a name it lacks falls back to sktime's shipped data
    (tmp_path / "GunPoint_TRAIN.tsv").write_text("7\t1.0\t2.0\n")
    assert load_dataset("GunPoint", "train", tmp_path)[1].tolist() == ["7"]
    assert load_dataset("GunPoint", "test", tmp_path)[0].shape == (150, 1, 150)
    with pytest.raises(ValueError, match=r"No Nope_TRAIN\.tsv or Nope_TRAIN\.ts"):
        load_archive_dataset("Nope", "train", tmp_path)


def test_benchmark_reads_an_archive_dir(tmp_path):
    _write_archive(tmp_path)
    out = tmp_path / "out"
    argv = ["--archive-dir", str(tmp_path), "--datasets", "Toy", "Duo", "--seeds", "1"]
    assert main([*argv, "--classifiers", "1NN-DTW", "--out", str(out)]) == 0
    results = pd.read_csv(out / "results.csv")
    assert results["dataset"].tolist() == ["Toy", "Duo"]
    assert results["n_train"].tolist() == [2, 2]
    # Duo's test cases are its training cases: 1-NN is exact there
    assert results["accuracy"].tolist()[1] == 1.0


def test_python_dash_m_entry_point():
    env = {**os.environ, "PYTHONPATH": ROOT}
    done = subprocess.run(
        [sys.executable, "-m", "skfwp.benchmark", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        check=True,
    )
    assert "--missing FRAC" in done.stdout and "--quick" in done.stdout


@pytest.mark.slow  # ~40 s, and ~2 min on a fresh machine where numba compiles MiniRocket
def test_sktime_benchmark_example_runs_on_a_tiny_budget():
    spec = importlib.util.spec_from_file_location(
        "example_07", os.path.join(ROOT, "examples", "07_sktime_benchmark.py")
    )
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(dataset="BasicMotions", max_iter=1)
    assert set(all_classifiers()) | {"MiniRocket", "1NN-DTW"} == set(results["model_id"])
    assert results["accuracy_score_mean"].between(0, 1).all()
    # the shipped split: MiniRocket and 1-NN DTW do far better than chance on it
    scores = results.set_index("model_id")["accuracy_score_mean"]
    assert scores["1NN-DTW"] > 0.9 and scores["MiniRocket"] > 0.9
