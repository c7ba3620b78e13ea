"""Remembering a number: a two-dimensional gated neural ODE as a line attractor.

The gated nODE paper (Kim, Can & Krishnamurthy, ICML 2023) claims more than bits:
gating lets a small state hold a *continuous* quantity, through a line of
(approximately) fixed points, a continuous attractor. Here one input channel is silent
except for short pulses whose values are drawn from [-1, -0.1] ∪ [0.1, 1]; the target
is the value of the last pulse (``make_flip_flop(n_bits=1, continuous=True,
target="amplitude")``), so the model must hold a real number across long silences and
overwrite it at the next pulse. We fit a ``GatedNODERegressor`` with a state of two
numbers and, beside it, the same model without the gate (the plain neural ODE, nODE),
score both by R² on fresh cases, and draw the gnODE's flow field with no input
(:func:`skfwp.plotting.plot_flow_field`): where the state rests after each pulse,
coloured by the value it should recall.

Run: ``python examples/10_gnode_continuous_memory.py`` (writes
``gnode_continuous_memory.png``).
"""

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from skfwp import GatedNODERegressor
from skfwp.datasets import make_flip_flop
from skfwp.plotting import plot_flow_field

#: Every bin read (no log-signature windows) and no augmentation: a dropped or
#: warped pulse would change the value to recall. The settings of example 06.
SETTINGS = dict(
    hidden_size=2,
    flow_layers=(32, 32),
    batch_size=64,
    learning_rate_init=3e-3,
    logsig_window=None,
    observation_dropout=0.0,
)


def main(
    n_train=600,
    n_test=1000,
    n_timepoints=100,
    max_iter=150,
    output="gnode_continuous_memory.png",
    random_state=0,
):
    """Fit gnODE and nODE regressors on the continuous 1-bit flip-flop; draw both fields.

    Returns ``{"gnODE": {...}, "nODE": {...}}`` with each model's test ``r2``,
    ``fit_seconds`` and ``fixed_points`` (a :class:`skfwp.inspection.FixedPoints`).
    """
    data = dict(n_bits=1, n_timepoints=n_timepoints, continuous=True, target="amplitude")
    X_train, y_train = make_flip_flop(n_train, random_state=0, **data)
    X_test, y_test = make_flip_flop(n_test, random_state=1, **data)

    results = {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, (name, gated) in zip(axes, [("gnODE", True), ("nODE", False)], strict=True):
        reg = GatedNODERegressor(
            **SETTINGS, gated=gated, max_iter=max_iter, random_state=random_state
        )
        start = time.perf_counter()
        reg.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        r2 = reg.score(X_test, y_test)
        # The field with no pulse (the data channel 0) late in the series (time 1):
        # what holds the value between pulses.
        _, fixed = plot_flow_field(reg, x_fixed=[1.0, 0.0], X=X_test[:80], y=y_test[:80], ax=ax)
        ax.set_title(f"{name}: test R² {r2:.3f}, {int(fixed.stable.sum())} stable fixed points")
        results[name] = {"r2": r2, "fit_seconds": seconds, "fixed_points": fixed}
        print(
            f"{name:6s} test R² {r2:.3f}   fit {seconds:6.1f} s   "
            f"fixed points {len(fixed.points)} ({int(fixed.stable.sum())} stable)"
        )
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    print(f"flow fields written to {output}")
    return results


if __name__ == "__main__":
    main()
