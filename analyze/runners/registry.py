"""The runner registry: every way of turning a subset spec into a result record, by name.

A runner (linear probe, full finetune, domain-mix multi-label probe) registers one
instance under its name with :func:`register_runner`, as backbones register under
``arch.tag`` (:mod:`extract.backbones`, timm's ``register_model``). Code that needs what a
runner does looks it up (``RUNNERS[name]``, :func:`get_runner`) and asks the runner; it
never compares a runner's name with a string. An unknown name is a
:class:`~extract.errors.UserError` naming the registered ones.

The built-in runners live in :mod:`analyze.runners.probe`, :mod:`analyze.runners.finetune`
and :mod:`analyze.runners.domain_mix`; they are imported on the first lookup, so importing
the registry stays cheap (a loky worker imports it at start-up).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping

from extract.errors import UserError

BUILT_IN = ("analyze.runners.probe", "analyze.runners.finetune", "analyze.runners.domain_mix")


class RunnerRegistry(Mapping):
    """Name -> runner instance, in registration order; the built-in runners load on first use."""

    def __init__(self) -> None:
        self._entries: dict[str, object] = {}
        self._loaded = False

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True
            for module in BUILT_IN:
                importlib.import_module(module)

    def add(self, runner) -> None:
        """Register ``runner`` under ``runner.name`` (a second runner of one name is an error)."""
        name = getattr(runner, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"a runner needs a non-empty string `name`, got {name!r}")
        if name in self._entries and type(self._entries[name]) is not type(runner):
            raise ValueError(f"a runner named {name!r} is already registered ({type(self._entries[name]).__name__})")
        self._entries[name] = runner

    def __getitem__(self, name):
        self._load()
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise UserError(f"runner {name!r} is unknown; choose one of {list(self._entries)}.") from None

    def get(self, name, default=None):
        """The runner registered as ``name``, or ``default`` (no error) when there is none."""
        self._load()
        return self._entries.get(name, default) if isinstance(name, str) else default

    def __contains__(self, name) -> bool:
        self._load()
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def rows(self, table, name: str):
        """Boolean mask of ``table``'s rows made by runner ``name`` (a name checked against the registry)."""
        runner = self[name]
        return table["runner"] == runner.name


RUNNERS = RunnerRegistry()


def register_runner(cls):
    """Class decorator: register one instance of ``cls`` under ``cls.name``; return ``cls``."""
    RUNNERS.add(cls())
    return cls


def get_runner(name: str):
    """The runner registered as ``name`` (a :class:`~extract.errors.UserError` naming the choices if none)."""
    return RUNNERS[name]


def runner_names() -> list[str]:
    """The registered runners' names, in registration order."""
    return list(RUNNERS)


__all__ = ["RUNNERS", "RunnerRegistry", "get_runner", "register_runner", "runner_names"]
