"""Pure torch models: torch in, torch out; nothing here knows scikit-learn."""

from .fwp import LEARNING_RULES, VARIANTS, ContinuousFWP
from .ncde import CDEVectorField, NeuralCDE

__all__ = ["LEARNING_RULES", "VARIANTS", "CDEVectorField", "ContinuousFWP", "NeuralCDE"]
