"""Log-signature windows of the data layer (``logsig_window``, ``logsig_depth``).

The oracle is a direct computation: a window's depth-1 log-signature is its increment
and its depth-2 terms are the Lévy areas ``A_ij = ½ Σ_k [(x_i(k) − x_i(0)) Δx_j(k) −
(x_j(k) − x_j(0)) Δx_i(k)]`` of the piecewise-linear path, written here in numpy.
"""

import itertools
import os
import subprocess
import sys
import textwrap

import numpy as np
import pysiglib
import pytest
from estimators import SMALL, ids

from skfwp._validation import check_X
from skfwp.path import InputPath, logsig_windows


def _levy_areas(piece):
    """Depth-2 Lyndon coordinates (pairs i < j) of one piecewise-linear path (n, K)."""
    rel, step = piece[:-1] - piece[0], np.diff(piece, axis=0)
    k = piece.shape[1]
    return np.array(
        [
            0.5 * np.sum(rel[:, i] * step[:, j] - rel[:, j] * step[:, i])
            for i in range(k)
            for j in range(i + 1, k)
        ]
    )


def test_depth_two_windows_equal_increments_and_levy_areas():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(2, 11, 3))  # 10 steps, windows of 4: 4 + 4 + 2 (completed)
    out = logsig_windows(values, 4, 2)
    assert out.shape == (2, 3, 6)
    for case in range(2):
        for j, (lo, hi) in enumerate([(0, 4), (4, 8), (8, 10)]):
            piece = values[case, lo : hi + 1]
            np.testing.assert_allclose(out[case, j, :3], piece[-1] - piece[0], atol=1e-12)
            np.testing.assert_allclose(out[case, j, 3:], _levy_areas(piece), atol=1e-12)


def test_depth_three_windows_are_each_windows_own_log_signature():
    rng = np.random.default_rng(1)
    values = rng.normal(size=(1, 9, 2))
    out = logsig_windows(values, 3, 3)
    pysiglib.prepare_log_sig(2, 3, method=1)
    for j in range(3):
        piece = values[0, 3 * j : 3 * j + 4].copy()
        np.testing.assert_allclose(out[0, j], pysiglib.log_sig(piece, 3, method=1), atol=1e-12)
    # a straight window has no area and no depth-3 bracket
    line = np.linspace(0, 1, 5)[None, :, None] * np.array([1.0, -2.0])
    np.testing.assert_allclose(logsig_windows(line, 4, 3)[0, 0, 2:], 0.0, atol=1e-12)


def _panel_with_gaps():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(3, 2, 14))
    X[0, 1, 3] = np.nan  # a gap
    X[1, :, 9:] = np.nan  # length 9
    X[2, 0, 5:7] = np.nan
    X[2, :, 12:] = np.nan  # length 12
    return check_X(X)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_window_path_at_knots_is_the_observed_path_and_its_summed_terms(depth):
    X, lengths = _panel_with_gaps()
    w = 4
    ip = InputPath(logsig_window=w, logsig_depth=depth).fit(X, lengths)
    plain = InputPath().fit(X, lengths).transform_values(X, lengths)  # (3, 14, K=3)
    values = ip.transform_values(X, lengths)
    k = plain.shape[2]
    assert ip.n_path_channels_ == pysiglib.log_sig_length(k, depth)
    np.testing.assert_array_equal(ip.knot_lengths(lengths), [5, 3, 4])  # ceil((n-1)/4) + 1
    boundaries = [0, 4, 8, 12, 13]
    np.testing.assert_allclose(values[:, :, :k], plain[:, boundaries], atol=1e-12)
    if depth == 2:
        for case in range(3):
            areas = np.cumsum(
                [
                    _levy_areas(plain[case, lo : hi + 1])
                    for lo, hi in itertools.pairwise(boundaries)
                ],
                axis=0,
            )
            np.testing.assert_allclose(values[case, 1:, k:] * ip.logsig_scale_, areas, atol=1e-10)
    if depth > 1:  # summed-up terms lie in [-1, 1] on the training data, one reaching it
        assert np.abs(values[..., k:]).max() == pytest.approx(1.0)


def test_unequal_lengths_each_case_as_if_alone():
    X, lengths = _panel_with_gaps()
    ip = InputPath(logsig_window=3).fit(X, lengths)
    together = ip.transform(X, lengths)
    for i in range(3):
        alone = ip.transform(X[i : i + 1, :, : lengths[i]], lengths[i : i + 1])
        n = int(alone.ends[0]) + 1
        assert int(together.ends[i]) == n - 1
        np.testing.assert_allclose(
            ip.transform_values(X, lengths)[i, :n],
            ip.transform_values(X[i : i + 1, :, : lengths[i]], lengths[i : i + 1])[0],
            atol=1e-12,
        )


def test_window_of_one_at_depth_one_is_the_plain_path():
    X, lengths = _panel_with_gaps()
    a = InputPath(logsig_window=1, logsig_depth=1).fit(X, lengths)
    b = InputPath().fit(X, lengths)
    np.testing.assert_array_equal(a.transform_values(X, lengths), b.transform_values(X, lengths))
    assert a.increment_rms_ == b.increment_rms_


@pytest.mark.parametrize(
    ("window", "depth", "match"), [(0, 2, "logsig_window"), (2, 4, "logsig_depth")]
)
def test_bad_window_settings_are_named(window, depth, match):
    X, lengths = _panel_with_gaps()
    with pytest.raises(ValueError, match=match):
        InputPath(logsig_window=window, logsig_depth=depth).fit(X, lengths)


@pytest.mark.parametrize(("cls", "small"), SMALL, ids=ids())
def test_every_classifier_reads_windows_with_gaps_and_unequal_lengths(cls, small):
    from conftest import make_tiny_panel

    X, y = make_tiny_panel(n_timepoints=24)
    cases = [X[i, :, : 24 - (i % 5)] for i in range(len(X))]  # unequal lengths
    cases[3] = cases[3].copy()
    cases[3][1, 4:9] = np.nan
    clf = cls(**small, logsig_window=4, max_iter=30, learning_rate_init=1e-2, random_state=0)
    clf.fit(cases, y)
    assert clf.input_path_.n_path_channels_ == 6  # 3 channels + 3 areas
    proba = clf.predict_proba(cases)
    assert np.isfinite(proba).all()
    assert clf.score(cases, y) >= 0.9  # the drift's sign survives the windows
    # each case predicts as it does alone: windows are per case, not per batch
    np.testing.assert_allclose(clf.predict_proba(cases[7:8]), proba[7:8], atol=1e-5)


def test_windows_persist_through_save_and_load(tmp_path):
    from conftest import make_tiny_panel

    import skfwp

    X, y = make_tiny_panel(n_timepoints=20)
    clf = skfwp.GatedNODEClassifier(
        hidden_size=4,
        flow_layers=(8,),
        logsig_window=5,
        logsig_depth=3,
        max_iter=2,
        random_state=0,
    ).fit(X, y)
    clf.save(tmp_path / "m.pt")
    clf.set_params(logsig_window=2)  # the fitted path's own settings are what load reads
    loaded = skfwp.load(tmp_path / "m.pt")
    assert loaded.input_path_.logsig_window == 5
    np.testing.assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))


_LONG = """
import resource, numpy as np, torch
from skfwp import {cls}
torch.set_num_threads(1)
rng = np.random.default_rng(0)
X = np.cumsum(rng.normal(size=(16, 2, 4000)), axis=2) / 60
y = np.arange(16) % 2
clf = {cls}(hidden_size=16, logsig_window=100, max_iter=2, random_state=0).fit(X, y)
assert np.isfinite(clf.predict_proba(X)).all()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


@pytest.mark.parametrize(("cls", "small"), SMALL, ids=ids())
def test_long_series_fit_in_bounded_memory(cls, small):
    """Length 4,000 with windows of 100: 40 solver steps; peak RSS of a fresh process."""
    code = textwrap.dedent(_LONG.format(cls=cls.__name__))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    peak_mb = float(out.stdout.strip().splitlines()[-1])
    assert peak_mb < 1500, f"peak RSS {peak_mb:.0f} MB"


def test_load_counts_log_signature_channels_as_pysiglib_does():
    from skfwp.persistence import _logsig_channels

    for k in range(1, 9):
        assert _logsig_channels(k, None, 3) == k  # no windows: the path's own channels
        for depth in (1, 2, 3):
            assert _logsig_channels(k, 4, depth) == pysiglib.log_sig_length(k, depth)
