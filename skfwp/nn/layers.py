"""Small building blocks shared by the torch models."""

from __future__ import annotations

from torch import nn

__all__ = ["FeedForward", "mlp"]


class FeedForward(nn.Module):
    """Transformer feed-forward block ``FF(z) = W_2 relu(W_1 LayerNorm(z) + b_1) + b_2``.

    Input and output of shape ``(..., dim)``; the caller adds the residual.
    """

    def __init__(self, dim, hidden):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))

    def forward(self, z):
        return self.net(self.norm(z))


def mlp(in_features, widths, out_features, activation=nn.ReLU, final=None):
    """``Linear -> activation`` for each width in ``widths``, then ``Linear`` (and ``final``)."""
    layers = []
    for width in widths:
        layers += [nn.Linear(in_features, width), activation()]
        in_features = width
    layers.append(nn.Linear(in_features, out_features))
    if final is not None:
        layers.append(final())
    return nn.Sequential(*layers)
