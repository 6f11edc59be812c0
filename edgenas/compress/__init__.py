"""Compress the model you have: a search space derived from it (:mod:`edgenas.compress.space`).

``--model torchvision:mobilenet_v2`` (or ``file.py:build_fn``, ``model.pt``, ``model.pt2``) makes the ``model`` space:
keep ratios per group of coupled channels and optional removal of residual blocks, found with
Torch-Pruning's dependency graph; exact costs from the FX graph; latency units that are the pruned
model's blocks; members built with the source's weights for the ``prune-finetune`` estimator.
"""
