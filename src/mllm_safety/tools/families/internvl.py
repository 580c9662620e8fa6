"""The InternVL3-8B-hf replica; its shape settings can be varied (`REAL`, `VARIED`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.compat import allow_processors_without_video
from .shared import QWEN_TOKENIZER, TEXT, VISION, npm_tokenizer, template

# the checkpoint's added tokens past Qwen's, from id 151665 up (<IMG_CONTEXT> is 151667)
NAMES = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
TOKENIZER = {
    **QWEN_TOKENIZER,
    "model_max_length": 8192,
    "extra_special_tokens": {
        "start_image_token": "<img>",
        "end_image_token": "</img>",
        "context_image_token": "<IMG_CONTEXT>",
        "video_token": "<video>",
    },
}
# the settings that change tensor shapes: the checkpoint's, and the choices the differential tests draw from
REAL = {"image_size": 448, "patch_size": 14, "max_patches": 12}
VARIED = {"image_size": (28, 56), "patch_size": (14, 7), "max_patches": (12, 2)}  # patches per side stay even


def image_tokens(s: dict[str, Any]) -> int:
    """<IMG_CONTEXT> tokens per tile: the tower's patches, pixel-shuffled by the downsample ratio 0.5 (256)."""
    return (s["image_size"] // s["patch_size"] // 2) ** 2


def image_settings(s: dict[str, Any] = REAL) -> dict[str, Any]:
    """The image processor's settings: 448 px tiles, ImageNet normalisation, up to 12 tiles."""
    return {
        "size": {"height": s["image_size"], "width": s["image_size"]},
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "crop_to_patches": False,
        "min_patches": 1,
        "max_patches": s["max_patches"],
    }


def model_config(s: dict[str, Any] = REAL) -> dict[str, Any]:
    """InternVLConfig's arguments: the vision tower and language model (tiny sizes), the real ids and geometry."""
    vision = {
        **VISION,
        "image_size": [s["image_size"]] * 2,
        "patch_size": [s["patch_size"]] * 2,
        "use_absolute_position_embeddings": True,
        "norm_type": "layer_norm",
        "use_mean_pooling": True,
    }
    text = {
        **TEXT,
        "model_type": "qwen2",
        "vocab_size": 151674,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "tie_word_embeddings": False,
    }
    return {
        "vision_config": vision,
        "text_config": text,
        "image_token_id": 151667,
        "image_seq_length": image_tokens(s),
        "downsample_ratio": 0.5,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": False,
    }


def internvl(out: Path, settings: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """InternVL3-8B-hf: ChatML, <img><IMG_CONTEXT>x256 per 448 px tile</img>, up to 12 tiles and a thumbnail."""
    import transformers as tf

    s = {**REAL, **(settings or {})}
    allow_processors_without_video()
    extra = tuple((151665 + i, name, True) for i, name in enumerate(NAMES))
    tokenizer = npm_tokenizer(out, "tokenizer-qwen3", TOKENIZER, keep_up_to=151664, extra=extra)
    images = tf.GotOcr2ImageProcessorPil(**image_settings(s))
    processor = tf.InternVLProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=None,
        image_seq_length=image_tokens(s),
        chat_template=template("InternVL3-8B-hf"),
    )
    return tf.InternVLForConditionalGeneration(tf.InternVLConfig(**model_config(s))), processor
