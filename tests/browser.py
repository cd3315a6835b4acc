"""Headless Chromium for the report tests and benchmarks/report_render.py: load a file from disk, dump its
DOM or screenshot it, and collect what the page wrote to the console (errors, CSP refusals)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Chromium logs each console message, uncaught exception and CSP refusal of a page as an INFO:CONSOLE line.
_CONSOLE = re.compile(r":CONSOLE(?:\(\d+\))?[:\]].*|Uncaught .*|Refused to .*")


def chromium() -> str | None:
    """The Chromium (or Chrome) binary on PATH, else None."""
    return next((found for found in map(shutil.which, NAMES) if found), None)


@dataclass
class Visit:
    stdout: str
    console: list[str]
    seconds: float  # wall time of the browser process, start-up included


def visit(page: Path, *args: str, width: int = 1280, height: int = 1000, timeout: float = 120) -> Visit:
    """Open ``page`` (a file) in headless Chromium with ``args`` (``--dump-dom``, ``--screenshot=PNG``)."""
    binary = chromium()
    if binary is None:
        raise RuntimeError("no chromium binary on PATH")
    with tempfile.TemporaryDirectory(prefix="redaes-chromium-") as profile:
        cmd = [
            binary,
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--hide-scrollbars",
            "--mute-audio",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            *args,
            page.resolve().as_uri(),
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root (containers, CI)
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace")
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"chromium exited {done.returncode}: {done.stderr[-2000:]}")
    return Visit(stdout=done.stdout, console=_CONSOLE.findall(done.stderr), seconds=seconds)


def instrumented(page: str, script: str) -> str:
    """``page`` without its Content-Security-Policy and with ``script`` run first in <head> (for measuring
    and driving a copy of the page; the report itself allows only its own script)."""
    page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page, count=1)
    return page.replace("<head>", f"<head><script>{script}</script>", 1)
