"""skfwp: scikit-learn compatible continuous-time neural sequence classifiers."""

from .delta import ContinuousDeltaClassifier
from .gated import GatedNODEClassifier
from .preprocessing import ChannelStandardScaler

__version__ = "0.1.0"

__all__ = [
    "ChannelStandardScaler",
    "ContinuousDeltaClassifier",
    "GatedNODEClassifier",
    "__version__",
]
