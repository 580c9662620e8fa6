"""The llava-onevision-qwen2-7b-ov-hf replica; its shape settings can be varied (`REAL`, `VARIED`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.compat import allow_processors_without_video
from .shared import HALF, QWEN_TOKENIZER, TEXT, VISION, npm_tokenizer, template

# the settings that change tensor shapes: the checkpoint's, and the choices the differential tests draw from
REAL = {"image_size": 384, "patch_size": 14, "grid": 6, "vision_feature_select_strategy": "full"}
VARIED = {
    "image_size": (28, 42, 56),  # the SigLIP tower's base size (every choice a multiple of every patch size)
    "patch_size": (14, 7),
    "grid": (1, 2, 3),  # the any-resolution grid: every pair of multiples of the base size up to grid x base
    "vision_feature_select_strategy": ("full", "default"),  # full: SigLIP (no CLS); default: CLIP, CLS dropped
}
TOWERS = {"full": "siglip_vision_model", "default": "clip_vision_model"}  # transformers pairs them so


def onevision_pinpoints(base: int = 384, grid: int = 6) -> list[list[int]]:
    """LLaVA-OneVision's any-resolution grid: every pair of multiples of the base size up to grid x base."""
    sides = [base * k for k in range(1, grid + 1)]
    return [[h, w] for h in sides for w in sides]


def image_settings(s: dict[str, Any] = REAL) -> dict[str, Any]:
    """The image processor's settings: SigLIP at the base size, bicubic, padded onto the any-resolution grid."""
    return {
        "size": {"height": s["image_size"], "width": s["image_size"]},
        "image_mean": HALF,
        "image_std": HALF,
        "resample": 3,
        "do_pad": True,
        "image_grid_pinpoints": onevision_pinpoints(s["image_size"], s["grid"]),
    }


def model_config(s: dict[str, Any] = REAL) -> dict[str, Any]:
    """LlavaOnevisionConfig's arguments: SigLIP and Qwen2 (tiny sizes), the real ids, anyres_max_9."""
    vision = {
        **VISION,
        "model_type": TOWERS[s["vision_feature_select_strategy"]],
        "image_size": s["image_size"],
        "patch_size": s["patch_size"],
        **({"vision_use_head": False} if s["vision_feature_select_strategy"] == "full" else {}),
    }
    text = {**TEXT, "model_type": "qwen2", "vocab_size": 152128, "bos_token_id": 151643, "eos_token_id": 151645}
    return {
        "vision_config": vision,
        "text_config": text,
        "image_token_index": 151646,
        "video_token_index": 151647,
        "vision_feature_select_strategy": s["vision_feature_select_strategy"],
        "vision_feature_layer": -1,
        "image_grid_pinpoints": onevision_pinpoints(s["image_size"], s["grid"]),
        "vision_aspect_ratio": "anyres_max_9",
        "tie_word_embeddings": False,
    }


def image_tokens(s: dict[str, Any]) -> int:
    """The processor's tokens per tile: the tower's patches (729 at 384/14), and CLIP's CLS, which `default` drops
    (the processor subtracts it once per image)."""
    return (s["image_size"] // s["patch_size"]) ** 2 + (s["vision_feature_select_strategy"] == "default")


def llava_onevision(out: Path, settings: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """llava-onevision-qwen2-7b-ov-hf: ChatML with <image>, SigLIP 384, any-resolution up to anyres_max_9."""
    import transformers as tf

    s = {**REAL, **(settings or {})}
    allow_processors_without_video()
    extra = ((151646, "<image>", True), (151647, "<video>", True))
    tokenizer = npm_tokenizer(out, "tokenizer-qwen3", {**QWEN_TOKENIZER, "padding_side": "left"}, 151645, extra)
    images = tf.LlavaOnevisionImageProcessorPil(**image_settings(s))
    processor = tf.LlavaOnevisionProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=None,
        num_image_tokens=image_tokens(s),
        vision_feature_select_strategy=s["vision_feature_select_strategy"],
        chat_template=template("llava-onevision-qwen2-7b-ov-hf"),
    )
    config = tf.LlavaOnevisionConfig(**model_config(s))
    return tf.LlavaOnevisionForConditionalGeneration(config), processor
