"""Write a FigStep or MM-SafetyBench benchmark folder from a CSV of instructions / key phrases, in the layout
`load_benchmark` reads back; the images are drawn by `core.typography` (docs/protocol.md §5).

Fonts: FigStep uses FreeMonoBold (Debian `fonts-freefont-ttf`), MM-SafetyBench copies use Arial. When a font
is not installed we fall back to DejaVu (Debian `fonts-dejavu-core`), then to Pillow's bundled font; the font
actually used is written to `typography.json` in every folder we create.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..core.benchmarks import FIGSTEP_COLUMNS, read_csv
from ..core.cli import run_cli
from ..core.typography import MMSB_COLUMNS, write_figstep, write_mm_safetybench


def read_rows(path: str | Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of an input CSV, failing clearly on missing columns."""
    return read_csv(Path(path), required)


def main(argv: list[str] | None = None) -> int:
    """CLI: write a FigStep or MM-SafetyBench folder from a CSV of instructions / key phrases."""
    p = argparse.ArgumentParser(prog="python -m mllm_safety.tools.typography", description=__doc__)
    p.add_argument("layout", choices=("figstep", "mm_safetybench"))
    p.add_argument("--csv", required=True, help=f"figstep: columns {FIGSTEP_COLUMNS}; mm_safetybench: {MMSB_COLUMNS}")
    p.add_argument("--out", required=True, help="the benchmark folder to create")
    p.add_argument("--size", type=int, default=None, help="canvas size (figstep 760, SD pictures 1024)")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)

    def write() -> None:
        if args.layout == "figstep":
            print(write_figstep(read_rows(args.csv, FIGSTEP_COLUMNS), args.out, args.size or 760, args.overwrite))
        else:
            print(write_mm_safetybench(read_rows(args.csv, MMSB_COLUMNS), args.out, args.size or 1024, args.overwrite))

    return run_cli(write)


if __name__ == "__main__":
    sys.exit(main())
