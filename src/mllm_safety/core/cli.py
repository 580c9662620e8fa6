"""The command line every stage shares, and its error boundary.

Expected errors (bad data, a bad preset, a missing file, an existing output, a full or read-only disk) print one
line naming the file, record or key, the problem and the fix, and exit with status 2; Ctrl-C exits with 130 and
says how to resume. Anything else keeps its traceback: a bug is a bug.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Callable
from typing import Any

from .config import StageConfig
from .console import quiet_known_warnings
from .files import DataFormatError
from .preset import Preset

# Errors in what the user gave us (files, presets, sizes): a CLI prints the message and exits 2, no traceback.
USER_ERRORS = (
    DataFormatError,
    FileExistsError,
    FileNotFoundError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)
# The file system's refusals, whatever OSError carries them (a write() on a full disk names no path): errno -> fix.
# Any other OSError keeps its traceback.
FILE_SYSTEM_FIXES = {
    errno.ENOSPC: "free space on that disk (or point runs_root elsewhere), then resume with the same command",
    errno.EDQUOT: "free space within your disk quota, then resume with the same command",
    errno.EROFS: "the disk is read-only: point runs_root (or --output) at a writable folder",
    errno.EFBIG: "the file is larger than the file system allows: write to another disk",
    errno.ENAMETOOLONG: "use a shorter name or folder",
}
WRITABLE_FIX = "check that the folder exists and can be written"


def is_user_error(error: BaseException) -> bool:
    """True for the errors a CLI reports in one line: ours, and the file system's known refusals."""
    return isinstance(error, USER_ERRORS) or (isinstance(error, OSError) and error.errno in FILE_SYSTEM_FIXES)


def describe(error: Exception) -> str:
    """One line: our errors carry their own message; the file system's get the path, the problem and a fix."""
    ours = not isinstance(error, OSError) or isinstance(error, FileExistsError | FileNotFoundError)
    if ours or error.errno is None:  # a message of ours, or an OSError raised with a message only
        return str(error)
    fix = FILE_SYSTEM_FIXES.get(error.errno, WRITABLE_FIX)
    return f"{error.filename or 'a file (path not known)'}: {error.strerror}. Fix: {fix}"


def run_cli(action: Callable[[], object]) -> int:
    """Run a CLI's work; a user error prints one line and returns 2, an interrupt returns 130."""
    try:
        action()
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; resume with the same command", file=sys.stderr)
        return 130
    except Exception as e:
        if not is_user_error(e):
            raise  # a bug keeps its traceback
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
