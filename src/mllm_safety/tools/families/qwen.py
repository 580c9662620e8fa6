"""Qwen2-VL-7B-Instruct and Qwen2.5-VL-7B-Instruct replicas; their shape settings can be varied (`REAL`, `VARIED`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.compat import allow_processors_without_video
from .shared import CLIP_MEAN, CLIP_STD, QWEN_TOKENIZER, TEXT, npm_tokenizer, template

# the special-token ids both checkpoints' configs carry
IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}

# the settings that change tensor shapes: the checkpoints', and the choices the differential tests draw from
REAL = {"patch_size": 14, "merge_size": 2, "max_pixels": 12845056}
VARIED = {"patch_size": (14, 8), "merge_size": (2, 1), "max_pixels": (12845056, 12544)}


def image_settings(s: dict[str, Any] = REAL) -> dict[str, Any]:
    """The image processor's settings: smart-resize to multiples of 28, CLIP normalisation."""
    return {
        "min_pixels": 3136,
        "max_pixels": s["max_pixels"],
        "patch_size": s["patch_size"],
        "temporal_patch_size": 2,
        "merge_size": s["merge_size"],
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
    }


def text_config() -> dict[str, Any]:
    """The language model's config: the real vocabulary and ids, M-RoPE, tiny sizes."""
    return {
        **TEXT,
        "vocab_size": 152064,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
    }


def vision_config(version: str, s: dict[str, Any] = REAL) -> dict[str, Any]:
    """The vision tower's config, Qwen2-VL's (`version` "2") or Qwen2.5-VL's windowed one, tiny sizes."""
    shape = {"patch_size": s["patch_size"], "spatial_merge_size": s["merge_size"]}
    if version == "2":
        return {
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "temporal_patch_size": 2,
            **shape,
        }
    return {
        "depth": 2,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_heads": 2,
        "out_hidden_size": 64,
        "temporal_patch_size": 2,
        **shape,
        "window_size": 112,
        "fullatt_block_indexes": [1],
        "tokens_per_second": 2,
        "hidden_act": "silu",
    }


def qwen_vl(out: Path, version: str, settings: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Qwen2-VL-7B-Instruct or Qwen2.5-VL-7B-Instruct: ChatML, <|vision_start|><|image_pad|><|vision_end|>,
    smart-resize to multiples of 28 (min 3136, max 12845056 pixels), M-RoPE."""
    import transformers as tf

    s = {**REAL, **(settings or {})}
    allow_processors_without_video()
    checkpoint = "Qwen2-VL-7B-Instruct" if version == "2" else "Qwen2.5-VL-7B-Instruct"
    tokenizer = npm_tokenizer(out, "tokenizer-qwen3", QWEN_TOKENIZER, keep_up_to=151656 if version == "2" else 151664)
    images = tf.Qwen2VLImageProcessorPil(**image_settings(s))
    processor_cls = tf.Qwen2VLProcessor if version == "2" else tf.Qwen2_5_VLProcessor
    processor = processor_cls(
        image_processor=images, tokenizer=tokenizer, video_processor=None, chat_template=template(checkpoint)
    )
    text, vision = text_config(), vision_config(version, s)
    if version == "2":
        model = tf.Qwen2VLForConditionalGeneration(tf.Qwen2VLConfig(text_config=text, vision_config=vision, **IDS))
    else:
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **IDS)
        model = tf.Qwen2_5_VLForConditionalGeneration(config)
    return model, processor
