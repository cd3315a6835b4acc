"""The markdown table of ``benchmarks/speed.py``: one row per measurement, its ratio and its target."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _row(*cells: Any) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _chosen(e2e: dict[str, Any]) -> str:
    c = e2e.get("chosen")
    return f"`{Path(c['file']).name}` ({c['precision']}: {c['reason']})" if c else "the file given"


def markdown(doc: dict[str, Any]) -> str:
    m, cam, ph, cli = doc["machine"], doc["e2e_camera"], doc["e2e_photos"], doc["cli"]
    floor = cam["floor_ms"]
    model = doc["model"]
    lines = [
        (
            f"Model: **{model['label']}** (`{model['path']}`, {model['bytes'] / 2**20:.1f} MiB); "
            f"int8: `{doc['int8_model']}`"
        ),
        (
            f"Machine: {m['cpu']} ({', '.join(m.get('cpu_features', [])) or 'no listed features'}; int8 dot "
            f"product: {m.get('cpu_int8_dot_product', {}).get('detail', '?')}), "
            f"{m['cores']} cores, {m['platform']}; onnxruntime {m['onnxruntime']}, "
            f"Pillow {m['pillow']}; nice {m['nice']}; load average {m['loadavg_start'][0]:.2f} at start, "
            f"{m['loadavg_end'][0]:.2f} at end (a shared machine: other work runs beside these figures)."
            + (" **--quick run: few repeats.**" if doc["quick"] else "")
        ),
        f"End to end runs: {_chosen(cam)}",
        "",
        _row("measurement", "median", "x decode floor", "target"),
        "|---|---:|---:|---|",
        _row("decode floor, 12 MP JPEG (open + draft + load), 1 core", f"{floor:.1f} ms", "1.00", ""),
        _row(
            "end to end `Scorer.score`, 12 MP JPEG, 1 thread",
            f"{cam['e2e_ms']:.1f} ms",
            f"{cam['e2e_ms'] / floor:.2f}",
            "<= 1.25",
        ),
        _row(
            "decode + preprocess alone, 12 MP JPEG",
            f"{cam['preprocess_ms']:.1f} ms",
            f"{cam['preprocess_ms'] / floor:.2f}",
            "",
        ),
        _row(
            f"end to end, {ph['images']} shared photos (median {ph['megapixels_median']:.2f} MP), 1 thread",
            f"{ph['e2e_ms']:.1f} ms",
            "",
            "",
        ),
        _row("decode + preprocess alone, shared photos", f"{ph['preprocess_ms']:.1f} ms", "", ""),
        _row("decode floor, shared photos", f"{ph['floor_ms']:.1f} ms", "", ""),
    ]
    for r in doc["inference"]:
        what = f"inference {r['precision']}, {r['threads']} thread{'s' if r['threads'] > 1 else ''}, batch {r['batch']}"
        value = "n/a" if "error" in r else f"{r['median_ms']:.1f} ms ({r['per_image_ms']:.1f} ms/image)"
        lines.append(_row(what, value, "", ""))
    cam_dir, photo_dir, one = cli["camera_folder"], cli["photos_folder"], cli["startup_one_file"]
    lines += [
        _row(
            f"`redaes-lite score` folder, {cam_dir['files']} camera JPEGs, all cores",
            f"{cam_dir['images_per_s']:.1f} images/s ({cam_dir['images_per_s_after_startup']:.1f} after startup)",
            "",
            ">= 40 images/s",
        ),
        _row(
            f"`redaes-lite score` folder, {photo_dir['files']} shared photos, all cores",
            f"{photo_dir['images_per_s']:.1f} images/s",
            "",
            "",
        ),
        _row("`redaes-lite score` startup + 1 file", f"{one['wall_s'] * 1000:.0f} ms", "", ""),
        _row(
            "peak RSS, `redaes-lite score` 1,000 files (shared photos)",
            f"{cli['rss_1000']['peak_rss_mb']:.0f} MB (100 files: {cli['rss_100']['peak_rss_mb']:.0f} MB; "
            f"1 file: {one['peak_rss_mb']:.0f} MB)",
            "",
            "<= 300 MB",
        ),
    ]
    if doc.get("peers"):
        targets = {"laion-vit-l14": ">= 200x", "nima-irv2": ">= 20x"}
        lines += [
            "",
            "Peers: random weights, torch eager, 1 thread, batch 1; ratio = peer time / our end-to-end time.",
            "",
            _row("peer", "input", "params", "median", "x ours, shared photos", "x ours, 12 MP JPEG", "target"),
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for p in doc["peers"]:
            lines.append(
                _row(
                    p["description"],
                    p["input"],
                    f"{p['params'] / 1e6:.1f} M",
                    f"{p['median_ms']:.0f} ms",
                    f"{p['median_ms'] / ph['e2e_ms']:.1f}x",
                    f"{p['median_ms'] / cam['e2e_ms']:.1f}x",
                    targets.get(p["name"], ""),
                )
            )
    return "\n".join(lines) + "\n"
