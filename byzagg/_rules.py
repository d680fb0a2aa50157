"""The one table of byzagg's public functions: every list of rule names in the package (and
in the tests, tools and benchmarks that follow the package) is read from it.

One row per public function. `op` is the operator that runs it (multi_krum runs krum's op;
average and bucketing have no native op). `requirement` is the condition on (n, f) that the
function checks; a function with a requirement takes f, the number of Byzantine workers it
tolerates. `result` is the shape of what the op returns, for the fake kernels of
torch.compile: "vector" (d,), "rows" (n, d), "square" (n, n) or "scores" (n,) in float64.
`sample` holds keyword arguments beside G (and f) that make a typical call: the tests,
the fuzzer and the benchmarks start from them.

Adding a rule: docs/architecture.md lists the files to touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

FAMILIES = ("averaging", "coordinate", "distance", "iterative")


@dataclass(frozen=True)
class Rule:
    name: str
    family: str
    op: str
    requirement: str | None = None
    result: str = "vector"
    sample: dict = field(default_factory=dict)
    source: str = ""
    aggregation: bool = True  # False: a building block (distances, scores), not in RULES


_KRUM_PAPER = 'Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries: Byzantine Tolerant Gradient Descent", NeurIPS 2017'
_YIN = 'Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning: Towards Optimal Statistical Rates", ICML 2018'

TABLE = (
    Rule("average", "averaging", "average", source="the plain mean (not robust): the baseline"),
    Rule("median", "coordinate", "median", source=_YIN),
    Rule("trimmed_mean", "coordinate", "trimmed_mean", "n > 2f", source=_YIN),
    Rule(
        "meamed", "coordinate", "meamed", "n > 2f",
        source='Xie, Koyejo, Gupta, "Generalized Byzantine-tolerant SGD", arXiv 2018',
    ),
    Rule(
        "phocas", "coordinate", "phocas", "n > 2f",
        source='Xie, Koyejo, Gupta, "Phocas: dimensional Byzantine-resilient stochastic gradient descent", arXiv 2018',
    ),
    Rule("krum", "distance", "krum", "n >= 2f + 3", sample={"m": 1}, source=_KRUM_PAPER),
    Rule("multi_krum", "distance", "krum", "n >= 2f + 3", source=_KRUM_PAPER),
    Rule(
        "bulyan", "distance", "bulyan", "n >= 4f + 3",
        source='El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed Learning in Byzantium", ICML 2018',
    ),
    Rule("medoid", "distance", "medoid", source=_KRUM_PAPER + " (supplementary material, Section 5)"),
    Rule(
        "geometric_median", "iterative", "geometric_median", sample={"max_iter": 100},
        source='Pillutla, Kakade, Harchaoui, "Robust Aggregation for Federated Learning", IEEE TSP 2022 (smoothed Weiszfeld)',
    ),
    Rule(
        "mda", "distance", "mda", "n > 2f",
        source='El-Mhamdi, Guerraoui, Rouault, "Distributed Momentum for Byzantine-resilient Stochastic Gradient Descent", ICLR 2021',
    ),
    Rule(
        "centered_clipping", "iterative", "centered_clipping", sample={"tau": 10.0, "iters": 3},
        source='Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust Optimization", ICML 2021',
    ),
    Rule(
        "nnm", "distance", "nnm", "n > 2f", result="rows",
        source='Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan, "Fixing by Mixing: A Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS 2023',
    ),
    Rule(
        "bucketing", "averaging", "bucketing", result="rows", sample={"s": 2},
        source='Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets via Bucketing", ICLR 2022',
    ),
    Rule(
        "brsgd", "coordinate", "brsgd", sample={"beta": 0.5},
        source='Li, Chen, Dong, Zhang, Wang, Zeng, "Efficient Byzantine-Resilient Stochastic Gradient Descent"',
    ),
    Rule("pairwise_distances", "distance", "pairwise_distances", result="square", aggregation=False),
    Rule("krum_scores", "distance", "krum_scores", "n >= 2f + 3", result="scores", aggregation=False),
)

BY_NAME = {rule.name: rule for rule in TABLE}

# The aggregation rules, in the table's order (byzagg.RULES).
RULES = tuple(rule.name for rule in TABLE if rule.aggregation)

# The functions that take f (they have a requirement on n and f).
RULES_WITH_F = frozenset(rule.name for rule in TABLE if rule.requirement is not None)

# The operators, each once, with the shape of their result.
OPS = {rule.op: rule.result for rule in TABLE}

_PREDICATES = {
    "n > 2f": lambda n, f: n > 2 * f,
    "n >= 2f + 3": lambda n, f: n >= 2 * f + 3,
    "n >= 4f + 3": lambda n, f: n >= 4 * f + 3,
}

# Requirement on (n, f) per function: (text shown to the user, predicate).
REQUIREMENTS = {
    rule.name: (rule.requirement, _PREDICATES[rule.requirement]) for rule in TABLE if rule.requirement is not None
}


def least_n(name: str, f: int) -> int:
    """The least n for which the function's requirement holds with this f (1 without one)."""
    if name not in REQUIREMENTS:
        return 1
    holds = REQUIREMENTS[name][1]
    n = 1
    while not holds(n, f):
        n += 1
    return n


def family(name: str) -> tuple[str, ...]:
    """The functions of one family, in the table's order."""
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {', '.join(FAMILIES)}")
    return tuple(rule.name for rule in TABLE if rule.family == name)
