"""Torch side of ``benchmarks/speed.py``: peer architectures and a random-init student, never imported by it.

Peers are the published aesthetics models' architectures with **random weights** (only their speed is
compared), at their published input sizes, in torch eager mode:

- ``laion-vit-l14``: the LAION aesthetic predictor = open_clip ViT-L-14 image tower at 224 + its MLP head
  (768-1024-128-64-16-1 on the L2-normalised embedding);
- ``nima-irv2``: NIMA (as in pyiqa) = timm ``inception_resnet_v2`` at 299 + dropout + 10-way softmax;
- ``nima-mobilenet``: idealo's NIMA = timm ``mobilenetv1_100`` at 224 + dropout + 10-way softmax;
- ``topiq-iaa-r50``: TOPIQ-IAA's trunk, timm ``resnet50`` at 384. TOPIQ adds multi-scale attention heads
  on top, so this is a lower bound of its cost (and the ratio to ours an understatement).

``python benchmarks/peers.py time NAME --repeat R`` prints ``RESULT {json}``; ``python benchmarks/peers.py
student OUT.onnx`` exports a randomly initialised EfficientNet-Lite0 student (``distill.student``) with
contract metadata, labelled as random in ``redaes.version``/``redaes.license``, for speed runs before a
trained model exists.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing

#: name -> (input side, description)
PEERS: dict[str, tuple[int, str]] = {
    "laion-vit-l14": (224, "LAION aesthetic predictor: open_clip ViT-L-14 image tower + MLP head"),
    "nima-irv2": (299, "NIMA (pyiqa): InceptionResNetV2 + 10-way head"),
    "nima-mobilenet": (224, "NIMA (idealo): MobileNetV1 1.0 + 10-way head"),
    "topiq-iaa-r50": (384, "TOPIQ-IAA trunk: ResNet50 (attention heads not counted: a lower bound)"),
}
RANDOM_STUDENT_VERSION = "0.0.0+random-init-benchmark"
_FACTORS = ("exposure", "contrast", "saturation", "sharpness", "noise", "composition")


def _build(name: str) -> Any:
    import timm
    import torch
    from torch import nn

    if name == "laion-vit-l14":
        import open_clip

        visual = open_clip.create_model("ViT-L-14", pretrained=None).visual
        head = nn.Sequential(
            nn.Linear(768, 1024),
            nn.Dropout(0.2),
            nn.Linear(1024, 128),
            nn.Dropout(0.2),
            nn.Linear(128, 64),
            nn.Dropout(0.1),
            nn.Linear(64, 16),
            nn.Linear(16, 1),
        )

        class Laion(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.visual, self.head = visual, head

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                e = self.visual(x)
                return self.head(e / e.norm(dim=-1, keepdim=True))

        return Laion()
    trunk_name = {"nima-irv2": "inception_resnet_v2", "nima-mobilenet": "mobilenetv1_100", "topiq-iaa-r50": "resnet50"}
    trunk = timm.create_model(trunk_name[name], pretrained=False, num_classes=0)
    if name == "topiq-iaa-r50":
        return trunk
    return nn.Sequential(trunk, nn.Dropout(0.75), nn.Linear(trunk.num_features, 10), nn.Softmax(dim=-1))


def time_peer(name: str, *, repeat: int, warmup: int = 2) -> dict[str, Any]:
    """Median latency of one batch-1 forward pass, torch eager, one thread."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    side, desc = PEERS[name]
    model = _build(name).eval()
    x = torch.randn(1, 3, side, side)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeat):
            t0 = time.perf_counter()
            model(x)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000)
    params = sum(p.numel() for p in model.parameters())
    return {
        "name": name,
        "description": desc,
        "input": side,
        "params": params,
        "median_ms": statistics.median(times),
        "times_ms": times,
        "torch": torch.__version__,
    }


def export_random_student(out: Path, *, backbone: str = "timm:tf_efficientnet_lite0") -> Path:
    """A randomly initialised student as a contract-conforming ONNX file (+ ``model.json``); returns ``out``."""
    import torch

    from distill.student import create_student
    from redaes_lite.metadata import ModelInfo, embed_props, write_sidecar

    torch.manual_seed(0)
    student, _, _ = create_student(backbone, factors=_FACTORS, pretrained=None)
    student.eval()

    class Contract(torch.nn.Module):  # utility [N], factors [N, K], as export/onnx.py shapes them
        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            utility, factors = student(pixel_values)
            return utility.reshape(-1), factors

    out.parent.mkdir(parents=True, exist_ok=True)
    example = (torch.zeros(2, 3, *student.spec.size),)  # batch 2 keeps N symbolic
    names: dict[str, Any] = {
        "input_names": ["pixel_values"],
        "output_names": ["utility", "factors"],
        "opset_version": 18,
    }
    with torch.no_grad():
        torch.onnx.export(
            Contract().eval(),
            example,
            str(out),
            dynamo=True,
            external_data=False,
            dynamic_shapes=({0: torch.export.Dim("N")},),
            **names,
        )
    import onnx

    info = ModelInfo(
        version=RANDOM_STUDENT_VERSION,
        preprocess=student.spec,
        factors=_FACTORS,
        temperature=1.0,
        calibration={"method": "linear", "utility": [-1.0, 1.0], "score": [0.0, 10.0], "fitted_on": "none"},
        student=student.info(),
        teacher=({"name": "none (random init)", "version": "0", "weight": 1.0},),
        training_data=({"name": "none", "license": "n/a", "pairs": 0},),
        quantization="fp32",
        license="random weights for speed benchmarks only; not a trained model",
    )
    model = onnx.load(str(out))
    embed_props(model, info)
    onnx.save(model, str(out))
    write_sidecar(out, info, opset=18)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("time", help="time one peer (prints RESULT {json})")
    t.add_argument("name", choices=sorted(PEERS))
    t.add_argument("--repeat", type=int, default=5)
    s = sub.add_parser("student", help="export a random-init EfficientNet-Lite0 student to OUT")
    s.add_argument("out", type=Path)
    args = parser.parse_args()
    run: dict[str, Callable[[], Any]] = {
        "time": lambda: time_peer(args.name, repeat=args.repeat),
        "student": lambda: {"path": str(export_random_student(args.out))},
    }
    print("RESULT " + json.dumps(run[args.cmd]()), flush=True)


if __name__ == "__main__":
    main()
