"""The planner: can I run this model on this box, and how?"""

from planner.model import ModelSpec, load_model
from planner.profile import HardwareProfile, detect_hardware, resolve_target

__all__ = ["HardwareProfile", "ModelSpec", "detect_hardware", "load_model", "resolve_target"]
__version__ = "0.1.0"
