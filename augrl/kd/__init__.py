"""Knowledge distillation: the loss registry, cached teacher outputs and the distiller."""

from augrl.kd.cache import TeacherCache
from augrl.kd.distiller import Distiller
from augrl.kd.losses import LOSSES, Outputs, get_loss, register_loss, validate_objective

__all__ = ["LOSSES", "Distiller", "Outputs", "TeacherCache", "get_loss", "register_loss", "validate_objective"]
