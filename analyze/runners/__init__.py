"""Runners: the registry of ways to turn subset specs into result records (probe, finetune, domain mix).

The sweep looks a runner up by name (:data:`RUNNERS`) and asks it to plan its cells, run a
unit of them and say which part of a unit is still to do; no other module branches on a
runner's name (:mod:`analyze.runners.registry`).
"""

from analyze.runners.registry import RUNNERS, RunnerRegistry, get_runner, register_runner, runner_names

__all__ = ["RUNNERS", "RunnerRegistry", "get_runner", "register_runner", "runner_names"]
