"""`python -m mllm_safety.figures`: stage 06's command line."""

from . import main

raise SystemExit(main())
