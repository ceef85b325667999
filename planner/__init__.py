"""The planner: can I run this model on this box, and how?"""

from planner.api import Evaluation, evaluate
from planner.estimate import Estimate, RuntimeOptions, estimate
from planner.model import ModelSpec, load_model
from planner.profile import HardwareProfile, detect_hardware, resolve_target

__all__ = ["Estimate", "Evaluation", "HardwareProfile", "ModelSpec", "RuntimeOptions", "detect_hardware",
           "estimate", "evaluate", "load_model", "resolve_target"]
__version__ = "0.1.0"
