"""Models combined: a seed ensemble, and a model read in both directions of time.

Small training sets make a single network's test accuracy vary by several points from
seed to seed; averaging the probabilities of a few independently initialised copies
(InceptionTime's ensemble of five, Ismail Fawaz et al. 2020) removes much of that
(:class:`SeedEnsemble`). A model that reads a series from its start remembers its
end best; a second one reading it backwards (bidirectional recurrent networks,
Schuster & Paliwal 1997) sees the start last (:class:`Bidirectional`).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["Bidirectional", "SeedEnsemble"]


class SeedEnsemble(nn.Module):
    """``M`` models with the same architecture and their own initialisations.

    ``forward(path, **solver_options)`` returns every member's logits, stacked:
    ``(M, batch, n_outputs)``. Trained on the mean of the members' losses, each member
    gets exactly the gradient it would get alone (and Adam's update is per parameter),
    so training side by side is training ``M`` models on the same batches. The
    estimator averages their probabilities at prediction.

    Parameters
    ----------
    members : list of nn.Module
        Each maps ``(path, **solver_options)`` to logits ``(batch, n_outputs)``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skfwp.nn.ensemble import SeedEnsemble
    >>> class Constant(nn.Module):
    ...     def __init__(self, value):
    ...         super().__init__()
    ...         self.value = nn.Parameter(torch.tensor(value))
    ...     def forward(self, path):
    ...         return self.value.expand(path.shape[0], 3)
    >>> SeedEnsemble([Constant(0.0), Constant(1.0)])(torch.zeros(4, 2)).shape
    torch.Size([2, 4, 3])
    """

    def __init__(self, members):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, path, **solver_options):
        return torch.stack([member(path, **solver_options) for member in self.members])


class Bidirectional(nn.Module):
    """Two models of one architecture, one reading each case forwards, one backwards.

    ``forward((path, reversed_path), **solver_options)`` returns
    ``forward_model(path) + reverse_model(reversed_path)``, shape (batch, n_outputs):
    the sum of two linear read-outs, i.e. one linear read-out of both models' final
    features side by side. A model class with a ``forward_pair(forward_model,
    reverse_model, path, reversed_path, **solver_options)`` computes that sum in one
    solve (the Neural CDE: :func:`skfwp.nn.ncde.forward_pair`). Each direction has its
    own weights (one shared model reading both directions, with a read-out per
    direction, fitted Adiac worse in the measurement of ``docs/benchmarks.md``).
    ``reversed_path`` holds the same cases read from their last observation to their
    first (:class:`skfwp.nn.path.PathPair`).

    Parameters
    ----------
    forward_model, reverse_model : nn.Module
        Each maps ``(path, **solver_options)`` to outputs ``(batch, n_outputs)``.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from skfwp.nn.ensemble import Bidirectional
    >>> class First(nn.Module):  # reads the first value of a (batch, n) "path"
    ...     def forward(self, path):
    ...         return path[:, :1]
    >>> x = torch.tensor([[1.0, 2.0, 3.0]])
    >>> Bidirectional(First(), First())((x, x.flip(-1)))  # first + last
    tensor([[4.]])
    """

    def __init__(self, forward_model, reverse_model):
        super().__init__()
        self.forward_model, self.reverse_model = forward_model, reverse_model

    def forward(self, paths, **solver_options):
        path, reversed_path = paths
        pair = getattr(type(self.forward_model), "forward_pair", None)
        if pair is not None:  # the model solves both directions at once
            return pair(
                self.forward_model, self.reverse_model, path, reversed_path, **solver_options
            )
        return self.forward_model(path, **solver_options) + self.reverse_model(
            reversed_path, **solver_options
        )
