"""Pure torch models: torch in, torch out; nothing here knows scikit-learn."""

from .fwp import LEARNING_RULES, VARIANTS, ContinuousFWP
from .gated import GatedNODE, find_fixed_points

__all__ = ["LEARNING_RULES", "VARIANTS", "ContinuousFWP", "GatedNODE", "find_fixed_points"]
