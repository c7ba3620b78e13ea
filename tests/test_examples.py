"""Every example's main() runs with a tiny budget and returns what it promises."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name):
    path = next(EXAMPLES.glob(f"{name}*.py"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_01_quickstart_tiny():
    results = load_example("01").main(datasets=("BasicMotions",), max_iter=2)
    accuracy, seconds = results["BasicMotions"]
    assert 0.0 <= accuracy <= 1.0 and seconds > 0


def test_02_grid_search_tiny():
    best, cv_score, test, cv_results = load_example("02").main(
        max_iter=1, hidden_sizes=(8,), cv=2, n_jobs=1
    )
    assert len(cv_results["params"]) == 3  # the three learning rules
    assert best["continuousdeltaclassifier__learning_rule"] in {"delta", "hebb", "oja"}
    assert cv_score == max(cv_results["mean_test_score"])
    assert 0.0 <= test <= 1.0


def test_03_missing_data_tiny():
    module = load_example("03")
    X = np.ones((4, 2, 10))
    dropped = module.drop_values(X, 0.5)
    assert np.isnan(dropped).mean() == pytest.approx(0.45, abs=0.15)
    assert not np.isnan(X).any()  # the caller's array is untouched
    results = module.main(fraction=0.5, max_iter=1)
    assert len(results) == 3 and all(0.0 <= a <= 1.0 for a in results.values())


def test_04_unequal_length_tiny():
    accuracy, gap, lengths = load_example("04").main(max_iter=1, n_check=3)
    assert lengths[0] < lengths[-1]  # the data really has unequal lengths
    assert gap < 1e-5  # a case predicts the same alone and in a batch
    assert 0.0 <= accuracy <= 1.0


def test_05_ncode_annuli_tiny(tmp_path):
    output = tmp_path / "annuli.png"
    results = load_example("05").main(n_train=16, n_test=16, max_iter=1, output=str(output))
    assert set(results) == {"N-CODE, closed loop", "N-CODE, open loop", "plain nODE"}
    assert all(0.0 <= r["accuracy"] <= 1.0 and r["fit_seconds"] > 0 for r in results.values())
    from matplotlib.image import imread

    height, width = imread(output).shape[:2]
    assert width > 2 * height  # a real PNG, three panels side by side


def test_09_save_and_load(tmp_path):
    path, same, size = load_example("09").main(max_iter=1, path=str(tmp_path / "m.skfwp"))
    assert same and size > 0 and Path(path).exists()


@pytest.mark.slow
def test_08_dask_grid_search_matches_local():
    remote, local = load_example("08").main(max_iter=2)
    np.testing.assert_array_equal(remote, local)


@pytest.mark.slow
def test_01_quickstart_quality_bar():
    """Issue 3's targets with default parameters: BasicMotions >= 0.95, JapaneseVowels >= 0.90."""
    results = load_example("01").main()
    assert results["BasicMotions"][0] >= 0.95
    assert results["JapaneseVowels"][0] >= 0.90
