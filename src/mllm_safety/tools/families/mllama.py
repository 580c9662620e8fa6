"""The Llama-3.2-11B-Vision-Instruct (Mllama) replica; its shape settings can be varied (`REAL`, `VARIED`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .shared import CLIP_MEAN, CLIP_STD, LLAMA31_NAMES, TEXT, npm_tokenizer, template

TOKENIZER = {
    "tokenizer_class": "PreTrainedTokenizerFast",
    "bos_token": "<|begin_of_text|>",
    "eos_token": "<|eot_id|>",
    "pad_token": "<|finetune_right_pad_id|>",
    "model_max_length": 131072,
    "model_input_names": ["input_ids", "attention_mask"],
}
# the settings that change tensor shapes: the checkpoint's, and the choices the differential tests draw from
REAL = {"image_size": 560, "patch_size": 14, "max_image_tiles": 4}
VARIED = {"image_size": (28, 56), "patch_size": (14, 7), "max_image_tiles": (1, 2, 4)}


def aspect_ratios(tiles: int) -> list[list[int]]:
    """Every tile layout (rows, columns) of at most `tiles` tiles: the checkpoint's eight for 4."""
    return [[h, w] for h in range(1, tiles + 1) for w in range(1, tiles + 1) if h * w <= tiles]


def model_config(s: dict[str, Any] = REAL) -> dict[str, Any]:
    """MllamaConfig's arguments: a tiled vision tower and a text model with one cross-attention layer, tiny sizes."""
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_global_layers": 1,
        "attention_heads": 2,
        "intermediate_size": 64,
        "vision_output_dim": 96,
        "image_size": s["image_size"],
        "patch_size": s["patch_size"],
        "max_num_tiles": s["max_image_tiles"],
        "intermediate_layers_indices": [0, 1],
        "supported_aspect_ratios": aspect_ratios(s["max_image_tiles"]),
    }
    text = {
        **TEXT,
        "vocab_size": 128256,
        "num_hidden_layers": 3,
        "cross_attention_layers": [1],
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "pad_token_id": 128004,
    }
    return {"vision_config": vision, "text_config": text, "image_token_index": 128256}


def mllama(out: Path, settings: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Llama-3.2-11B-Vision-Instruct: one <|image|> per image, cross-attention layers, 4 tiles of 560 px."""
    import transformers as tf

    s = {**REAL, **(settings or {})}
    tokenizer = npm_tokenizer(
        out, "tokenizer-llama3_1", TOKENIZER, extra=((128256, "<|image|>", True),), rename=LLAMA31_NAMES
    )
    images = tf.MllamaImageProcessorPil(
        size={"height": s["image_size"], "width": s["image_size"]},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_pad=True,
        max_image_tiles=s["max_image_tiles"],
        resample=2,
    )
    processor = tf.MllamaProcessor(
        image_processor=images, tokenizer=tokenizer, chat_template=template("Llama-3.2-11B-Vision-Instruct")
    )
    return tf.MllamaForConditionalGeneration(tf.MllamaConfig(**model_config(s))), processor
