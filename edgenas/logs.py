"""Third-party log spam: Optuna logs every trial at INFO and warns on experimental features, litert-torch
and JAX print load notices. edgenas shows its own progress and results; the libraries' logs appear with
``-v`` (``verbose=True``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager


def quiet_third_party(verbose: bool = False) -> None:
    """Silence Optuna's per-trial INFO lines and experimental/future warnings unless ``verbose``."""
    if verbose:
        return
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message=".*Clip non-finite values.*")
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    logging.getLogger("optuna").setLevel(logging.WARNING)


@contextmanager
def optuna_quiet(quiet: bool = True) -> Iterator[None]:
    """Optuna's INFO lines (``A new study created ...``) hidden for a block, its verbosity restored after
    (for library calls asked to be quiet; the CLI sets it once with :func:`quiet_third_party`)."""
    import optuna

    if not quiet:
        yield
        return
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(before, optuna.logging.WARNING))
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)
