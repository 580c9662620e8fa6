"""What every family's replica shares: tiny layer sizes, normalisation constants, tokenizer builders, templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...core.assets import asset_file

SPECS = Path(__file__).parent.parent / "replica_specs"
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
# SmolVLM's added tokens, from id 49152 up: <image> lands on 49190, <end_of_utterance> on 49279
SMOLVLM_ADDED = (
    "<global-img>",
    *(f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)),
    "<fake_token_around_image>",
    "<image>",
    *(f"<|reserved_special_token_{i}|>" for i in range(88)),
    "<end_of_utterance>",
)
SMOLVLM_TOKENIZER = {
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
    to 49152 entries, then the checkpoint's added tokens (`SMOLVLM_ADDED`) at their real ids."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoTokenizer

    vocab = {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2}
    for char in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[char] = len(vocab)
    while len(vocab) < 49152:
        vocab[f"<unused_{len(vocab)}>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.ByteLevel(add_prefix_space=False), decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SMOLVLM_ADDED])
    folder = out / "tokenizer"
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(SMOLVLM_TOKENIZER, indent=1), encoding="utf-8")
    return AutoTokenizer.from_pretrained(folder)
