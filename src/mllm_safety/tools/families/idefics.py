"""The Idefics3-8B-Llama3 and SmolVLM-256M-Instruct replicas (one architecture, two tokenizers and geometries);
their shape settings can be varied (`real`, `VARIED`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .shared import HALF, LLAMA31_NAMES, TEXT, VISION, npm_tokenizer, smollm_standin_tokenizer, template

IDEFICS3_TOKENIZER = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<end_of_utterance>",
    "pad_token": "<|reserved_special_token_0|>",
    "model_max_length": 131072,
}
IDEFICS3_EXTRA = (
    (128256, "<fake_token_around_image>", True),
    (128257, "<image>", True),
    (128258, "<end_of_utterance>", True),
)


@dataclass(frozen=True)
class Variant:
    """What differs between the two checkpoints besides the tokenizer."""

    checkpoint: str  # folder under replica_specs/
    tile: int  # tile side in pixels (the vision tower's image size)
    seq: int  # image tokens per tile
    longest: int  # the longest edge an image is resized to
    scale: int  # the pixel-shuffle scale factor
    text_ids: dict[str, int]  # the language model's vocabulary size and special ids
    image_id: int
    patch: int


IDEFICS3 = Variant(
    checkpoint="Idefics3-8B-Llama3",
    tile=364,
    seq=169,
    longest=1456,
    scale=2,
    text_ids={"vocab_size": 128259, "bos_token_id": 128000, "eos_token_id": 128258, "pad_token_id": 128002},
    image_id=128257,
    patch=14,
)
SMOLVLM = Variant(
    checkpoint="SmolVLM-256M-Instruct",
    tile=512,
    seq=64,
    longest=2048,
    scale=4,
    text_ids={"vocab_size": 49280, "bos_token_id": 1, "eos_token_id": 49279, "pad_token_id": 2},
    image_id=49190,
    patch=16,
)


# the choices the differential tests draw from (tokens per tile and the longest edge follow)
VARIED = {"image_size": (28, 56), "patch_size": (14, 7), "scale_factor": (1, 2), "tiles_per_side": (1, 2, 4)}


def real(variant: Variant) -> dict[str, Any]:
    """The checkpoint's shape settings: tile size, patch size, pixel-shuffle scale, tiles along the longest edge."""
    return {
        "image_size": variant.tile,
        "patch_size": variant.patch,
        "scale_factor": variant.scale,
        "tiles_per_side": variant.longest // variant.tile,
    }


def varied(variant: Variant, s: dict[str, Any]) -> Variant:
    """The variant with other shape settings: 169 tokens per 364 px tile at patch 14 and scale 2."""
    seq = (s["image_size"] // s["patch_size"] // s["scale_factor"]) ** 2
    longest = s["image_size"] * s["tiles_per_side"]
    return replace(
        variant, tile=s["image_size"], patch=s["patch_size"], scale=s["scale_factor"], seq=seq, longest=longest
    )


def image_settings(variant: Variant) -> dict[str, Any]:
    """The image processor's settings: resized to the longest edge, split into tiles, bilinear, [-1, 1]."""
    return {
        "size": {"longest_edge": variant.longest},
        "max_image_size": {"longest_edge": variant.tile},
        "do_image_splitting": True,
        "resample": 1,
        "image_mean": HALF,
        "image_std": HALF,
    }


def idefics3(out: Path, settings: dict[str, Any] | None = None, smolvlm: bool = False) -> tuple[Any, Any]:
    """Idefics3-8B-Llama3 (Llama 3.1 tokenizer, 364 px tiles, 169 tokens each) or SmolVLM-256M-Instruct (the same
    architecture with SmolLM2's tokenizer ids, 512 px tiles, 64 tokens each)."""
    import transformers as tf

    if smolvlm:
        variant, tokenizer = SMOLVLM, smollm_standin_tokenizer(out)
    else:
        variant = IDEFICS3
        tokenizer = npm_tokenizer(
            out, "tokenizer-llama3_1", IDEFICS3_TOKENIZER, extra=IDEFICS3_EXTRA, rename=LLAMA31_NAMES
        )
    variant = varied(variant, {**real(variant), **(settings or {})})
    images = tf.Idefics3ImageProcessorPil(**image_settings(variant))
    processor = tf.Idefics3Processor(
        image_processor=images,
        tokenizer=tokenizer,
        image_seq_len=variant.seq,
        chat_template=template(variant.checkpoint),
    )
    config = tf.Idefics3Config(
        vision_config={**VISION, "image_size": variant.tile, "patch_size": variant.patch},
        text_config={**TEXT, "model_type": "llama", **variant.text_ids},
        image_token_id=variant.image_id,
        scale_factor=variant.scale,
        tie_word_embeddings=False,
    )
    return tf.Idefics3ForConditionalGeneration(config), processor
