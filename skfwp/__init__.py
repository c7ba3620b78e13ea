"""skfwp: scikit-learn compatible continuous-time neural sequence classifiers and regressors."""

from ._version import __version__
from .delta import ContinuousDeltaClassifier, ContinuousDeltaRegressor
from .gated import GatedNODEClassifier, GatedNODERegressor
from .ncde import NeuralCDEClassifier, NeuralCDERegressor
from .ncode import NCodeClassifier, NCodeRegressor
from .persistence import load
from .preprocessing import ChannelStandardScaler

__all__ = [
    "ChannelStandardScaler",
    "ContinuousDeltaClassifier",
    "ContinuousDeltaRegressor",
    "GatedNODEClassifier",
    "GatedNODERegressor",
    "NCodeClassifier",
    "NCodeRegressor",
    "NeuralCDEClassifier",
    "NeuralCDERegressor",
    "__version__",
    "load",
]
