"""Tiny replicas of today's open MLLM families, used by `tools.replicas`. For each family: the checkpoint's tokenizer
(a registry package's real tokenizer.json where one exists, trimmed to or extended with the checkpoint's added
tokens), its chat template (`replica_specs/<checkpoint>/chat_template.jinja`), its processor class and image-processor
settings, and a model config that keeps the real token ids and image geometry but shrinks widths and depths.

Where each family's files and settings come from is in replica_specs/README.md; a setting that no public file states
verbatim is marked "reconstructed" there. Modules: `shared` (sizes, constants, tokenizer builders), then one per
family group: `qwen`, `internvl`, `llava_onevision`, `gemma` (Gemma 3, PaliGemma), `idefics` (Idefics3, SmolVLM),
`mllama`; `llava` holds only the shape settings of LLaVA-1.5 and LLaVA-NeXT, whose replicas `tools.replicas` builds
from their spec folders.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import gemma as gemma_module
from . import idefics as idefics_module
from . import internvl as internvl_module
from . import llava as llava_module
from . import llava_onevision as onevision_module
from . import mllama as mllama_module
from . import qwen as qwen_module
from .gemma import gemma3, paligemma
from .idefics import idefics3
from .internvl import internvl
from .llava_onevision import llava_onevision
from .mllama import mllama
from .qwen import qwen_vl

__all__ = ["FAMILIES", "SHAPES"]

Settings = dict[str, Any]
# family -> (the checkpoint it stands for, builder of (model, processor) from a folder and shape settings)
FAMILIES: dict[str, tuple[str, Callable[[Path, Settings | None], tuple[Any, Any]]]] = {
    "qwen2-vl": ("Qwen/Qwen2-VL-7B-Instruct", lambda out, s=None: qwen_vl(out, "2", s)),
    "qwen2.5-vl": ("Qwen/Qwen2.5-VL-7B-Instruct", lambda out, s=None: qwen_vl(out, "2.5", s)),
    "internvl": ("OpenGVLab/InternVL3-8B-hf", internvl),
    "llava-onevision": ("llava-hf/llava-onevision-qwen2-7b-ov-hf", llava_onevision),
    "gemma3": ("google/gemma-3-4b-it", gemma3),
    "idefics3": ("HuggingFaceM4/Idefics3-8B-Llama3", idefics3),
    "smolvlm": ("HuggingFaceTB/SmolVLM-256M-Instruct", lambda out, s=None: idefics3(out, s, smolvlm=True)),
    "mllama": ("meta-llama/Llama-3.2-11B-Vision-Instruct", mllama),
    "paligemma": ("google/paligemma2-3b-mix-224", lambda out, s=None: paligemma(out)),
}
# family -> (the checkpoint's shape settings, the choices a varied replica draws from); absent: not varied yet
SHAPES: dict[str, tuple[Settings, dict[str, tuple[Any, ...]]]] = {
    "llava-1.5": (llava_module.REAL, llava_module.VARIED),
    "llava-next": (llava_module.NEXT_REAL, llava_module.NEXT_VARIED),
    "qwen2-vl": (qwen_module.REAL, qwen_module.VARIED),
    "qwen2.5-vl": (qwen_module.REAL, qwen_module.VARIED),
    "internvl": (internvl_module.REAL, internvl_module.VARIED),
    "llava-onevision": (onevision_module.REAL, onevision_module.VARIED),
    "gemma3": (gemma_module.REAL, gemma_module.VARIED),
    "idefics3": (idefics_module.real(idefics_module.IDEFICS3), idefics_module.VARIED),
    "smolvlm": (idefics_module.real(idefics_module.SMOLVLM), idefics_module.VARIED),
    "mllama": (mllama_module.REAL, mllama_module.VARIED),
}
