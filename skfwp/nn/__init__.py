"""Pure torch models: torch in, torch out; nothing here knows scikit-learn."""

from .delta import LEARNING_RULES, SOLVER_BACKENDS, VARIANTS, ContinuousFWP
from .gated import GatedNODE, find_fixed_points
from .ncde import CDEVectorField, NeuralCDE
from .ncode import CONTROLS, NCODE

__all__ = [
    "CONTROLS",
    "LEARNING_RULES",
    "NCODE",
    "SOLVER_BACKENDS",
    "VARIANTS",
    "CDEVectorField",
    "ContinuousFWP",
    "GatedNODE",
    "NeuralCDE",
    "find_fixed_points",
]
