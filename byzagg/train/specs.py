"""The syntax that attack and optimiser specifications share: ``NAME[:KEY=VALUE,...]``
(e.g. ``gaussian:variance=100``, ``dra:eps=1e-8``), checked against a table of names and
their parameters with defaults. One spelling per specification: parameters sorted, values
normalised, defaults left out (`SpecTable.canonical`). Rule specifications (rules.py) have
their own grammar (pre-aggregations joined by ``+``)."""

from __future__ import annotations

import math
from collections.abc import Callable


def format_value(value) -> str:
    """A parameter value as a specification writes it: 10.0 -> "10", 1e-08 -> "1e-08"."""
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if math.isfinite(value) and value.is_integer() else repr(value)


class SpecTable:
    """Specifications of one kind (`what`: "attack", "optimizer"): `params` maps every name
    to its parameters and their defaults; `convert(name, key, text)` turns a value's text
    into the parameter's value or raises ValueError naming `what`, the name and the key."""

    def __init__(self, what: str, params: dict[str, dict], convert: Callable[[str, str, str], object]):
        self.what, self.table, self.convert = what, params, convert

    def parse(self, spec: str) -> tuple[str, dict]:
        """("gaussian:variance=100") -> ("gaussian", {"variance": 100.0}); the parameters a
        specification leaves out are not filled in (see `params`). Raises ValueError naming
        the valid names or parameters."""
        known = ", ".join(self.table)
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"empty {self.what}; known: {known}")
        name, colon, rest = spec.strip().partition(":")
        name = name.strip()
        if name not in self.table:
            raise ValueError(f"unknown {self.what} {name!r}; known: {known}")
        allowed = self.table[name]
        if colon and not rest.strip():
            raise ValueError(f"{self.what} {name}: nothing after ':'")
        values: dict = {}
        for item in rest.split(",") if rest.strip() else []:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or key not in allowed:
                keys = ", ".join(allowed) or "none"
                raise ValueError(f"{self.what} {name}: unknown parameter {item.strip()!r} (parameters: {keys})")
            if key in values:
                raise ValueError(f"{self.what} {name}: parameter {key} given twice")
            values[key] = self.convert(name, key, text.strip())
        return name, values

    def canonical(self, spec: str) -> str:
        """One spelling per specification: parameters sorted, values normalised, defaults kept out."""
        name, values = self.parse(spec)
        values = {k: v for k, v in values.items() if v != self.table[name][k]}
        return name + (":" + ",".join(f"{k}={format_value(v)}" for k, v in sorted(values.items())) if values else "")

    def name_of(self, spec: str) -> str:
        return self.parse(spec)[0]

    def params(self, spec: str) -> dict:
        """The parameters with the defaults filled in."""
        name, values = self.parse(spec)
        return {**self.table[name], **values}
