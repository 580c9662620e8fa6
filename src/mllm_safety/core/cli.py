"""The command line every stage shares, and its error boundary.

Expected errors (bad data, a bad preset, a missing file, an existing output) print one line naming the file,
record or key, the problem and the fix, and exit with status 2; Ctrl-C exits with 130 and says how to resume.
Anything else keeps its traceback: a bug is a bug.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from typing import Any

from .config import StageConfig
from .console import quiet_known_warnings
from .files import DataFormatError
from .preset import Preset

# Errors in what the user gave us (files, presets, sizes) and in the file system (a folder that cannot be written):
# a CLI prints the message and exits 2, no traceback. Anything else is a bug and keeps its traceback.
USER_ERRORS = (
    DataFormatError,
    FileExistsError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def describe(error: Exception) -> str:
    """One line: our errors carry their own message; the file system's get the path, the problem and a fix."""
    if isinstance(error, OSError) and not isinstance(error, FileExistsError | FileNotFoundError) and error.filename:
        return f"{error.filename}: {error.strerror}. Fix: check that the folder exists and can be written"
    return str(error)


def run_cli(action: Callable[[], object]) -> int:
    """Run a CLI's work; a user error prints one line and returns 2, an interrupt returns 130."""
    try:
        action()
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; resume with the same command", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"error: {describe(e)}", file=sys.stderr)
        return 2
    return 0


def stage_parser(prog: str, doc: str | None) -> argparse.ArgumentParser:
    """--preset and --overwrite, the two flags of every stage."""
    p = argparse.ArgumentParser(prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="toy", help="a name in params/ or a path to a preset .yaml (default: toy)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run made with a different config")
    return p


def stage_main(cls: type[StageConfig], run: Callable[..., Any], argv: list[str] | None, prog: str, doc: str) -> int:
    """Read the preset once, run the stage on it (`run(preset)`), print the folder the stage wrote."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    quiet_known_warnings()
    args = stage_parser(prog, doc).parse_args(argv)

    def work() -> None:
        preset = Preset.load(args.preset)
        run(preset, overwrite=args.overwrite)
        print(preset.stage(cls.stage).stage_dir)

    return run_cli(work)
