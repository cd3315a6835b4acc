"""``python -m export``: checkpoint -> gated model files, plus one subcommand per step.

    python -m export CHECKPOINT --out DIR [--int8 auto|dynamic|qdq|none] [--fp16] [--ort] ...
        int8 recipe: [--int8-method minmax|entropy|percentile] [--int8-float-layers N] [--int8-shared]
        calibration: [--calibration-photos N] [--calibration-sources photos,biq2021,para]
                     [--calibration-licence any|commercial] [--calibration-variants K]
    python -m export onnx CHECKPOINT OUT.onnx          fp32 export with metadata (no gates)
    python -m export quantize SRC.onnx OUT.onnx --mode qdq|dynamic|fp16
    python -m export ort SRC.onnx OUT.ort              ORT format + required_operators.config
    python -m export parity CANDIDATE --against REF    REF .pt: torch gate; .onnx: ranking (identical for .ort)
    python -m export report FILE...                    sizes and latencies as JSON
    python -m export int8 MODEL_DIR [--reference FP32.onnx] [recipe and calibration flags]
                                                       add model.int8.onnx (gated) to a folder with fp16 model.onnx

Exit codes: 0 done; 1 the input cannot be exported (bad checkpoint, missing photos, bad option value);
2 usage error; 3 a parity gate failed (nothing was shipped).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from redaes_lite.errors import RedaesError

from .errors import ParityError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARITY = 0, 1, 2, 3
SUBCOMMANDS = ("onnx", "quantize", "ort", "parity", "report", "int8")


def _say(line: str) -> None:
    print(f"[export] {line}", file=sys.stderr, flush=True)


def _photo_args(p: argparse.ArgumentParser, *, calibration: bool, parity: bool) -> None:
    from .photos import DEFAULT_CALIBRATION, DEFAULT_PARITY

    if calibration:
        from .calibration import LICENCES
        from .int8 import INT8_METHODS

        p.add_argument(
            "--calibration-photos",
            type=int,
            default=DEFAULT_CALIBRATION,
            metavar="N",
            help="train-split images for int8 QDQ calibration, spread over the sources (default %(default)s)",
        )
        p.add_argument(
            "--calibration-sources",
            default="photos",
            metavar="LIST",
            help="train splits to calibrate on, comma-separated: photos, biq2021, para (default %(default)s)",
        )
        p.add_argument(
            "--calibration-licence",
            choices=LICENCES,
            default="any",
            help="commercial: only photos whose manifest says commercial_use=yes (default %(default)s)",
        )
        p.add_argument(
            "--calibration-variants",
            type=int,
            default=0,
            metavar="K",
            help="edited copies (crop, mirror, tone, blur/grain/JPEG) of each calibration image (default 0)",
        )
        p.add_argument("--int8-method", choices=INT8_METHODS, default="minmax", help="activation range calibration")
        p.add_argument(
            "--int8-float-layers",
            type=int,
            default=0,
            metavar="N",
            help="weighted layers at the input end kept float in int8 QDQ (default 0)",
        )
    if parity:
        p.add_argument(
            "--parity-photos",
            type=int,
            default=DEFAULT_PARITY,
            metavar="N",
            help="held-out photos for the gates (default %(default)s, the least they accept)",
        )


def _main_parser() -> argparse.ArgumentParser:
    from .mobile import TARGETS
    from .onnx import DEFAULT_OPSET, EXPORTERS
    from .pipeline import INT8_CHOICES

    p = argparse.ArgumentParser(
        prog="python -m export", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("checkpoint", type=Path, help="distillation checkpoint (.pt)")
    p.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per file kind)")
    p.add_argument("--int8", choices=INT8_CHOICES, default="auto", help="int8 mode; auto measures both (default)")
    p.add_argument("--fp16", action="store_true", help="also write fp16-weights model (half size, fp32 compute)")
    p.add_argument(
        "--int8-shared",
        action="store_true",
        help="quantise int8 from the fp16 weights and also write fp16/model.int8.onnx reading them (needs --fp16)",
    )
    p.add_argument("--ort", action="store_true", help="also write ORT mobile format files (.ort)")
    p.add_argument("--ort-target", choices=TARGETS, default="arm", help="CPU the .ort is optimised for")
    p.add_argument("--exporter", choices=EXPORTERS, default="dynamo", help="torch.onnx exporter (default dynamo)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    _photo_args(p, calibration=True, parity=True)
    p.add_argument("--torch-photos", type=int, default=32, metavar="N", help="of the parity photos, for torch vs fp32")
    p.add_argument("--repeats", type=int, default=10, metavar="N", help="timed runs per latency figure")
    return p


def _calibration(a: argparse.Namespace) -> tuple[Sequence, str]:
    """The calibration images the flags name, and how to describe them in the report."""
    from .calibration import CalibrationSet

    cs = CalibrationSet(
        images=a.calibration_photos,
        sources=tuple(s.strip() for s in a.calibration_sources.split(",") if s.strip()),
        variants=a.calibration_variants,
        licence=a.calibration_licence,
    )
    return cs.inputs(), cs.describe()


def _recipe(a: argparse.Namespace):
    from .int8 import Int8Recipe

    return Int8Recipe(method=a.int8_method, float_layers=a.int8_float_layers)


def _run_main(argv: Sequence[str]) -> int:
    from .photos import parity_photos
    from .pipeline import ExportOptions, export_all
    from .report import to_markdown

    a = _main_parser().parse_args(argv)
    needs_calibration = a.int8 in ("auto", "qdq")
    calibration, described = _calibration(a) if needs_calibration else ((), "none")
    options = ExportOptions(
        int8=a.int8,
        fp16=a.fp16,
        ort=a.ort,
        ort_target=a.ort_target,
        exporter=a.exporter,
        opset=a.opset,
        calibration=calibration,
        int8_recipe=_recipe(a),
        int8_shared=a.int8_shared,
        parity=tuple(parity_photos(a.parity_photos)),
        torch_images=a.torch_photos,
        repeats=a.repeats,
        extra={
            "calibration_from": f"distill.splits train splits: {described}",
            "parity_from": "distill.splits photos/val, then biq2021/val",
        },
    )
    report = export_all(a.checkpoint, a.out, options=options, progress=_say)
    print(to_markdown(json.loads(report.read_text())))
    return EXIT_OK


def _sub_parser() -> argparse.ArgumentParser:
    from .mobile import TARGETS
    from .onnx import DEFAULT_OPSET, EXPORTERS

    p = argparse.ArgumentParser(prog="python -m export", description="one export step (see python -m export --help)")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("onnx", help="checkpoint -> fp32 ONNX with metadata and model.json (no gates)")
    s.add_argument("checkpoint", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--exporter", choices=EXPORTERS, default="dynamo")
    s.add_argument("--opset", type=int, default=DEFAULT_OPSET)
    s = sub.add_parser("quantize", help="fp32 ONNX -> int8 (dynamic or qdq) or fp16-weights ONNX (no gates)")
    s.add_argument("src", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--mode", choices=("qdq", "dynamic", "fp16"), required=True)
    _photo_args(s, calibration=True, parity=False)
    s = sub.add_parser("ort", help="ONNX -> .ort + required_operators.config (no gates)")
    s.add_argument("src", type=Path)
    s.add_argument("out", type=Path)
    s.add_argument("--target", choices=TARGETS, default="arm")
    s = sub.add_parser("parity", help="run the gate that fits: .pt reference: torch; .onnx: ranking or identical")
    s.add_argument("candidate", type=Path)
    s.add_argument("--against", type=Path, required=True, metavar="REFERENCE")
    _photo_args(s, calibration=False, parity=True)
    s = sub.add_parser(
        "int8", help="add model.int8.onnx, gated, reading the weights of a folder's fp16-weights model.onnx"
    )
    s.add_argument("folder", type=Path, help="model folder (model.onnx with fp16 weights, model.json)")
    s.add_argument(
        "--reference",
        type=Path,
        help="fp32 ONNX of the same model to gate against (default: model.onnx itself, computed in fp32)",
    )
    _photo_args(s, calibration=True, parity=True)
    s = sub.add_parser("report", help="size, sha256 and latency of model files, as JSON")
    s.add_argument("files", type=Path, nargs="+")
    s.add_argument("--repeats", type=int, default=10)
    return p


def _cmd_quantize(a: argparse.Namespace) -> Path:
    from .quantize import fp16_weights, quantize_int8

    if a.mode == "fp16":
        return fp16_weights(a.src, a.out)
    calibration = _calibration(a)[0] if a.mode == "qdq" else []
    return quantize_int8(a.src, a.out, mode=f"int8-{a.mode}", calibration=calibration, recipe=_recipe(a))


def _cmd_int8(a: argparse.Namespace) -> dict:
    from .photos import parity_photos
    from .pipeline import add_int8

    calibration, described = _calibration(a)
    record = add_int8(
        a.folder,
        calibration=calibration,
        parity=parity_photos(a.parity_photos),
        recipe=_recipe(a),
        reference=a.reference,
        progress=_say,
    )
    return {**record, "calibration_from": f"distill.splits train splits: {described}"}


def _cmd_parity(a: argparse.Namespace) -> dict:
    from .parity import identical_ranking_gate, ranking_gate, torch_gate
    from .photos import parity_photos

    photos = parity_photos(a.parity_photos)
    if a.against.suffix == ".pt":
        return torch_gate(a.against, a.candidate, photos).to_dict()
    gate = identical_ranking_gate if a.candidate.suffix == ".ort" else ranking_gate
    return gate(a.against, a.candidate, photos).to_dict()


def _cmd_report(a: argparse.Namespace) -> dict:
    from .report import describe_file, measure_latencies

    return {
        str(f): {
            **describe_file(f.resolve(), root=f.resolve().parent),
            "latency_ms": measure_latencies(f, repeats=a.repeats),
        }
        for f in a.files
    }


def _run_sub(argv: Sequence[str]) -> int:
    from .mobile import to_ort
    from .onnx import export_onnx

    a = _sub_parser().parse_args(argv)
    commands: dict[str, Callable[[], object]] = {
        "onnx": lambda: export_onnx(a.checkpoint, a.out, exporter=a.exporter, opset=a.opset),
        "quantize": lambda: _cmd_quantize(a),
        "ort": lambda: to_ort(a.src, a.out, target=a.target),
        "parity": lambda: _cmd_parity(a),
        "report": lambda: _cmd_report(a),
        "int8": lambda: _cmd_int8(a),
    }
    result = commands[a.command]()
    print(json.dumps(result, indent=2) if isinstance(result, dict) else result)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run_sub(argv) if argv and argv[0] in SUBCOMMANDS else _run_main(argv)
    except ParityError as e:
        _say(f"FAILED: {e}")
        return EXIT_PARITY
    except RedaesError as e:
        _say(f"error: {e}")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
