"""The llava-onevision-qwen2-7b-ov-hf replica."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.compat import allow_processors_without_video
from .shared import HALF, QWEN_TOKENIZER, TEXT, VISION, npm_tokenizer, template


def onevision_pinpoints() -> list[list[int]]:
    """LLaVA-OneVision's any-resolution grid: every pair of multiples of 384 up to 2304."""
    sides = [384 * k for k in range(1, 7)]
    return [[h, w] for h in sides for w in sides]


def image_settings() -> dict[str, Any]:
    """The image processor's settings: SigLIP 384 px, bicubic, padded onto the any-resolution grid."""
    return {
        "size": {"height": 384, "width": 384},
        "image_mean": HALF,
        "image_std": HALF,
        "resample": 3,
        "do_pad": True,
        "image_grid_pinpoints": onevision_pinpoints(),
    }


def model_config() -> dict[str, Any]:
    """LlavaOnevisionConfig's arguments: SigLIP and Qwen2 (tiny sizes), the real ids, anyres_max_9."""
    vision = {
        **VISION,
        "model_type": "siglip_vision_model",
        "image_size": 384,
        "patch_size": 14,
        "vision_use_head": False,
    }
    text = {**TEXT, "model_type": "qwen2", "vocab_size": 152128, "bos_token_id": 151643, "eos_token_id": 151645}
    return {
        "vision_config": vision,
        "text_config": text,
        "image_token_index": 151646,
        "video_token_index": 151647,
        "vision_feature_select_strategy": "full",
        "vision_feature_layer": -1,
        "image_grid_pinpoints": onevision_pinpoints(),
        "vision_aspect_ratio": "anyres_max_9",
        "tie_word_embeddings": False,
    }


def llava_onevision(out: Path) -> tuple[Any, Any]:
    """llava-onevision-qwen2-7b-ov-hf: ChatML with <image>, SigLIP 384, any-resolution up to anyres_max_9."""
    import transformers as tf

    allow_processors_without_video()
    extra = ((151646, "<image>", True), (151647, "<video>", True))
    tokenizer = npm_tokenizer(out, "tokenizer-qwen3", {**QWEN_TOKENIZER, "padding_side": "left"}, 151645, extra)
    images = tf.LlavaOnevisionImageProcessorPil(**image_settings())
    processor = tf.LlavaOnevisionProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=None,
        num_image_tokens=729,
        vision_feature_select_strategy="full",
        chat_template=template("llava-onevision-qwen2-7b-ov-hf"),
    )
    config = tf.LlavaOnevisionConfig(**model_config())
    return tf.LlavaOnevisionForConditionalGeneration(config), processor
