"""planner — capacity planning for LLM inference serving.

The public entry points: :func:`planner.loader.load_instance` reads an instance file into a
validated :class:`planner.problem.Instance`; :func:`planner.options.build_option_table` computes
every candidate (option, query type) once; :func:`planner.solvers.solve` runs a registered method
and returns a :class:`planner.plan.Plan`; :func:`planner.checker.check_plan` verifies a plan from
the instance and the plan alone.
"""

__version__ = "0.1.0"
