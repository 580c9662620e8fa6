"""`python -m mllm_safety.ablations`: stage 05's command line (guarded: the local engine's spawned workers import
the package, never this entry point)."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
