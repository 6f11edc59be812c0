"""Weight-sharing supernets for the elastic spaces (``tiny``, ``mbv3``, ``proxyless``) and ``fbnet``.

* :class:`Supernet` — one module holding a space's largest network; any spec runs with its weights
  cut to size (:mod:`edgenas.supernet.elastic`), and :meth:`Supernet.extract` gives the spec as a
  stand-alone network with those weights.
* :func:`recalibrate_bn` — BatchNorm statistics re-estimated on a few batches, for the supernet's
  active subnet or an extracted one (:mod:`edgenas.supernet.bn`).
* :func:`train_supernet` — sandwich-rule training with in-place distillation, checkpoints and resume
  (:mod:`edgenas.supernet.train`); :func:`load_supernet` reads its checkpoints.
* :func:`supernet_from_ofa` / :func:`load_ofa_state_dict` / :func:`read_ofa_state_dict` — Once-for-All's
  MobileNetV3 supernet weights in the ``mbv3`` supernet (:mod:`edgenas.supernet.ofa`).
"""

from edgenas.supernet.bn import batches_of, recalibrate_bn
from edgenas.supernet.elastic import Supernet
from edgenas.supernet.ofa import load_ofa_state_dict, read_ofa_state_dict, supernet_from_ofa
from edgenas.supernet.train import (
    SupernetRun,
    load_supernet,
    read_checkpoint,
    save_checkpoint,
    train_supernet,
)

__all__ = [
    "Supernet",
    "SupernetRun",
    "batches_of",
    "load_ofa_state_dict",
    "load_supernet",
    "read_checkpoint",
    "read_ofa_state_dict",
    "recalibrate_bn",
    "save_checkpoint",
    "supernet_from_ofa",
    "train_supernet",
]
