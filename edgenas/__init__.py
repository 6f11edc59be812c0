"""edgenas: hardware-aware neural architecture search for edge devices.

Python API (the CLI is a thin layer over it)::

    from edgenas import get_space, parse_arch
    space = get_space("mbv3")
    spec = space.sample(1, seed=0)[0]      # or space.suggest(optuna_trial)
    print(spec, space.cost(spec))          # canonical string, exact MACs/params/sizes/peak RAM
    model = space.build(spec)              # torch.nn.Module
"""

from __future__ import annotations

__version__ = "0.1.0"

from edgenas.errors import ArchParseError, EdgenasError
from edgenas.spaces import ArchSpec, CostReport, SearchSpace, Task, get_space, parse_arch, space_names

__all__ = [
    "ArchParseError",
    "ArchSpec",
    "CostReport",
    "EdgenasError",
    "SearchSpace",
    "Task",
    "__version__",
    "get_space",
    "parse_arch",
    "space_names",
]
