"""`python -m mllm_safety.qlora_finetune`: stage 03's command line."""

from . import main

raise SystemExit(main())
