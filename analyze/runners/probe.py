"""The probe runner."""

from __future__ import annotations

from analyze.runners.registry import register_runner


@register_runner
class Runner:
    name = "probe"
