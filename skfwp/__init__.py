"""skfwp: scikit-learn compatible continuous-time neural sequence classifiers."""

from .delta import ContinuousDeltaClassifier
from .gated import GatedNODEClassifier
from .ncde import NeuralCDEClassifier
from .ncode import NCodeClassifier
from .persistence import load
from .preprocessing import ChannelStandardScaler

__version__ = "0.1.0"

__all__ = [
    "ChannelStandardScaler",
    "ContinuousDeltaClassifier",
    "GatedNODEClassifier",
    "NCodeClassifier",
    "NeuralCDEClassifier",
    "__version__",
    "load",
]
