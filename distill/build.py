"""``python -m distill build CONFIG --out DIR``: one command from a config to the files an app embeds.

Stages, each writing under ``DIR`` and skipped when its output is already there, so the same command
continues a build that was stopped (``--until``, Ctrl-C, a session that ended)::

    train   DIR/train/final.pt          python -m distill train CONFIG (resumes from DIR/train/last.pt)
    heads   DIR/heads/model.pt          python -m distill heads, with the config's build.heads options
    refit   DIR/refit/model.pt          temperature, lapse and display calibration on the full-resolution
                                        validation data (python -m distill evaluate --refit), stamped with
                                        the config's version and the build's provenance
    export  DIR/export/...              python -m export, with build.export options, parity gates included
            DIR/model/<name>/           model.onnx + model.json + NOTICE (+ model.int8.onnx + model.int8.json
                                        with build.export int8_shared): copy to redaes_lite/models/<name>/

``DIR/build.json`` records the stages done, the commit and the sha256 of the resolved config; a build
continued with another config or from another commit says so and stops unless ``--force``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redaes_lite._atomic import atomic_open

__all__ = ["STAGES", "build", "flags", "main"]

STAGES = ("train", "heads", "refit", "export")


class BuildError(Exception):
    """A build cannot go on (another config in the folder, a stage that failed)."""


def flags(options: dict[str, Any]) -> list[str]:
    """Plain config data as command-line flags: ``{biq_sources: 2550, fp16: true}`` ->
    ``["--biq-sources", "2550", "--fp16"]`` (``false`` and ``null`` leave a flag out)."""
    out: list[str] = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is not False and value is not None:
            out += [flag, str(value)]
    return out


def _config_sha(cfg: Any) -> str:
    from distill.config import dump_config

    tree = dump_config(cfg)
    tree.pop("out", None)  # where it runs is not what it builds
    return hashlib.sha256(json.dumps(tree, sort_keys=True).encode("utf-8")).hexdigest()


def _state(out: Path, cfg: Any, *, force: bool) -> dict[str, Any]:
    from distill.train_setup import git_commit

    path = out / "build.json"
    fresh = {"config": cfg.name, "config_sha256": _config_sha(cfg), "commit": git_commit(), "done": []}
    if not path.is_file():
        return fresh
    state = json.loads(path.read_text(encoding="utf-8"))
    for key in ("config_sha256", "commit"):
        if state.get(key) != fresh[key] and not force:
            raise BuildError(
                f"{path}: built with another {key.split('_')[0]} ({state.get(key)} != {fresh[key]}); "
                "use a new --out, or --force to go on"
            )
    return {**state, **{k: fresh[k] for k in ("config_sha256", "commit")}}


def _write_json(path: Path, obj: Any) -> None:
    with atomic_open(path) as f:
        f.write(json.dumps(obj, indent=2, default=str) + "\n")


def _save_state(out: Path, state: dict[str, Any]) -> None:
    _write_json(out / "build.json", state)


def _run_cli(main: Any, argv: list[str], stage: str) -> None:
    code = int(main(argv) or 0)
    if code != 0:
        raise BuildError(f"stage {stage}: exited with status {code} (its message is above)")


def _train(cfg: Any, out: Path, until_step: int | None) -> Path | None:
    from distill.trainer import train

    cfg.out = str(out / "train")
    final = out / "train" / "final.pt"
    if final.is_file():
        return final
    return train(cfg, resume=(out / "train" / "last.pt").is_file(), until=until_step)


def _refit(cfg: Any, checkpoint: Path, out: Path, state: dict[str, Any]) -> Path:
    from distill.evaluate import evaluate_checkpoint
    from distill.student import load_checkpoint

    target = out / "refit" / "model.pt"
    # Exported as redaes.metrics: a model file says which build and data made it.
    build = {
        "config_sha256": state["config_sha256"],
        "commit": state["commit"],
        "data_hashes": load_checkpoint(checkpoint).get("data_hashes", {}),
    }
    figures = evaluate_checkpoint(
        checkpoint, refit=target, version=cfg.version, extra_metrics={"build": build}, val_config=cfg.val
    )
    _write_json(out / "refit" / "metrics.json", figures)
    return target


def _export(cfg: Any, checkpoint: Path, out: Path) -> Path:
    from export.__main__ import main as export_main

    options = dict(cfg.build.export)
    _run_cli(export_main, [str(checkpoint), "--out", str(out / "export"), *flags(options)], "export")
    chosen = out / "export" / cfg.build.file
    if not (chosen / "model.onnx").is_file():
        raise BuildError(f"{chosen}: no model.onnx (build.file {cfg.build.file!r} was not exported)")
    ship = out / "model" / cfg.build.model
    ship.mkdir(parents=True, exist_ok=True)
    for name in ("model.onnx", "model.json"):
        shutil.copyfile(chosen / name, ship / name)
    # With build.export int8_shared: the int8 file that reads model.onnx's weights, and its sidecar.
    for name in ("model.int8.onnx", "model.int8.json"):
        if (chosen / name).is_file():
            shutil.copyfile(chosen / name, ship / name)
        else:
            (ship / name).unlink(missing_ok=True)  # a stale int8 file must not ship beside a new model.onnx
    if cfg.build.notice:
        shutil.copyfile(cfg.build.notice, ship / "NOTICE")
    return ship


def build(
    config: str | Path,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    until: str | None = None,
    until_step: int | None = None,
    force: bool = False,
    log: Any = print,
) -> Path | None:
    """Run the stages of ``config`` into ``out`` up to ``until`` (a stage name; default: all); return the
    folder to copy into ``redaes_lite/models/<name>/``, or None when stopped before the end."""
    from distill.config import load_config

    if until is not None and until not in STAGES:
        raise BuildError(f"--until: unknown stage {until!r}; stages: {', '.join(STAGES)}")
    cfg = load_config(config, overrides=list(overrides))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = _state(out, cfg, force=force)
    _save_state(out, state)
    last = STAGES.index(until) if until else len(STAGES) - 1

    def finished(stage: str, path: Path) -> None:
        if stage not in state["done"]:
            state["done"].append(stage)
        state[stage] = str(path)
        _save_state(out, state)
        log(f"build: {stage} -> {path}")

    checkpoint = _train(cfg, out, until_step)
    if checkpoint is None:
        log(f"build: training stopped before the end; run the same command to continue ({out / 'train'})")
        return None
    finished("train", checkpoint)
    if last >= STAGES.index("heads") and cfg.build.heads is not None:
        from distill.heads import main as heads_main

        target = out / "heads" / "model.pt"
        if not target.is_file():
            _run_cli(heads_main, [str(checkpoint), "--out", str(target), *flags(cfg.build.heads)], "heads")
        checkpoint = target
        finished("heads", checkpoint)
    if last >= STAGES.index("refit"):
        target = out / "refit" / "model.pt"
        checkpoint = target if target.is_file() else _refit(cfg, checkpoint, out, state)
        finished("refit", checkpoint)
    if last >= STAGES.index("export"):
        ship = out / "model" / cfg.build.model
        if not (ship / "model.onnx").is_file():
            ship = _export(cfg, checkpoint, out)
        finished("export", ship)
        return ship
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m distill build",
        description="Train, refit the factor head, refit calibration and export one model from its config; "
        "run the same command again to continue a stopped build.",
    )
    p.add_argument("config", help="YAML config with a build section (distill/configs/default-v1.yaml)")
    p.add_argument("--out", type=Path, required=True, help="build folder")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value")
    p.add_argument("--until", choices=STAGES, help="stop after this stage (default: run all)")
    p.add_argument("--until-step", type=int, metavar="STEP", help="stop training at this step (then run again)")
    p.add_argument("--force", action="store_true", help="go on in a folder built with another config or commit")
    args = p.parse_args(argv)
    from redaes_lite.errors import RedaesError

    try:
        ship = build(
            args.config, args.out, overrides=args.set, until=args.until, until_step=args.until_step, force=args.force
        )
    except (BuildError, RedaesError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if ship is not None:
        print(ship)
    return 0
