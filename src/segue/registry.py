"""One registry convention for every pluggable part (timm's ``@register`` / ``list_*`` / ``create_*``).

Noise methods, countermeasures, victim models, attackers, face extractors, face detectors and
shipped weights each keep one :class:`Registry`. An entry is registered once, under its name,
optionally with metadata tags; ``list(pattern)`` filters names with shell globs, ``create(name,
**kw)`` builds one, ``summary(name)`` is the first line of its docstring. Every registry is also
listed in :data:`REGISTRIES` by kind, which is what ``segue list [KIND]`` prints::

    >>> from segue.registry import Registry
    >>> colours = Registry("colour", "colours")
    >>> @colours.register("red", wavelength_nm=700)
    ... def red():
    ...     '''The long end of the visible spectrum.'''
    ...     return "red"
    >>> colours.list("r*"), colours.create("red"), colours.tags("red")
    (['red'], 'red', {'wavelength_nm': 700})
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")

#: kind (plural, as ``segue list`` takes it) -> registry
REGISTRIES: dict[str, "Registry"] = {}


class Registry(Generic[T]):
    """``@registry.register(name, **tags)`` on a class or builder; ``registry.create(name, ...)`` builds one.

    Args:
        kind: the singular word used in messages ("noise method").
        plural: the name ``segue list`` knows the registry by (default ``kind + "s"``).

    Examples:
        >>> shapes = Registry("shape")
        >>> @shapes.register("square", sides=4)
        ... class Square:
        ...     '''Four equal sides.'''
        >>> shapes.list(), shapes.tags("square"), shapes.summary("square"), shapes.plural
        (['square'], {'sides': 4}, 'Four equal sides.', 'shapes')
    """

    def __init__(self, kind: str, plural: str | None = None):
        self.kind = kind
        self.plural = plural or kind.replace(" ", "-") + "s"
        self._builders: dict[str, Callable[..., T]] = {}
        self._tags: dict[str, dict[str, Any]] = {}
        REGISTRIES[self.plural] = self

    def register(self, name: str | None = None, **tags: Any) -> Callable:
        """Decorator; ``name`` defaults to the builder's ``name`` attribute (a name is written once)."""
        def wrap(builder: Callable[..., T]) -> Callable[..., T]:
            key = name or getattr(builder, "name", None)
            if not key:
                raise ValueError(f"a {self.kind} needs a name")
            self._builders[key] = builder
            self._tags[key] = dict(tags)
            return builder
        return wrap

    def list(self, pattern: str | None = None) -> list[str]:
        """Registered names (sorted), those matching the shell glob ``pattern`` if given."""
        names = sorted(self._builders)
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names

    names = list  # the older spelling

    def __contains__(self, name: str) -> bool:
        return name in self._builders

    def get(self, name: str) -> Callable[..., T]:
        """The builder registered as ``name``; an unknown name is a KeyError that lists the known ones."""
        if name not in self._builders:
            raise KeyError(f"unknown {self.kind} {name!r}; known: {', '.join(self.list())}")
        return self._builders[name]

    def create(self, name: str, *args, **kwargs) -> T:
        """Build ``name`` (see :meth:`get`)."""
        return self.get(name)(*args, **kwargs)

    def tags(self, name: str) -> dict[str, Any]:
        """The metadata registered with ``name`` (empty if none)."""
        self.get(name)
        return dict(self._tags[name])

    def summary(self, name: str) -> str:
        """First line of the entry's docstring (what ``segue list`` shows)."""
        doc = (self.get(name).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""
