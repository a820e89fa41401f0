"""Registries: a dict of name -> object plus a decorator that fills it (as verl registers its
advantage estimators). Registering a name twice is an error, never a silent replacement."""

from __future__ import annotations

from typing import Callable, TypeVar

T = TypeVar("T")


def registrar(table: dict[str, T], kind: str) -> Callable[[str], Callable[[T], T]]:
    """``register = registrar(TABLE, "loss")``; then ``@register("name")`` adds the object."""

    def register(name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in table:
                raise ValueError(f"{kind} {name!r} is already registered")
            table[name] = obj
            return obj

        return deco

    return register
