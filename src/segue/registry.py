"""One tiny name -> builder registry (timm's ``create_model(name)`` pattern), shared by every
pluggable part: classifiers, face extractors, face detectors, noise methods, countermeasures.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """``@registry.register(name)`` on a class or builder; ``registry.create(name, ...)`` builds one."""

    def __init__(self, kind: str):
        self.kind = kind
        self._builders: dict[str, Callable[..., T]] = {}

    def register(self, name: str) -> Callable:
        def wrap(builder: Callable[..., T]) -> Callable[..., T]:
            self._builders[name] = builder
            return builder
        return wrap

    def names(self) -> list[str]:
        return sorted(self._builders)

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def get(self, name: str) -> Callable[..., T]:
        """The builder registered as ``name``; an unknown name is a KeyError that lists the known ones."""
        if name not in self._builders:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}")
        return self._builders[name]

    def create(self, name: str, *args, **kwargs) -> T:
        """Build ``name`` (see :meth:`get`)."""
        return self.get(name)(*args, **kwargs)
