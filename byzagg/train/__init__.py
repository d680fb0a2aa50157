"""byzagg.train: the harness reproducing "Distributed Momentum for Byzantine-resilient Learning".

Modules: data (readers, embedded MNIST subset), models, workers (vmap'd gradients, clipping,
momentum), attacks, metrics (variance-norm ratio, s_t), paper_rules and presets
(`canonical`, `paper`), experiment (one run, grids with resume), grids, report, cli.
Command line: ``byzagg-repro`` / ``python -m byzagg.train`` (see cli.py).
"""

from .experiment import RunConfig, run, run_grid

__all__ = ["RunConfig", "run", "run_grid"]
