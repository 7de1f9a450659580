"""Loss-landscape measures over checkpoints (Liu, Wang, Jordan & Long 2019, "Towards
Understanding the Transferability of Deep Representations").

* curvature: :func:`hessian_top_eigenvalue` (sharpness), :func:`hessian_trace` (Hutchinson),
  from Hessian-vector products only (:class:`HessianOperator`);
* gradients: :func:`gradient_norm`, :func:`gradient_principal_share`, :func:`gradient_stats`;
* weights: :func:`weight_distance`, :func:`trajectory_distances`;
* paths: :func:`loss_path`, :func:`barrier_height`;
* :func:`checkpoint_measures` -- all of them for one checkpoint as tidy rows (``infodyn analyze``);
* :func:`sharpness_vs_transfer` -- the figure.

Every function takes ``loss_fn(model, batch) -> scalar`` and ``batches``: a list of batches, a
re-iterable such as a ``DataLoader``, or a callable returning a fresh iterator (a one-shot
generator is refused, as the data are passed over several times). The loss is the
batch-size-weighted mean over the batches. Put the model in eval mode first.
"""
from .gradients import GradientStats, PrincipalShare, gradient_norm, gradient_principal_share, gradient_stats
from .hessian import (EigenResult, HessianOperator, TraceResult, hessian_top_eigenvalue, hessian_trace,
                      hessian_vector_product)
from .measures import MEASURES, checkpoint_measures, measure_names
from .path import barrier_height, loss_path, mean_loss
from .plot import sharpness_vs_transfer
from .weights import trajectory_distances, weight_distance

__all__ = ["hessian_top_eigenvalue", "hessian_trace", "hessian_vector_product", "HessianOperator", "EigenResult",
           "TraceResult", "gradient_norm", "gradient_principal_share", "gradient_stats", "GradientStats",
           "PrincipalShare", "weight_distance", "trajectory_distances", "loss_path", "barrier_height", "mean_loss",
           "checkpoint_measures", "measure_names", "MEASURES", "sharpness_vs_transfer"]
