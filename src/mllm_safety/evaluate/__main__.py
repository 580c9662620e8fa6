"""`python -m mllm_safety.evaluate`: stage 04's command line."""

from . import main

raise SystemExit(main())
