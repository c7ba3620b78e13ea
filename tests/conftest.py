"""Shared fixtures: tiny standard data (as in sktime/aeon test suites) and seeds."""

import numpy as np
import pytest
import torch

from skfwp._validation import check_X
from skfwp.path import InputPath


def make_tiny_panel(n_cases=24, n_channels=2, n_timepoints=12, random_state=0):
    """A 2-class panel a small model learns in a few epochs: the sign of channel 0's drift."""
    rng = np.random.default_rng(random_state)
    y = np.arange(n_cases) % 2
    drift = np.where(y == 1, 1.0, -1.0)[:, None] * np.linspace(0, 2, n_timepoints)
    X = 0.3 * rng.normal(size=(n_cases, n_channels, n_timepoints))
    X[:, 0] += drift
    return X, np.where(y == 1, "up", "down")


def make_path(n_knots, ends, random_state=0, n_channels=2, interpolation="hermite"):
    """A fitted InputPath and a float64 ControlPath of random cases ending at ``ends``."""
    rng = np.random.default_rng(random_state)
    X = rng.normal(size=(len(ends), n_channels, n_knots))
    for i, e in enumerate(ends):
        X[i, :, e + 1 :] = np.nan
    arr, lengths = check_X(X)
    ip = InputPath(interpolation=interpolation).fit(arr, lengths)
    return ip, ip.transform(arr, lengths, dtype=torch.float64).batch(range(len(ends)))


@pytest.fixture
def tiny_panel():
    return make_tiny_panel()


#: The fast paths' methods and the step sizes their agreement tests use.
FAST_CASES = [(m, h) for m in ("euler", "midpoint", "rk4") for h in (1.0, 0.5)]


def fast_vs_generic(model, path, method, step_size, rtol=1e-6):
    """Logits and every parameter gradient of ``solver_backend="fast"`` and ``"generic"``.

    Both in float64, relative to the largest entry (``rtol``); the loss weights the
    logits at random so that every case's gradient counts. The generic path is
    torchdiffeq's, with its own grid, stages and per-case readout.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    out = {}
    for backend in ("fast", "generic"):
        logits = model(path, solver_backend=backend, method=method, step_size=step_size)
        weight = torch.linspace(-1.0, 2.0, logits.numel(), dtype=logits.dtype)
        weight = weight.to(logits.device).view_as(logits)
        grads = torch.autograd.grad((logits * weight).sum(), params, allow_unused=True)
        out[backend] = (logits.detach(), grads)
    (fast, g_fast), (generic, g_generic) = out["fast"], out["generic"]
    scale = float(generic.abs().max())
    assert float((fast - generic).abs().max()) <= rtol * scale
    for p, a, b in zip(params, g_fast, g_generic, strict=True):
        assert (a is None) == (b is None)
        if b is not None:
            assert float((a - b).abs().max()) <= rtol * max(float(b.abs().max()), 1e-12), p.shape
    return fast, generic


def fast_vs_generic_on_cuda(model, method):
    """:func:`fast_vs_generic` on CUDA, on the cases of the agreement tests (a skip without)."""
    if not torch.cuda.is_available():
        pytest.skip("CUDA is not available")
    _, path = make_path(9, [8, 5, 3], random_state=3)
    path = type(path)(path.coeffs.cuda(), path.ends.cuda(), path.interpolation)
    fast_vs_generic(model.cuda(), path, method, 0.5)


def fast_refused(model, path):
    """``solver_backend="fast"`` with an adaptive method or the adjoint: a ValueError naming it."""
    with pytest.raises(ValueError, match="method='dopri5'"):
        model(path, solver_backend="fast", method="dopri5")
    with pytest.raises(ValueError, match="adjoint=True"):
        model(path, solver_backend="fast", method="rk4", adjoint=True)
    with pytest.raises(ValueError, match="solver_backend='nope'"):
        model(path, solver_backend="nope", method="rk4")
