"""skfwp: scikit-learn compatible continuous-time neural sequence classifiers."""

from ._version import __version__
from .delta import ContinuousDeltaClassifier
from .gated import GatedNODEClassifier
from .ncde import NeuralCDEClassifier
from .ncode import NCodeClassifier
from .persistence import load
from .preprocessing import ChannelStandardScaler

__all__ = [
    "ChannelStandardScaler",
    "ContinuousDeltaClassifier",
    "GatedNODEClassifier",
    "NCodeClassifier",
    "NeuralCDEClassifier",
    "__version__",
    "load",
]
