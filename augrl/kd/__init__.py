"""Knowledge distillation: the loss registry, layer maps, cached teacher outputs, the distiller.

The trainers (``kd``, ``multi_teacher``, co-training, ``newsbert``, ``rco``, ``metakd``) are
registered in :mod:`augrl.kd.methods` and loaded on first use.
"""

from augrl.kd import domains as _domains  # noqa: F401  (registers the domain_transfer loss)
from augrl.kd.cache import TeacherCache
from augrl.kd.distiller import Distiller, make_optimizer
from augrl.kd.layer_map import LayerMap
from augrl.kd.losses import LOSSES, get_loss, parse_objective, register_loss, validate_objective
from augrl.kd.outputs import Needs, Outputs, model_outputs

__all__ = ["LOSSES", "Distiller", "LayerMap", "Needs", "Outputs", "TeacherCache", "get_loss", "make_optimizer",
           "model_outputs", "parse_objective", "register_loss", "validate_objective"]
