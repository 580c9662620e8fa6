"""The gemma-3-4b-it and paligemma2-3b-mix-224 replicas."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...core.assets import asset_file
from .shared import HALF, TEXT, VISION, npm_tokenizer, template

# PaliGemma's added tokens past Gemma's: 1024 <locNNNN>, 128 <segNNN>, then <image>
PALIGEMMA_EXTRA = (
    tuple((256000 + i, f"<loc{i:0>4}>", False) for i in range(1024))
    + tuple((257024 + i, f"<seg{i:0>3}>", False) for i in range(128))
    + ((257152, "<image>", True),)
)
PALIGEMMA_TOKENIZER = {
    "tokenizer_class": "GemmaTokenizer",
    "bos_token": "<bos>",
    "eos_token": "<eos>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
    "add_bos_token": True,
    "add_eos_token": False,
    "extra_special_tokens": {"image_token": "<image>"},
}


def gemma3_tokenizer(out: Path) -> Any:
    """The registry's Gemma 3 tokenizer, its tokenizer.json and tokenizer_config.json copied as shipped."""
    from transformers import AutoTokenizer

    folder = out / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes(asset_file("tokenizer-gemma3", f"package/models/{name}").read_bytes())
    return AutoTokenizer.from_pretrained(folder)


# Gemma 3's settings that change tensor shapes: the checkpoint's, and the choices the differential tests draw from
REAL = {"image_size": 896, "patch_size": 14, "mm_tokens_per_image": 256}
VARIED = {"image_size": (56, 112), "patch_size": (14, 7), "mm_tokens_per_image": (4, 16)}  # a square that pools


def gemma3_config(s: dict[str, Any] = REAL) -> dict[str, Any]:
    """Gemma3Config's arguments: Gemma 3 text (sliding and full attention) and SigLIP 896, tiny sizes, real ids."""
    text = {
        **TEXT,
        "vocab_size": 262208,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "query_pre_attn_scalar": 32,
        "sliding_window": 1024,
        "layer_types": ["sliding_attention", "full_attention"],
    }
    vision = {
        **VISION,
        "model_type": "siglip_vision_model",
        "image_size": s["image_size"],
        "patch_size": s["patch_size"],
        "vision_use_head": False,
    }
    return {
        "text_config": text,
        "vision_config": vision,
        "mm_tokens_per_image": s["mm_tokens_per_image"],
        "boi_token_index": 255999,
        "eoi_token_index": 256000,
        "image_token_index": 262144,
    }


def gemma3(out: Path, settings: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """gemma-3-4b-it: the registry's Gemma 3 tokenizer as shipped, <start_of_image> + 256 soft tokens, SigLIP 896."""
    import transformers as tf

    s = {**REAL, **(settings or {})}
    tokenizer = gemma3_tokenizer(out)
    images = tf.Gemma3ImageProcessorPil(
        size={"height": s["image_size"], "width": s["image_size"]},
        image_mean=HALF,
        image_std=HALF,
        resample=2,
        do_pan_and_scan=None,
    )
    processor = tf.Gemma3Processor(
        image_processor=images,
        tokenizer=tokenizer,
        image_seq_length=s["mm_tokens_per_image"],
        chat_template=template("gemma-3-4b-it"),
    )
    model = tf.Gemma3ForConditionalGeneration(tf.Gemma3Config(**gemma3_config(s)))
    model.generation_config.eos_token_id = [1, 106]  # <eos> and <end_of_turn>, as the checkpoint's
    return model, processor


def paligemma_config() -> dict[str, Any]:
    """PaliGemmaConfig's arguments: SigLIP 224 and Gemma 2 (tiny sizes), the real vocabulary and <image> id."""
    vision = {
        **VISION,
        "model_type": "siglip_vision_model",
        "image_size": 224,
        "patch_size": 14,
        "projection_dim": 64,
        "vision_use_head": False,
    }
    text = {
        **TEXT,
        "model_type": "gemma2",
        "vocab_size": 257216,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "query_pre_attn_scalar": 32,
    }
    return {
        "vision_config": vision,
        "text_config": text,
        "image_token_index": 257152,
        "projection_dim": 64,
        "hidden_size": 64,
    }


def paligemma(out: Path) -> tuple[Any, Any]:
    """paligemma2-3b-mix-224: no chat template; the processor lays out 256 image tokens, <bos>, the prompt, "\\n"."""
    import transformers as tf

    tokenizer = npm_tokenizer(out, "tokenizer-gemma", PALIGEMMA_TOKENIZER, extra=PALIGEMMA_EXTRA)
    images = tf.SiglipImageProcessorPil(size={"height": 224, "width": 224}, image_mean=HALF, image_std=HALF, resample=3)
    images.image_seq_length = 256
    processor = tf.PaliGemmaProcessor(image_processor=images, tokenizer=tokenizer, chat_template=None)
    return tf.PaliGemmaForConditionalGeneration(tf.PaliGemmaConfig(**paligemma_config())), processor
