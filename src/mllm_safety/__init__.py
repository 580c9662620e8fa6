"""Do multimodal LLMs need curated malicious data to be safety-aligned? A reproducible toolkit."""

__version__ = "0.1.0"
