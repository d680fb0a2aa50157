"""Rule specifications of the harness: which aggregation a run uses, with its parameters.

A specification is a string (the config field ``rule``)::

    SPEC  := [PRE "+"]* RULE          pre-aggregations first, applied in order
    STEP  := NAME [":" KEY=VALUE ("," KEY=VALUE)*]

e.g. ``median``, ``krum:m=3``, ``centered_clipping:tau=10,iters=3``, ``nnm+krum``,
``bucketing:s=2+trimmed_mean``. Names:

- every rule of ``byzagg.RULES``; ``nnm`` and ``bucketing`` are *pre-aggregations*: they
  turn G (n, d) into another matrix (nnm: n mixed rows; bucketing: ceil(n / s) bucket
  means) which the next step aggregates. Alone (``--rule nnm``) they are followed by
  ``average``. The rule after them gets the run's f, unchanged (at most f buckets hold a
  Byzantine row; nnm's analysis keeps f too) and checks its own requirement on the rows
  it receives (e.g. ``bucketing:s=2+krum`` needs ceil(n / 2) > 2f + 2).
- the variants of the original code of the paper: ``paper_krum`` (Multi-Krum on Euclidean
  distances), ``paper_median`` (lower median), ``paper_bulyan`` (static-ranking Bulyan),
  see paper_rules.py. Under ``--preset paper``, ``average``, ``krum``, ``median`` and
  ``bulyan`` *are* these variants (the grids' meaning); every other name is the library's.
- the rules as the paper's *text* states them: ``text_krum`` (Multi-Krum, squared
  distances, n - f - 2 neighbours, m = n - f - 2 rows), ``text_median``, ``text_bulyan``
  (theta = n - 2f - 2 rescored Krum rounds, beta = n - 4f - 2), see paper_rules.py; under
  ``--preset paper-text`` the four grid names are these.

``krum_1p`` (spelled ``krum-1p`` too; parameters ``power``, default 0.5, and ``m``, default
1) is the Krum paper's "1-p Krum" (Blanchard et al. 2017, supplementary material, Section
4): at round t = 1, 2, ... the server takes the plain average of the n rows with probability
p_t = t^(-power) (1 / sqrt(t) by default) and ``byzagg.krum(G, f, m)`` otherwise (the
library's Krum under either preset), the draws coming from a generator seeded by the run's
seed (a run is reproducible). Krum's requirement n >= 2f + 3 is checked at every round,
also those that average.

``centered_clipping:center=previous`` starts each step's clipping from the previous step's
output (Karimireddy et al. center it on the previous aggregate; the first step starts from
zero); ``center=zero`` (default) starts from the zero vector, the library's default.

Values are integers or reals (``inf`` allowed where the rule allows it); the specification
is stored canonically (parameters sorted, values normalised: ``tau=10.0`` -> ``tau=10``,
a pre-aggregation alone gets its ``+average``) so that one aggregation has one name, one
run id and one config hash. Every rule gets f through ``byzagg.aggregate(name, G, f=f,
**params)`` (rules without f ignore it). Bucketing draws its permutations from a generator
seeded by the run's seed.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import paper_rules

import byzagg

LIBRARY_RULES = tuple(byzagg.RULES)
PRE_AGGREGATIONS = ("nnm", "bucketing")
PAPER_VARIANTS = ("paper_krum", "paper_median", "paper_bulyan")
# the rules as the paper's text states them (preset paper-text; paper_rules.py)
TEXT_VARIANTS = ("text_krum", "text_median", "text_bulyan")
HARNESS_RULES = ("krum_1p",)  # rules built here from library rules
ALIASES = {"krum-1p": "krum_1p"}
NAMES = LIBRARY_RULES + PAPER_VARIANTS + TEXT_VARIANTS + HARNESS_RULES

# The parameters a specification may set, with their types, per name; REQUIRED must be set.
# Parameters of the library functions that are not here are not command-line values
# (G, f, weights, center, generator, out: see NOT_FROM_SPEC; tests check this table against the
# functions' signatures).
PARAMS: dict[str, dict[str, type | tuple[str, ...]]] = {
    "average": {},
    "median": {},
    "trimmed_mean": {},
    "meamed": {},
    "phocas": {},
    "krum": {"m": int},
    "multi_krum": {"m": int},
    "bulyan": {},
    "medoid": {},
    "geometric_median": {"eps": float, "max_iter": int, "tol": float},
    "mda": {},
    "centered_clipping": {"tau": float, "iters": int, "center": ("zero", "previous")},
    "nnm": {},
    "bucketing": {"s": int},
    "brsgd": {"beta": float, "threshold": float},
    "paper_krum": {"m": int},
    "paper_median": {},
    "paper_bulyan": {"m": int},
    "text_krum": {"m": int},
    "text_median": {},
    "text_bulyan": {"m": int},
    "krum_1p": {"m": int, "power": float},
}
REQUIRED = {"centered_clipping": ("tau",), "bucketing": ("s",)}
# defaults of specification values that are not the function's own (center: a word here)
SPEC_DEFAULTS = {("centered_clipping", "center"): "zero"}
NOT_FROM_SPEC = ("G", "f", "weights", "generator", "out")

PAPER_PRESET_NAMES = {"average": "average", "krum": "paper_krum", "median": "paper_median", "bulyan": "paper_bulyan"}
PAPER_TEXT_PRESET_NAMES = {"average": "average", "krum": "text_krum", "median": "text_median", "bulyan": "text_bulyan"}


@dataclass(frozen=True)
class Step:
    name: str
    params: tuple[tuple[str, int | float | str], ...] = ()

    def text(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_format(v)}" for k, v in self.params)


def _help() -> str:
    lines = ["\nRules (--rule NAME[:KEY=VALUE,...]; pre-aggregations first, joined by '+', e.g. nnm+krum):"]
    for name in NAMES:
        kind = " (pre-aggregation)" if name in PRE_AGGREGATIONS else ""
        params = ", ".join(
            f"{k}={_kind(t)}{' (required)' if k in REQUIRED.get(name, ()) else ''}" for k, t in PARAMS[name].items()
        )
        lines.append(f"  {name}{kind}" + (f": {params}" if params else ""))
    lines.append("  under --preset paper, average/krum/median/bulyan are the paper variants")
    lines.append("  under --preset paper-text, krum/median/bulyan are the text_ variants")
    return "\n".join(lines) + "\n"


def _kind(kind) -> str:
    return "|".join(kind) if isinstance(kind, tuple) else kind.__name__


def _format(value: int | float | str) -> str:
    if isinstance(value, (int, str)):
        return str(value)
    if math.isfinite(value) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


HELP = ""  # set below, once PARAMS is complete


def _names_help() -> str:
    return (
        f"library rules: {', '.join(LIBRARY_RULES)}; paper variants: {', '.join(PAPER_VARIANTS)}; "
        f"harness rules: {', '.join(HARNESS_RULES)} "
        f"(pre-aggregations {' and '.join(PRE_AGGREGATIONS)} go before another rule: e.g. nnm+krum)"
    )


def _params_help(name: str) -> str:
    params = PARAMS[name]
    if not params:
        return f"{name} takes no parameters"
    parts = [f"{k} ({_kind(t)}{', required' if k in REQUIRED.get(name, ()) else ''})" for k, t in params.items()]
    return f"{name} takes: {', '.join(parts)}"


def _value(name: str, key: str, text: str, kind) -> int | float | str:
    text = text.strip()
    if isinstance(kind, tuple):
        if text not in kind:
            raise ValueError(f"rule {name}: parameter {key} must be one of {', '.join(kind)}, got {text!r}")
        return text
    if kind is int:
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"rule {name}: parameter {key} must be an integer, got {text!r}")
        return int(text)
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"rule {name}: parameter {key} must be a number, got {text!r}") from None
    if math.isnan(value):
        raise ValueError(f"rule {name}: parameter {key} must be a number, got {text!r}")
    return value


def _parse_step(text: str) -> Step:
    name, colon, rest = text.partition(":")
    name = name.strip()
    name = ALIASES.get(name, name)
    if name not in PARAMS:
        raise ValueError(f"unknown rule {name!r}; {_names_help()}")
    allowed = PARAMS[name]
    params: dict[str, int | float] = {}
    if rest.strip():
        for item in rest.split(","):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ValueError(f"rule {name}: expected KEY=VALUE, got {item!r} ({_params_help(name)})")
            if key not in allowed:
                raise ValueError(f"rule {name}: unknown parameter {key!r}; {_params_help(name)}")
            if key in params:
                raise ValueError(f"rule {name}: parameter {key} given twice")
            params[key] = _value(name, key, value, allowed[key])
    elif colon:
        raise ValueError(f"rule {name}: nothing after ':'; {_params_help(name)}")
    missing = [k for k in REQUIRED.get(name, ()) if k not in params]
    if missing:
        raise ValueError(f"rule {name}: missing parameter {', '.join(missing)}; {_params_help(name)}")
    return Step(name, tuple(sorted(params.items())))


def parse(spec: str) -> tuple[Step, ...]:
    """The steps of a specification, validated: pre-aggregations then one rule.
    Raises ValueError naming the valid names or parameters."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty rule specification; {_names_help()}")
    # "+" separates steps; not inside a number ("1e+3") nor a signed value ("=+inf")
    parts = re.split(r"(?<!=)\+(?=\s*[A-Za-z_])", spec.strip())
    steps = [_parse_step(p) for p in parts]
    for step in steps[:-1]:
        if step.name not in PRE_AGGREGATIONS:
            raise ValueError(
                f"rule specification {spec!r}: {step.name} is not a pre-aggregation; only "
                f"{' and '.join(PRE_AGGREGATIONS)} may come before '+'"
            )
    if steps[-1].name in PRE_AGGREGATIONS:
        steps.append(Step("average"))
    return tuple(steps)


def canonical(spec: str) -> str:
    """The one spelling of a specification (raises ValueError if it is invalid)."""
    return "+".join(step.text() for step in parse(spec))


def describe(spec: str, preset: str | None = None) -> dict:
    """The specification as data, for run files: {"pre": [...], "rule": ..., "params": {...}}
    (the parameters as written). With `preset`, also "effective": for every step the function
    that runs under that preset and every parameter it takes from a specification, the
    defaults filled in (e.g. brsgd's beta and threshold when the spec sets neither), so a run
    file states the values it ran with; a non-finite value is written as a string ("inf")."""
    steps = parse(spec)
    described = {
        "pre": [{"name": s.name, "params": dict(s.params)} for s in steps[:-1]],
        "rule": steps[-1].name,
        "params": dict(steps[-1].params),
    }
    if preset is not None:
        final = steps[-1]
        described["effective"] = [effective_params(s.name, dict(s.params)) for s in steps[:-1]] + [
            effective_params(final.name, dict(final.params), _resolved_name(final.name, preset))
        ]
    return described


def _resolved_name(name: str, preset: str) -> str:
    """The name of what runs for the grid name `name` under `preset` (see the docstring)."""
    if preset == "paper":
        return PAPER_PRESET_NAMES.get(name, name)
    if preset == "paper-text":
        return PAPER_TEXT_PRESET_NAMES.get(name, name)
    return name


def _function(name: str) -> Callable:
    if name == "krum_1p":
        return OneMinusPKrum.__init__
    if name in PAPER_VARIANTS or name in TEXT_VARIANTS:
        return getattr(paper_rules, name)
    return getattr(byzagg, name)


def effective_params(name: str, params: dict, runs: str | None = None) -> dict:
    """{"name": name, "runs": the function's name, "params": every parameter of PARAMS[name]
    with the value the call gets: the given one, else the function's default (None where the
    function computes it, e.g. multi_krum's m = n - f)}."""
    runs = runs or name
    signature = inspect.signature(_function(runs))
    values = {}
    for key in PARAMS[name]:
        if key in params:
            value = params[key]
        elif (name, key) in SPEC_DEFAULTS:
            value = SPEC_DEFAULTS[name, key]
        elif key in signature.parameters and signature.parameters[key].default is not inspect.Parameter.empty:
            value = signature.parameters[key].default
        else:
            continue
        if isinstance(value, float) and not math.isfinite(value):
            value = repr(value)
        values[key] = value
    return {"name": name, "runs": runs, "params": dict(sorted(values.items()))}


def one_minus_p_probability(t: int, power: float = 0.5) -> float:
    """p_t = t^(-power) for round t >= 1: the probability that 1-p Krum averages."""
    if t < 1:
        raise ValueError(f"rounds count from 1, got {t}")
    return float(t) ** (-power)


class OneMinusPKrum:
    """1-p Krum (Blanchard et al. 2017, supplementary Section 4): at its t-th call (t = 1,
    2, ...) the mean of G's rows with probability p_t = t^(-power), else byzagg.krum(G, f, m).
    One uniform draw per call from `generator`; `choices` records the branch of every call
    ("average" or "krum")."""

    def __init__(self, generator: torch.Generator, power: float = 0.5, m: int = 1):
        if power < 0:
            raise ValueError(f"rule krum_1p: power must be >= 0, got {power}")
        self.generator, self.power, self.m = generator, power, m
        self.t = 0
        self.choices: list[str] = []

    def __call__(self, G: torch.Tensor, f: int) -> torch.Tensor:
        n = G.shape[0]
        if n < 2 * f + 3 or not 1 <= self.m <= n - f:
            raise ValueError(f"krum_1p: Krum requires n >= 2f + 3 and 1 <= m <= n - f; got n={n}, f={f}, m={self.m}")
        self.t += 1
        draw = float(torch.rand((), generator=self.generator))
        if draw < one_minus_p_probability(self.t, self.power):
            self.choices.append("average")
            return G.mean(dim=0)
        self.choices.append("krum")
        return byzagg.krum(G, f, m=self.m)


def _final(step: Step, preset: str, seed: int = 0) -> Callable[[torch.Tensor, int], torch.Tensor]:
    name = _resolved_name(step.name, preset)
    params = dict(step.params)
    if name == "krum_1p":
        return OneMinusPKrum(torch.Generator().manual_seed(40_000 + seed), **params)
    if name == "paper_krum":
        return lambda G, f: paper_rules.paper_krum(G, f, **params)
    if name == "paper_bulyan":
        return lambda G, f: paper_rules.paper_bulyan(G, f, **params)
    if name == "paper_median":
        return lambda G, f: paper_rules.paper_median(G)
    if name == "text_krum":
        return lambda G, f: paper_rules.text_krum(G, f, **params)
    if name == "text_bulyan":
        return lambda G, f: paper_rules.text_bulyan(G, f, **params)
    if name == "text_median":
        return lambda G, f: paper_rules.text_median(G)
    if name == "centered_clipping" and params.pop("center", "zero") == "previous":
        previous = []  # the rule's last output: the center of the next call

        def clipping(G, f):
            out = byzagg.aggregate(name, G, f=f, center=previous[0] if previous else None, **params)
            previous[:] = [out]
            return out

        return clipping
    params.pop("center", None)
    return lambda G, f: byzagg.aggregate(name, G, f=f, **params)


def build(spec: str, preset: str = "canonical", seed: int = 0) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """rule(G, f) -> (d,) aggregate for this specification. `preset` gives the meaning of
    average/krum/median/bulyan (see the module docstring); `seed` seeds bucketing and krum_1p."""
    steps = parse(spec)
    final = _final(steps[-1], preset, seed)
    pre = []
    for step in steps[:-1]:
        params = dict(step.params)
        if step.name == "bucketing":
            generator = torch.Generator().manual_seed(30_000 + seed)
            pre.append(lambda G, f, p=params, g=generator: byzagg.aggregate("bucketing", G, f=f, generator=g, **p))
        else:
            pre.append(lambda G, f, name=step.name, p=params: byzagg.aggregate(name, G, f=f, **p))

    if not pre:
        return final  # itself (krum_1p: its object, whose `choices` the run file keeps)

    def rule(G: torch.Tensor, f: int) -> torch.Tensor:
        for transform in pre:
            G = transform(G, f)
        return final(G, f)

    return rule


def check(spec: str, preset: str, rows: int, f: int) -> None:
    """Raise ValueError (the rule's own message) if the rule cannot run on `rows` rows with
    this f: one call on a small random matrix, before any training."""
    rule = build(spec, preset)
    G = torch.randn(rows, 3, generator=torch.Generator().manual_seed(0))
    try:
        rule(G, f)
    except (ValueError, TypeError) as error:
        raise ValueError(f"rule {spec!r} with {rows} rows and f={f}: {error}") from None


HELP = _help()
