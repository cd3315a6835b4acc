"""MobileNet v1 (alpha 1.0) as a student trunk, started from NIMA's AVA-trained weights.

Why: NIMA's trunk already orders unrelated photos (AVA votes); a student that starts from it, rather than
from ImageNet, begins where feature and score distillation would otherwise have to take it, and keeps its
Apache-2.0 standing (``permissive`` may ship it). The graph is :class:`distill.teachers.nima.NimaNet`'s with
each symmetric zero pad folded into its 3x3 convolution (the same arithmetic, fewer ONNX nodes) and no
classifier: pixels normalised ``x / 127.5 - 1`` -> pooled 1024-d features.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from distill.teachers.nima import BLOCKS, NIMA_SHA256, TEACHER_ID, load_nima

__all__ = ["MobileNetV1Trunk", "NIMA_MEAN", "NIMA_STD", "nima_trunk"]

#: ``x / 127.5 - 1`` written as ``(x / 255 - mean) / std``.
NIMA_MEAN = (0.5, 0.5, 0.5)
NIMA_STD = (0.5, 0.5, 0.5)
WIDTH = 1024


class MobileNetV1Trunk(nn.Module):
    """``forward(pixels [N, 3, H, W]) -> [N, 1024]``; ``stages[0]`` is the stem, ``stages[i]`` block ``i``."""

    def __init__(self) -> None:
        super().__init__()

        def conv_bn(c_in: int, c_out: int, k: int, stride: int, groups: int) -> nn.Sequential:
            conv = nn.Conv2d(c_in, c_out, k, stride=stride, padding=k // 2, groups=groups, bias=False)
            return nn.Sequential(conv, nn.BatchNorm2d(c_out, eps=1e-3), nn.ReLU6())

        stages = [conv_bn(3, 32, 3, 2, 1)]
        c = 32
        for out, stride in BLOCKS:
            stages.append(nn.Sequential(conv_bn(c, c, 3, stride, c), conv_bn(c, out, 1, 1, 1)))
            c = out
        self.stages = nn.Sequential(*stages)
        self.width = c
        # timm's description of the levels a factor head may tap: the last stage at each resolution.
        self.feature_info = []
        for i, (out, _stride) in enumerate(BLOCKS, 1):
            if i == len(BLOCKS) or BLOCKS[i][1] != 1:
                reduction = 2 ** (1 + sum(s == 2 for _, s in BLOCKS[:i]))
                self.feature_info.append({"num_chs": out, "reduction": reduction, "module": f"stages.{i}"})

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.stages(pixels))

    def forward_head(self, final: torch.Tensor, pre_logits: bool = True) -> torch.Tensor:
        """Global average pool of the last feature map (there are no logits)."""
        return final.mean(dim=(2, 3))

    def forward_intermediates(
        self, pixels: torch.Tensor, indices: list[int]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The last feature map and those of the ``feature_info`` levels ``indices`` (timm's signature)."""
        wanted = {int(self.feature_info[i]["module"].split(".")[1]): i for i in indices}
        maps: dict[int, torch.Tensor] = {}
        x = pixels
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in wanted:
                maps[wanted[i]] = x
        return x, [maps[i] for i in indices]

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """One group per stage, input first (what ``unlocked_groups`` counts from the end)."""
        return [list(stage.parameters()) for stage in self.stages]

    def load_nima(self, path: str | os.PathLike | None = None) -> str:
        """Copy the trunk of idealo's NIMA file at ``path`` (default: the shipped one, sha256-checked) into this
        module; returns the weights label ``redaes.student`` records."""
        net = load_nima(path, sha256=NIMA_SHA256 if path is None else None)
        convs = [m for stage in self.stages for m in stage.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
        theirs = [net.layers[name] for pair in net.plan for name in pair]
        if len(convs) != len(theirs):
            raise ValueError(f"NIMA file has {len(theirs) // 2} convolutions, the trunk {len(convs) // 2}")
        with torch.no_grad():
            for mine, src in zip(convs, theirs):
                for key, value in src.state_dict().items():
                    target = mine.state_dict()[key]
                    if target.shape != value.shape:
                        raise ValueError(f"NIMA tensor {key} has shape {tuple(value.shape)}, expected {target.shape}")
                    target.copy_(value)
        return f"nima:{TEACHER_ID}" if path is None else f"nima:{net.loaded.sha256[:12] if net.loaded else path}"


def nima_trunk(pretrained: str | bool | None) -> tuple[MobileNetV1Trunk, str | None]:
    """The trunk and its weights label: random (``None``/``False``), idealo's release (``True`` or its id
    ``"nima-mobilenet-ava@idealo-0.07"``; the file in ``../shared/weights``) or the NIMA-format HDF5 at the path
    ``pretrained``."""
    trunk = MobileNetV1Trunk()
    if pretrained is None or pretrained is False:
        return trunk, None
    shipped = pretrained is True or pretrained in (TEACHER_ID, f"nima:{TEACHER_ID}")
    label = trunk.load_nima(None if shipped else pretrained)
    return trunk, label
