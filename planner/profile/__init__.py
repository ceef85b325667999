"""Know the machine: detect it, or load a named target profile."""

from planner.profile.detect import detect_hardware
from planner.profile.hardware import CPU, GPU, RAM, HardwareProfile
from planner.profile.targets import list_targets, load_target, resolve_target

__all__ = [
    "CPU", "GPU", "RAM", "HardwareProfile",
    "detect_hardware", "list_targets", "load_target", "resolve_target",
]
