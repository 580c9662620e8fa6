"""Do multimodal LLMs need curated malicious data to be safety-aligned? A reproducible toolkit."""

from .core import numerics

numerics.pin()  # before anything loads torch: one set of CPU kernels on every x86-64 machine (core.numerics)

from .core.console import quiet_known_warnings  # noqa: E402

__version__ = "0.1.0"

quiet_known_warnings()  # a few known, harmless library messages (listed in core.console) stay out of the way
