"""`python -m mllm_safety.ablations`: stage 05's command line."""

from . import main

raise SystemExit(main())
