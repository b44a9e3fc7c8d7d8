"""GH and AGH heuristics (Cheng & Nguyen, arXiv 2604.07472), on the shared option table."""

from planner.heuristics.methods import solve_agh, solve_gh

__all__ = ["solve_agh", "solve_gh"]
