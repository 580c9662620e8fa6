"""`python -m mllm_safety.model_organism`: stage 00's command line."""

from . import main

raise SystemExit(main())
