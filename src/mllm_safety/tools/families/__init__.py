"""Tiny replicas of today's open MLLM families, used by `tools.replicas`. For each family: the checkpoint's tokenizer
(a registry package's real tokenizer.json where one exists, trimmed to or extended with the checkpoint's added
tokens), its chat template (`replica_specs/<checkpoint>/chat_template.jinja`), its processor class and image-processor
settings, and a model config that keeps the real token ids and image geometry but shrinks widths and depths.

Where each family's files and settings come from is in replica_specs/README.md; a setting that no public file states
verbatim is marked "reconstructed" there. Modules: `shared` (sizes, constants, tokenizer builders), then one per
family group: `qwen`, `internvl`, `llava_onevision`, `gemma` (Gemma 3, PaliGemma), `idefics` (Idefics3, SmolVLM),
`mllama`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .gemma import gemma3, paligemma
from .idefics import idefics3
from .internvl import internvl
from .llava_onevision import llava_onevision
from .mllama import mllama
from .qwen import qwen_vl

__all__ = ["FAMILIES"]

# family -> (the checkpoint it stands for, builder)
FAMILIES: dict[str, tuple[str, Callable[[Path], tuple[Any, Any]]]] = {
    "qwen2-vl": ("Qwen/Qwen2-VL-7B-Instruct", lambda out: qwen_vl(out, "2")),
    "qwen2.5-vl": ("Qwen/Qwen2.5-VL-7B-Instruct", lambda out: qwen_vl(out, "2.5")),
    "internvl": ("OpenGVLab/InternVL3-8B-hf", internvl),
    "llava-onevision": ("llava-hf/llava-onevision-qwen2-7b-ov-hf", llava_onevision),
    "gemma3": ("google/gemma-3-4b-it", gemma3),
    "idefics3": ("HuggingFaceM4/Idefics3-8B-Llama3", idefics3),
    "smolvlm": ("HuggingFaceTB/SmolVLM-256M-Instruct", lambda out: idefics3(out, smolvlm=True)),
    "mllama": ("meta-llama/Llama-3.2-11B-Vision-Instruct", mllama),
    "paligemma": ("google/paligemma2-3b-mix-224", paligemma),
}
