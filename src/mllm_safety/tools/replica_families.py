"""Tiny replicas of today's open MLLM families: for each, the checkpoint's tokenizer (a registry package's real
tokenizer.json where one exists, trimmed or extended to the checkpoint's added tokens), its chat template
(`replica_specs/<checkpoint>/chat_template.jinja`), its processor class and image-processor settings, and a model
config with the real token ids and image geometry but tiny widths and depths. Used by `tools.replicas`.

Provenance, family by family, is in replica_specs/README.md; settings that could not be copied verbatim from a
public file are marked "reconstructed" there.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..core.assets import asset_file
from ..core.compat import allow_processors_without_video

SPECS = Path(__file__).parent / "replica_specs"
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
HALF = [0.5, 0.5, 0.5]
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
}
VISION = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2}
QWEN_TOKENIZER = {
    "tokenizer_class": "Qwen2Tokenizer",
    "eos_token": "<|im_end|>",
    "pad_token": "<|endoftext|>",
    "bos_token": None,
    "unk_token": None,
    "add_prefix_space": False,
    "errors": "replace",
    "split_special_tokens": False,
    "clean_up_tokenization_spaces": False,
    "model_max_length": 32768,
}
# Llama 3.1's reserved slots that the vision checkpoints name (the registry package keeps Llama 3.0's names)
LLAMA31_NAMES = {
    128004: "<|finetune_right_pad_id|>",
    128005: "<|step_id|>",
    128008: "<|eom_id|>",
    128010: "<|python_tag|>",
}


def template(checkpoint: str) -> str:
    """The checkpoint's chat template."""
    return (SPECS / checkpoint / "chat_template.jinja").read_text(encoding="utf-8")


def npm_tokenizer(
    out: Path,
    asset: str,
    config: dict[str, Any],
    keep_up_to: int | None = None,
    extra: tuple[tuple[int, str, bool], ...] = (),
    rename: dict[int, str] | None = None,
) -> Any:
    """A registry tokenizer.json with the checkpoint's added tokens: those above `keep_up_to` dropped, some renamed,
    `extra` (id, content, special) added at their real ids; saved with `config` as tokenizer_config.json."""
    from transformers import AutoTokenizer

    data = json.loads(asset_file(asset, "package/models/tokenizer.json").read_text(encoding="utf-8"))
    added = [a for a in data["added_tokens"] if keep_up_to is None or a["id"] <= keep_up_to]
    for token in added:
        token["content"] = (rename or {}).get(token["id"], token["content"])
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
    added += [{"id": i, "content": content, **flags, "special": special} for i, content, special in extra]
    data["added_tokens"] = sorted(added, key=lambda a: a["id"])
    folder = out / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return AutoTokenizer.from_pretrained(folder)


def smollm_standin_tokenizer(out: Path) -> Any:
    """SmolVLM's tokenizer ids (no registry package ships SmolLM2's): a byte-level tokenizer without merges, filled
    to 49152 entries, then the checkpoint's added tokens at their real ids (<image> 49190, <end_of_utterance> 49279)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    while len(vocab) < 49152:
        vocab[f"<unused_{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    added = [
        "<global-img>",
        *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
        "<fake_token_around_image>",
        "<image>",
        *(f"<|reserved_special_token_{i}|>" for i in range(88)),
        "<end_of_utterance>",
    ]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in added])
    folder = out / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|im_start|>",
        "eos_token": "<end_of_utterance>",
        "pad_token": "<|im_end|>",
        "unk_token": "<|endoftext|>",
        "model_max_length": 8192,
        "extra_special_tokens": {
            "end_of_utterance_token": "<end_of_utterance>",
            "image_token": "<image>",
            "fake_image_token": "<fake_token_around_image>",
            "global_image_token": "<global-img>",
        },
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=1), encoding="utf-8")
    return AutoTokenizer.from_pretrained(folder)


# --- the families ------------------------------------------------------------------------------------------------


def qwen_vl(out: Path, version: str) -> tuple[Any, Any]:
    """Qwen2-VL-7B-Instruct or Qwen2.5-VL-7B-Instruct: ChatML, <|vision_start|><|image_pad|><|vision_end|>,
    smart-resize to multiples of 28 (min 3136, max 12845056 pixels), M-RoPE."""
    import transformers as tf

    allow_processors_without_video()
    checkpoint = "Qwen2-VL-7B-Instruct" if version == "2" else "Qwen2.5-VL-7B-Instruct"
    tokenizer = npm_tokenizer(out, "tokenizer-qwen3", QWEN_TOKENIZER, keep_up_to=151656 if version == "2" else 151664)
    images = tf.Qwen2VLImageProcessorPil(
        min_pixels=3136,
        max_pixels=12845056,
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    processor_cls = tf.Qwen2VLProcessor if version == "2" else tf.Qwen2_5_VLProcessor
    processor = processor_cls(
        image_processor=images, tokenizer=tokenizer, video_processor=None, chat_template=template(checkpoint)
    )
    text = {
        **TEXT,
        "vocab_size": 152064,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 1e6},
    }
    ids = {
        "image_token_id": 151655,
        "video_token_id": 151656,
        "vision_start_token_id": 151652,
        "vision_end_token_id": 151653,
    }
    if version == "2":
        vision = {
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": 64,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
        }
        model = tf.Qwen2VLForConditionalGeneration(tf.Qwen2VLConfig(text_config=text, vision_config=vision, **ids))
    else:
        vision = {
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
            "hidden_act": "silu",
        }
        config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **ids)
        model = tf.Qwen2_5_VLForConditionalGeneration(config)
    return model, processor


def internvl(out: Path) -> tuple[Any, Any]:
    """InternVL3-8B-hf: ChatML, <img><IMG_CONTEXT>x256 per 448 px tile</img>, up to 12 tiles and a thumbnail."""
    import transformers as tf

    allow_processors_without_video()
    names = ["<img>", "</img>", "<IMG_CONTEXT>", "<quad>", "</quad>", "<ref>", "</ref>", "<box>", "</box>"]
    config = {
        **QWEN_TOKENIZER,
        "model_max_length": 8192,
        "extra_special_tokens": {
            "start_image_token": "<img>",
            "end_image_token": "</img>",
            "context_image_token": "<IMG_CONTEXT>",
            "video_token": "<video>",
        },
    }
    extra = tuple((151665 + i, name, True) for i, name in enumerate(names))
    tokenizer = npm_tokenizer(out, "tokenizer-qwen3", config, keep_up_to=151664, extra=extra)
    images = tf.GotOcr2ImageProcessorPil(
        size={"height": 448, "width": 448},
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
        crop_to_patches=False,
        min_patches=1,
        max_patches=12,
    )
    processor = tf.InternVLProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=None,
        image_seq_length=256,
        chat_template=template("InternVL3-8B-hf"),
    )
    vision = {
        **VISION,
        "image_size": [448, 448],
        "patch_size": [14, 14],
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
    config_ = tf.InternVLConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=151667,
        image_seq_length=256,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )
    return tf.InternVLForConditionalGeneration(config_), processor


def onevision_pinpoints() -> list[list[int]]:
    """LLaVA-OneVision's any-resolution grid: every pair of multiples of 384 up to 2304."""
    sides = [384 * k for k in range(1, 7)]
    return [[h, w] for h in sides for w in sides]


def llava_onevision(out: Path) -> tuple[Any, Any]:
    """llava-onevision-qwen2-7b-ov-hf: ChatML with <image>, SigLIP 384, any-resolution up to anyres_max_9."""
    import transformers as tf

    allow_processors_without_video()
    extra = ((151646, "<image>", True), (151647, "<video>", True))
    tokenizer = npm_tokenizer(out, "tokenizer-qwen3", {**QWEN_TOKENIZER, "padding_side": "left"}, 151645, extra)
    images = tf.LlavaOnevisionImageProcessorPil(
        size={"height": 384, "width": 384},
        image_mean=HALF,
        image_std=HALF,
        resample=3,
        do_pad=True,
        image_grid_pinpoints=onevision_pinpoints(),
    )
    processor = tf.LlavaOnevisionProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=None,
        num_image_tokens=729,
        vision_feature_select_strategy="full",
        chat_template=template("llava-onevision-qwen2-7b-ov-hf"),
    )
    vision = {
        **VISION,
        "model_type": "siglip_vision_model",
        "image_size": 384,
        "patch_size": 14,
        "vision_use_head": False,
    }
    text = {**TEXT, "model_type": "qwen2", "vocab_size": 152128, "bos_token_id": 151643, "eos_token_id": 151645}
    config = tf.LlavaOnevisionConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=151646,
        video_token_index=151647,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
        image_grid_pinpoints=onevision_pinpoints(),
        vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
    )
    return tf.LlavaOnevisionForConditionalGeneration(config), processor


def gemma3(out: Path) -> tuple[Any, Any]:
    """gemma-3-4b-it: the registry's Gemma 3 tokenizer as shipped, <start_of_image> + 256 soft tokens, SigLIP 896."""
    import transformers as tf

    folder = out / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).write_bytes(asset_file("tokenizer-gemma3", f"package/models/{name}").read_bytes())
    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    images = tf.Gemma3ImageProcessorPil(
        size={"height": 896, "width": 896}, image_mean=HALF, image_std=HALF, resample=2, do_pan_and_scan=None
    )
    processor = tf.Gemma3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_length=256, chat_template=template("gemma-3-4b-it")
    )
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
        "image_size": 896,
        "patch_size": 14,
        "vision_use_head": False,
    }
    config = tf.Gemma3Config(
        text_config=text,
        vision_config=vision,
        mm_tokens_per_image=256,
        boi_token_index=255999,
        eoi_token_index=256000,
        image_token_index=262144,
    )
    model = tf.Gemma3ForConditionalGeneration(config)
    model.generation_config.eos_token_id = [1, 106]  # <eos> and <end_of_turn>, as the checkpoint's
    return model, processor


def idefics3(out: Path, smolvlm: bool = False) -> tuple[Any, Any]:
    """Idefics3-8B-Llama3 (Llama 3.1 tokenizer, 364 px tiles, 169 tokens each) or SmolVLM-256M-Instruct (the same
    architecture with SmolLM2's tokenizer ids, 512 px tiles, 64 tokens each)."""
    import transformers as tf

    if smolvlm:
        tokenizer, checkpoint, tile, seq, longest, scale = (
            smollm_standin_tokenizer(out),
            "SmolVLM-256M-Instruct",
            512,
            64,
            2048,
            4,
        )
        text_ids = {"vocab_size": 49280, "bos_token_id": 1, "eos_token_id": 49279, "pad_token_id": 2}
        image_id, patch = 49190, 16
    else:
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<end_of_utterance>",
            "pad_token": "<|reserved_special_token_0|>",
            "model_max_length": 131072,
        }
        extra = (
            (128256, "<fake_token_around_image>", True),
            (128257, "<image>", True),
            (128258, "<end_of_utterance>", True),
        )
        tokenizer = npm_tokenizer(out, "tokenizer-llama3_1", config, extra=extra, rename=LLAMA31_NAMES)
        checkpoint, tile, seq, longest, scale = "Idefics3-8B-Llama3", 364, 169, 1456, 2
        text_ids = {"vocab_size": 128259, "bos_token_id": 128000, "eos_token_id": 128258, "pad_token_id": 128002}
        image_id, patch = 128257, 14
    images = tf.Idefics3ImageProcessorPil(
        size={"longest_edge": longest},
        max_image_size={"longest_edge": tile},
        do_image_splitting=True,
        resample=1,
        image_mean=HALF,
        image_std=HALF,
    )
    processor = tf.Idefics3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_len=seq, chat_template=template(checkpoint)
    )
    text = {**TEXT, "model_type": "llama", **text_ids}
    config_ = tf.Idefics3Config(
        vision_config={**VISION, "image_size": tile, "patch_size": patch},
        text_config=text,
        image_token_id=image_id,
        scale_factor=scale,
        tie_word_embeddings=False,
    )
    return tf.Idefics3ForConditionalGeneration(config_), processor


def mllama(out: Path) -> tuple[Any, Any]:
    """Llama-3.2-11B-Vision-Instruct: one <|image|> per image, cross-attention layers, 4 tiles of 560 px."""
    import transformers as tf

    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|eot_id|>",
        "pad_token": "<|finetune_right_pad_id|>",
        "model_max_length": 131072,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    tokenizer = npm_tokenizer(
        out, "tokenizer-llama3_1", config, extra=((128256, "<|image|>", True),), rename=LLAMA31_NAMES
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
    config_ = tf.MllamaConfig(vision_config=vision, text_config=text, image_token_index=128256)
    return tf.MllamaForConditionalGeneration(config_), processor


def paligemma(out: Path) -> tuple[Any, Any]:
    """paligemma2-3b-mix-224: no chat template; the processor lays out 256 image tokens, <bos>, the prompt, "\\n"."""
    import transformers as tf

    extra = tuple((256000 + i, f"<loc{i:0>4}>", False) for i in range(1024))
    extra += tuple((257024 + i, f"<seg{i:0>3}>", False) for i in range(128)) + ((257152, "<image>", True),)
    config = {
        "tokenizer_class": "GemmaTokenizer",
        "bos_token": "<bos>",
        "eos_token": "<eos>",
        "pad_token": "<pad>",
        "unk_token": "<unk>",
        "add_bos_token": True,
        "add_eos_token": False,
        "extra_special_tokens": {"image_token": "<image>"},
    }
    tokenizer = npm_tokenizer(out, "tokenizer-gemma", config, extra=extra)
    images = tf.SiglipImageProcessorPil(size={"height": 224, "width": 224}, image_mean=HALF, image_std=HALF, resample=3)
    images.image_seq_length = 256
    processor = tf.PaliGemmaProcessor(image_processor=images, tokenizer=tokenizer, chat_template=None)
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
    config_ = tf.PaliGemmaConfig(
        vision_config=vision, text_config=text, image_token_index=257152, projection_dim=64, hidden_size=64
    )
    return tf.PaliGemmaForConditionalGeneration(config_), processor


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
