"""An example edgenas plug-in package: one plug-in of every kind, registered through entry points
(see ``pyproject.toml``), none of them needing an edit to edgenas.

* ``nano`` (space): the ``tiny`` MobileNetV3 block family with smaller choices (kernel 3/5, expand 2/4,
  depth 1-2, width 0.5/1.0): a subclass, so its exact cost model, latency units and export path are
  edgenas' own;
* ``zen-score`` (estimator): a Zen-NAS-style training-free proxy;
* ``qmc`` (sampler): Optuna's quasi-Monte Carlo sampler;
* ``torch`` (runtime): ``torch.export`` programs run in eager PyTorch on the CPU;
* ``torch-export`` (exporter): a ``.pt2`` file of the trained model, verified by reloading it;
* ``dw_macs_m`` (latency feature): MACs of the depthwise convolutions, for device models.
"""

__version__ = "0.1.0"
