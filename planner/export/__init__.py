"""Launch configs and plan files from a plan."""

from planner.export.launch import (
    KINDS,
    file_name,
    llama_cpp_python,
    llama_quantize,
    llama_server,
    ollama,
    plan_dict,
    planned_file,
    render,
)

__all__ = ["KINDS", "file_name", "llama_cpp_python", "llama_quantize", "llama_server", "ollama", "plan_dict",
           "planned_file", "render"]
