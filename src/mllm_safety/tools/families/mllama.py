"""The Llama-3.2-11B-Vision-Instruct (Mllama) replica."""

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


def model_config() -> dict[str, Any]:
    """MllamaConfig's arguments: a tiled vision tower and a text model with one cross-attention layer, tiny sizes."""
    vision = {
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_global_layers": 1,
        "attention_heads": 2,
        "intermediate_size": 64,
        "vision_output_dim": 96,
        "image_size": 560,
        "patch_size": 14,
        "max_num_tiles": 4,
        "intermediate_layers_indices": [0, 1],
        "supported_aspect_ratios": [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]],
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


def mllama(out: Path) -> tuple[Any, Any]:
    """Llama-3.2-11B-Vision-Instruct: one <|image|> per image, cross-attention layers, 4 tiles of 560 px."""
    import transformers as tf

    tokenizer = npm_tokenizer(
        out, "tokenizer-llama3_1", TOKENIZER, extra=((128256, "<|image|>", True),), rename=LLAMA31_NAMES
    )
    images = tf.MllamaImageProcessorPil(
        size={"height": 560, "width": 560},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_pad=True,
        max_image_tiles=4,
        resample=2,
    )
    processor = tf.MllamaProcessor(
        image_processor=images, tokenizer=tokenizer, chat_template=template("Llama-3.2-11B-Vision-Instruct")
    )
    return tf.MllamaForConditionalGeneration(tf.MllamaConfig(**model_config())), processor
