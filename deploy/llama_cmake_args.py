"""CMAKE_ARGS for building llama-cpp-python on this machine: portable (`GGML_NATIVE=OFF`) plus the AVX-512 and VNNI
extensions /proc/cpuinfo reports. Stdlib only: `make install` runs it before the virtual environment exists.

Why not `-DGGML_NATIVE=ON`: -march=native also compiles llama.cpp's AMX kernels, and those crashed (SIGSEGV in the
first decode) with the bundled Gemma 3 model on a Sapphire Rapids VM. The extensions below read prompts 1.4-1.6x as
fast as the portable build there (docs/benchmarks.md). A CPU without them (or a Mac) gets the portable build."""

from __future__ import annotations

import sys
from pathlib import Path

PORTABLE = "-DGGML_NATIVE=OFF"
# /proc/cpuinfo flag -> llama.cpp's CMake option (AVX2, FMA, F16C, BMI2 are on in the portable build already)
EXTENSIONS = {"avx_vnni": "GGML_AVX_VNNI", "avx512f": "GGML_AVX512", "avx512vbmi": "GGML_AVX512_VBMI",
              "avx512_vnni": "GGML_AVX512_VNNI", "avx512_bf16": "GGML_AVX512_BF16"}


def cpu_flags(cpuinfo: str) -> set[str]:
    """The first CPU's feature flags."""
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cmake_args(flags: set[str]) -> str:
    extensions = [f"-D{option}=ON" for flag, option in EXTENSIONS.items() if flag in flags]
    return " ".join([PORTABLE, *extensions])


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "/proc/cpuinfo")
    print(cmake_args(cpu_flags(path.read_text()) if path.is_file() else set()))


if __name__ == "__main__":
    main()
