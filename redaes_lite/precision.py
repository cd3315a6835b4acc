"""Which file of a model runs: its fp file (``model.onnx``) or the int8 file beside it (``model.int8.onnx``).

A model folder (an embedded model, or a folder given as the model) may hold both. The int8 file passed
the same parity gates against fp32 as every reduced-precision file (Spearman >= 0.99, pairwise >= 98%),
measured on a CPU whose int8 kernels add up exactly; it runs about twice as fast where the CPU has an
int8 dot-product instruction. The rule, by CPU features (no timing, so it never varies from run to run):

``auto`` (the default) runs ``model.int8.onnx`` when all of these hold, else ``model.onnx``:

1. the folder holds ``model.int8.onnx``;
2. the providers are ONNX Runtime's CPU provider alone (int8 QDQ was gated on it, not on GPU providers);
3. the CPU has an int8 dot-product instruction: x86-64 ``avx512_vnni``, ``avx_vnni`` or ``amx_int8``;
   ARM64 ``asimddp`` (dot product; every Apple Silicon core). Without one, x86 int8 kernels sum pairs
   of products in 16 bits that can saturate (``vpmaddubsw``; ONNX Runtime's own advice is reduce_range
   there), so the int8 file would not compute what its gate measured; and ARM cores without it gain little.
   Where the features cannot be read (not Linux, macOS or Windows), the fp file runs.

``fp`` or ``int8`` forces the file (``int8`` fails if none ships). The choice comes from ``load(...,
precision=)``, else the ``REDAES_PRECISION`` environment variable, else ``auto``; the CLI's
``--precision`` sets the argument. A path to a file loads that file whatever the setting (``precision=``
other than ``auto`` with a file is an error). Given the file and the machine, scores are deterministic: the
same inputs give bit-identical results; the two files' scores differ (within the gates), so rows name the
file (``default@1.0.0+int8``).
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .errors import ModelError

__all__ = ["ENV", "FP_FILE", "INT8_FILE", "PRECISIONS", "Choice", "CpuInt8", "choose", "cpu_int8", "requested"]

PRECISIONS = ("auto", "fp", "int8")
ENV = "REDAES_PRECISION"
FP_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
_CPU_PROVIDER = "CPUExecutionProvider"
# Linux /proc/cpuinfo flags (x86 "flags", ARM "Features") naming an int8 dot product that does not saturate.
_X86_DOT = ("avx512_vnni", "avx_vnni", "amx_int8")
_ARM_DOT = ("asimddp",)
# Windows IsProcessorFeaturePresent: PF_ARM_V82_DP_INSTRUCTIONS_AVAILABLE.
_PF_ARM_DP = 43


@dataclass(frozen=True)
class CpuInt8:
    """Whether this CPU has an int8 dot-product instruction: ``supported`` (None: could not tell) and the
    evidence, e.g. ``avx512_vnni`` or ``no VNNI (AVX2 int8 kernels can saturate)``."""

    supported: bool | None
    detail: str
    machine: str


@dataclass(frozen=True)
class Choice:
    """The file that runs and why: ``precision`` (``fp`` or ``int8``) of ``file``, the setting asked for
    (``requested``, from ``source``: ``argument``, ``REDAES_PRECISION`` or ``default``) and ``reason``."""

    file: Path
    precision: str
    requested: str
    source: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "file": str(self.file)}


def requested(precision: str | None) -> tuple[str, str]:
    """``(setting, where it came from)``: the argument, else ``REDAES_PRECISION``, else ``auto``."""
    if precision is not None:
        value, source = precision, "argument"
    elif os.environ.get(ENV, "").strip():
        value, source = os.environ[ENV].strip().lower(), ENV
    else:
        return "auto", "default"
    if value not in PRECISIONS:
        where = "precision" if source == "argument" else ENV
        raise ValueError(f"{where} must be one of {', '.join(PRECISIONS)}, got {value!r}")
    return value, source


def _flags_linux() -> set[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    return flags or None


def _flags_macos() -> set[str] | None:
    """Apple Silicon reports ``hw.optional.arm.FEAT_DotProd``; Intel Macs list ``AVX512VNNI`` in leaf 7."""
    names = {"hw.optional.arm.FEAT_DotProd": "asimddp", "machdep.cpu.leaf7_features": None}
    flags: set[str] = set()
    for key, flag in names.items():
        try:
            out = subprocess.run(["sysctl", "-n", key], capture_output=True, text=True, timeout=5, check=False)
        except (OSError, subprocess.SubprocessError):
            continue
        value = out.stdout.strip()
        if flag and value == "1":
            flags.add(flag)
        elif flag is None and "AVX512VNNI" in value.upper().split():
            flags.add("avx512_vnni")
    return flags if flags else None


def _flags_windows() -> set[str] | None:
    """Windows on ARM says whether it has the dot product; x86 VNNI it does not report (-> unknown)."""
    if platform.machine().lower() not in ("arm64", "aarch64"):
        return None
    try:
        import ctypes

        present = ctypes.windll.kernel32.IsProcessorFeaturePresent(_PF_ARM_DP)  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None
    return {"asimddp"} if present else set()


@functools.cache
def cpu_int8() -> CpuInt8:
    """This CPU's int8 dot-product support, read once per process (see the module docstring)."""
    machine = platform.machine().lower()
    system = platform.system()
    reader = {"Linux": _flags_linux, "Darwin": _flags_macos, "Windows": _flags_windows}.get(system)
    flags = reader() if reader else None
    return classify(machine, flags)


def classify(machine: str, flags: set[str] | None) -> CpuInt8:
    """:class:`CpuInt8` from an architecture name and its feature flags (``None``: unknown)."""
    arm = machine in ("arm64", "aarch64") or machine.startswith("armv8")
    x86 = machine in ("x86_64", "amd64", "x64")
    if flags is None or not (arm or x86):
        return CpuInt8(None, f"unknown ({machine or 'unknown machine'}: CPU features not readable here)", machine)
    wanted = _ARM_DOT if arm else _X86_DOT
    found = [f for f in wanted if f in flags]
    if found:
        return CpuInt8(True, ", ".join(found), machine)
    if arm:
        return CpuInt8(False, "no dot-product instruction (asimddp)", machine)
    return CpuInt8(False, "no VNNI (AVX2 int8 kernels can saturate)", machine)


def choose(folder: Path, precision: str | None, providers: Sequence[str]) -> Choice:
    """The file of the model folder ``folder`` to run for the ``precision`` setting (see the module docstring)."""
    setting, source = requested(precision)
    fp, int8 = folder / FP_FILE, folder / INT8_FILE
    has_int8 = int8.is_file()
    if setting == "fp":
        return Choice(fp, "fp", setting, source, f"{FP_FILE} asked for")
    if setting == "int8":
        if not has_int8:
            raise ModelError(f"{folder}: no {INT8_FILE} ships for this model; use precision 'auto' or 'fp'")
        return Choice(int8, "int8", setting, source, f"{INT8_FILE} asked for")
    if not has_int8:
        return Choice(fp, "fp", setting, source, f"only {FP_FILE} ships for this model")
    if tuple(providers) != (_CPU_PROVIDER,):
        return Choice(fp, "fp", setting, source, f"providers {', '.join(providers)}: int8 is gated on CPU only")
    cpu = cpu_int8()
    if cpu.supported:
        return Choice(int8, "int8", setting, source, f"CPU has an int8 dot product ({cpu.detail})")
    return Choice(fp, "fp", setting, source, f"CPU int8 support: {cpu.detail}")
