"""Where the time of ``Scorer.score`` goes on the camera-like 12 MP JPEG: each step timed on its own, one thread.

    python benchmarks/score_steps.py [--model default|permissive|PATH] [--precision auto|fp|int8] [--repeat 40]
                                     [--photo JPEG] [--json OUT]

Steps, timed round-robin in one process (so load from other processes hits them alike), median ms:

- ``decode floor``: ``Image.open`` + ``draft("RGB", 2x the input size)`` + ``load()``: what any reader pays;
- ``load_image``: our decode: the floor plus the header and structure checks, the decode-memory estimate,
  EXIF orientation and conversion to RGB (``redaes_lite.preprocess.load_image``);
- ``resize``: the decoded draft-size image to the model's input (its interpolation, antialias as the spec says);
- ``to_array``: resize + scale to [0, 1], mean/std, HWC -> CHW float32 (the input tensor);
- ``session.run``: ONNX Runtime on that one-image batch;
- ``results``: the ``Score`` object from the two outputs (display-score calibration, factor dict);
- ``Scorer.score``: all of it from the path, as a user calls it.

Derived rows: checks + orientation + RGB = load_image - floor; normalise + layout = to_array - resize; what is
left of ``Scorer.score`` after its steps. Prints a table, writes JSON (default /tmp/redaes-bench/score-steps.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

os.environ.setdefault("OMP_NUM_THREADS", "1")

from _output import write_json  # noqa: E402
from PIL import Image  # noqa: E402
from preprocess_speed import _time_interleaved, make_camera_jpeg  # noqa: E402

import redaes_lite  # noqa: E402
from redaes_lite import preprocess  # noqa: E402

PHOTOS = HERE.parents[1] / "shared" / "data" / "photos"


def measure(model: str, precision: str, photo: Path, repeat: int) -> dict:
    scorer = redaes_lite.load(model, threads=1, precision=precision)
    spec = scorer.info.preprocess
    draft = (2 * spec.width, 2 * spec.height)
    decoded = preprocess.load_image(photo, spec)
    pixels = preprocess.to_array(decoded, spec)[None]
    outputs = scorer._session.run(pixels)  # the steps below are the public ones' insides: timed apart

    def floor() -> None:
        with Image.open(photo) as im:
            im.draft("RGB", draft)
            im.load()

    cases: dict[str, Callable[[], object]] = {
        "decode floor": floor,
        "load_image": lambda: preprocess.load_image(photo, spec),
        "resize": lambda: preprocess._resize(decoded, spec),
        "to_array": lambda: preprocess.to_array(decoded, spec),
        "session.run": lambda: scorer._session.run(pixels),
        "results": lambda: scorer._score(outputs[0][0], outputs[1][0]),
        "Scorer.score": lambda: scorer.score(photo),
    }
    med = {k: statistics.median(v) for k, v in _time_interleaved(cases, repeat).items()}
    derived = {
        "checks + orientation + RGB": med["load_image"] - med["decode floor"],
        "normalise + layout": med["to_array"] - med["resize"],
        "rest of Scorer.score": med["Scorer.score"]
        - (med["load_image"] + med["to_array"] + med["session.run"] + med["results"]),
    }
    return {
        "model": scorer.model_id,
        "file": str(scorer.path),
        "precision": scorer.choice.to_dict() if scorer.choice else None,
        "photo": str(photo),
        "decoded_size": list(decoded.size),
        "input_size": list(spec.size),
        "repeat": repeat,
        "median_ms": {k: round(v, 3) for k, v in med.items()},
        "derived_ms": {k: round(v, 3) for k, v in derived.items()},
        "machine": {"cpu": platform.processor() or platform.machine(), "loadavg": list(os.getloadavg())},
    }


def table(doc: dict) -> str:
    floor = doc["median_ms"]["decode floor"]
    lines = [
        f"{doc['model']} ({Path(doc['file']).name}), {doc['photo']} decoded at {doc['decoded_size']}, "
        f"input {doc['input_size']}, {doc['repeat']} rounds; load average {doc['machine']['loadavg'][0]:.2f}",
        "",
        "| step | median ms | x decode floor |",
        "|---|---:|---:|",
    ]
    for name, ms in [*doc["median_ms"].items(), *doc["derived_ms"].items()]:
        lines.append(f"| {name} | {ms:.2f} | {ms / floor:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="embedded name, model folder or file (default: default)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp", "int8"))
    p.add_argument("--repeat", type=int, default=40, help="rounds (default %(default)s)")
    p.add_argument("--photo", type=Path, help="a JPEG [default: the camera-like 12 MP JPEG, made once]")
    p.add_argument("--cache", type=Path, default=Path("/tmp/redaes-bench"))
    p.add_argument("--json", type=Path, help="write the figures here [default: CACHE/score-steps.json]")
    args = p.parse_args()
    photo = args.photo or args.cache / "camera_12mp.jpg"
    if args.photo is None and not photo.exists():
        make_camera_jpeg(min(PHOTOS.glob("*.jpg")), photo)  # as speed.py makes it: one cached file
    precision = "auto" if Path(args.model).is_file() else args.precision
    doc = measure(args.model, precision, photo, args.repeat)
    print(table(doc))
    write_json(args.json or args.cache / "score-steps.json", doc)


if __name__ == "__main__":
    main()
