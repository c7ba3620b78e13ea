"""A flow that adapts to its input: N-CODE against a plain neural ODE on concentric annuli.

Each case is a static point of the plane, from an inner disk or from a ring around it
(:func:`skfwp.datasets.make_annuli`), given to the classifiers as a constant path. A
neural ODE with a two-dimensional state moves every point along one and the same
flow; a flow of the plane cannot tear it, so the disk stays enclosed by the ring and
no line (the linear readout) separates them. Chalvidal et al. (ICLR 2021) let the
parameters of the flow be a state of their own, steered by a controller: each point
then follows a flow of its own, and a two-dimensional state suffices::

    dz/ds = tanh(θ(s) z + b) − z,    dθ/ds = A Bᵀ − λ ⊙ θ,    θ(0) = g(z(0))

We fit the closed-loop N-CODE (``control="closed"``), its open-loop variant, and the
plain neural ODE (``control="fixed"``: one learned ``θ`` for every point), all with
``hidden_size=2`` and ``input_drive=False`` (the data enter only through the start),
then draw the trajectories ``z(s)`` of test points over the readout's decision
regions with :func:`skfwp.plotting.plot_trajectories`. The N-CODE's trajectories
cross one another, which those of one flow of the plane never do.

Run: ``python examples/05_ncode_annuli.py`` (writes ``ncode_annuli.png``).
"""

import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from skfwp import NCodeClassifier
from skfwp.datasets import FLOW_TASK_PARAMS, make_annuli
from skfwp.plotting import plot_trajectories

MODELS = {"N-CODE, closed loop": "closed", "N-CODE, open loop": "open", "plain nODE": "fixed"}


def main(n_train=150, n_test=1000, max_iter=40, output="ncode_annuli.png", random_state=0):
    """Fit the three models on the annuli and draw their trajectories.

    Returns ``{name: {"accuracy": ..., "fit_seconds": ...}}`` for each of
    :data:`MODELS`, with test accuracy on ``n_test`` fresh points.
    """
    X_train, y_train = make_annuli(n_train, n_timepoints=3, random_state=0)
    X_test, y_test = make_annuli(n_test, n_timepoints=3, random_state=1)

    results = {}
    fig, axes = plt.subplots(1, len(MODELS), figsize=(5 * len(MODELS), 4.6))
    for ax, (name, control) in zip(axes, MODELS.items(), strict=True):
        clf = NCodeClassifier(
            **FLOW_TASK_PARAMS,  # the setting of tests/test_ncode.py's claim
            control=control,
            max_iter=max_iter,
            n_iter_no_change=max_iter,
            random_state=random_state,
        )
        start = time.perf_counter()
        clf.fit(X_train, y_train)
        seconds = time.perf_counter() - start
        accuracy = clf.score(X_test, y_test)
        plot_trajectories(clf, X_test[:150], y_test[:150], ax=ax)
        ax.set_title(f"{name}: test accuracy {accuracy:.3f}")
        results[name] = {"accuracy": accuracy, "fit_seconds": seconds}
        print(f"{name:20s} test accuracy {accuracy:.3f}   fit {seconds:5.1f} s")
    fig.suptitle("trajectories z(s) of test points over the readout's decision regions")
    fig.tight_layout()
    fig.savefig(output, dpi=110)
    plt.close(fig)
    print(f"trajectories written to {output}")
    return results


if __name__ == "__main__":
    main()
