"""A memory you can look at: a two-dimensional gated neural ODE on the flip-flop task.

In the flip-flop task each input channel is silent except for short pulses of +1 or
-1; the label is the sign of each channel's *last* pulse ("+-", "--", ...), so a
model must hold two bits across long silences and flip a bit when a pulse says so.
Kim, Can & Krishnamurthy (ICML 2023) show that a gated neural ODE (gnODE)

    dh/ds = G ⊙ (−h + F(h, x(s))) / τ,   G = sigmoid(W_g h + U_g x + b_g)

solves it with a state of only two numbers, which makes the learned dynamics
something to draw: with no input, its flow field has four attracting fixed points,
one per class, and each pulse pushes the state from one to another. The gate lets the
state freeze between pulses. We fit it and, beside it, the same model without the
gate (the plain neural ODE, nODE), then draw both flow fields with
:func:`skfwp.plotting.plot_flow_field`.

``task="value"`` asks for more than bits, as the paper does: one channel whose
pulses have values drawn from [-1, -0.1] ∪ [0.1, 1], and the target is the value of
the last pulse (``make_flip_flop(n_bits=1, continuous=True, target="amplitude")``).
A ``GatedNODERegressor`` must hold a real number, which a two-dimensional state can
do along a line of (nearly) fixed points: a continuous attractor. Scored by R².

Run: ``python examples/06_gnode_flip_flop.py`` (writes ``gnode_flip_flop.png``), or
``python examples/06_gnode_flip_flop.py value`` (``gnode_continuous_memory.png``).
"""

import sys
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from skfwp import GatedNODEClassifier, GatedNODERegressor
from skfwp.datasets import make_flip_flop
from skfwp.plotting import plot_flow_field

#: Settings measured to reach >= 0.95 test accuracy on the 2-bit task (see README).
# The paper's setting: every bin read (no log-signature windows), no augmentation and
# no label smoothing (a dropped pulse would change the label); the measured 0.997.
SETTINGS = dict(
    hidden_size=2,
    flow_layers=(32, 32),
    batch_size=64,
    learning_rate_init=3e-3,
    logsig_window=None,
    observation_dropout=0.0,
    time_crop=0.0,  # a crop could cut a pulse away, as dropout could
    method="rk4",  # the flow itself, as measured (the classifier defaults to Euler)
    bidirectional=False,  # the flow-field plot reads one model's state
)
#: Per task: the estimator, the data, its score's name and the picture's file.
TASKS = {
    "bits": (
        GatedNODEClassifier,
        dict(n_bits=2),
        "accuracy",
        "gnode_flip_flop.png",
    ),
    "value": (
        GatedNODERegressor,
        dict(n_bits=1, continuous=True, target="amplitude"),
        "R²",
        "gnode_continuous_memory.png",
    ),
}


def main(
    n_train=600,
    n_test=1000,
    n_timepoints=100,
    max_iter=150,
    output=None,
    random_state=0,
    task="bits",
):
    """Fit gnODE and nODE on the flip-flop task, draw both flow fields.

    ``task``: ``"bits"`` (2-bit classification) or ``"value"`` (remember the last
    pulse's value, regression). Returns ``{"gnODE": {...}, "nODE": {...}}`` with each
    model's test ``score`` (accuracy or R²), ``fit_seconds`` and ``fixed_points`` (a
    :class:`skfwp.inspection.FixedPoints`).
    """
    estimator, data, score_name, default_output = TASKS[task]
    output = default_output if output is None else output
    X_train, y_train = make_flip_flop(n_train, n_timepoints=n_timepoints, random_state=0, **data)
    X_test, y_test = make_flip_flop(n_test, n_timepoints=n_timepoints, random_state=1, **data)
    extra = {"label_smoothing": 0.0} if task == "bits" else {}

    results = {}
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    for ax, (name, gated) in zip(axes, [("gnODE", True), ("nODE", False)], strict=True):
        model = estimator(
            **SETTINGS, **extra, gated=gated, max_iter=max_iter, random_state=random_state
        )
        start = time.perf_counter()
        model.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        score = model.score(X_test, y_test)
        # The field with no pulse (data channels 0) late in the series (time channel 1):
        # what holds the memory between pulses.
        x_fixed = [1.0] + [0.0] * data["n_bits"]
        _, fixed = plot_flow_field(model, x_fixed=x_fixed, X=X_test[:60], y=y_test[:60], ax=ax)
        stable = int(fixed.stable.sum())
        ax.set_title(f"{name}: test {score_name} {score:.3f}, {stable} stable fixed points")
        results[name] = {"score": score, "fit_seconds": seconds, "fixed_points": fixed}
        print(
            f"{name:6s} test {score_name} {score:.3f}   fit {seconds:6.1f} s   "
            f"stable fixed points {stable} of {len(fixed.points)}"
        )
    fig.tight_layout()
    fig.savefig(output, dpi=120)
    plt.close(fig)
    print(f"flow fields written to {output}")
    return results


if __name__ == "__main__":
    main(task=sys.argv[1] if len(sys.argv) > 1 else "bits")
