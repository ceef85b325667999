"""Optimizer: per-tensor bit widths, placement, context and KV type for a goal. Pure."""

from planner.optimize.allocate import allocate
from planner.optimize.plan import PlanOption, PlanRequest, PlanResult
from planner.optimize.quality import predicted_kld
from planner.optimize.search import make_plan

__all__ = ["PlanOption", "PlanRequest", "PlanResult", "allocate", "make_plan", "predicted_kld"]
