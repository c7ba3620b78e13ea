"""A seed ensemble: copies of one model side by side, for variance reduction.

Small training sets make a single network's test accuracy vary by several points from
seed to seed; averaging the probabilities of a few independently initialised copies
(InceptionTime's ensemble of five, Ismail Fawaz et al. 2020) removes much of that.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SeedEnsemble"]


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
