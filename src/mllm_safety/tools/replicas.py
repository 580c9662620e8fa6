"""Replicas of real checkpoints, minus the weights: the real tokenizer, chat template, special tokens and
image-processor settings of a named checkpoint, with only the layer sizes shrunk and random weights.

Tests of labels, preprocessing and generation, and the real presets' tiny-scale runs use replicas, so that what
is checked is what a real model would see (576 image tokens for LLaVA-1.5, NeXT's any-resolution grid, the
Llama-2 tokenizer's ids). The processing files live in `tools/replica_specs/<checkpoint>/`; the tokenizers are
built from registry packages (fetched by `tools.assets`, found through `core.assets`).
CLI: `python -m mllm_safety.tools.replicas llava-1.5 --out runs/replicas/llava-1.5` (`--full-size` keeps the
checkpoint's own layer sizes: a random-initialised model of the real shape, for GPU benchmarks; `--settings` JSON
changes the shape settings a family varies, `families.SHAPES`: base size, patch size, tiles, grid, ...).
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import shutil
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.assets import asset_file
from ..core.cli import run_cli
from ..core.files import DataFormatError, write_json

SPECS = Path(__file__).parent / "replica_specs"
# layer sizes of every tiny replica: NF4 on the CPU needs linear inputs that are multiples of 64
TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
}
TINY_CLIP = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "projection_dim": 32,
}


# --- the Llama-2 tokenizer, from llama-tokenizer-js ------------------------------------------------------------


def llama2_vocab_and_merges() -> tuple[list[str], list[tuple[str, str]]]:
    """Llama-2's 32000 tokens (id = position) and 61249 merges in priority order, from the registry package."""
    source = asset_file("llama-tokenizer-js", "package/llama-tokenizer.js").read_text(encoding="utf-8")
    vocab_b64 = re.search(r'const llama_vocab_base64 = "([^"]+)"', source)
    merges_b64 = re.search(r'const llama_merges_binary = "([^"]+)"', source)
    if not (vocab_b64 and merges_b64):
        raise DataFormatError(
            "llama-tokenizer.js: no embedded vocabulary. Fix: `python -m mllm_safety.tools.assets fetch`"
        )
    vocab = base64.b64decode(vocab_b64.group(1)).decode("utf-8").split("\n")
    raw = base64.b64decode(merges_b64.group(1))
    ids = struct.unpack(f"<{len(raw) // 2}H", raw)
    merges = [(vocab[ids[i]], vocab[ids[i + 1]]) for i in range(0, len(ids), 2)]
    # the fingerprint of Llama-2's vocabulary (a Mistral vocabulary has 32000 tokens too, with other ids)
    if len(vocab) != 32000 or vocab.index("▁the") != 278 or vocab.index(":") != 29901 or len(merges) != 61249:
        raise DataFormatError("llama-tokenizer.js does not hold the Llama-2 vocabulary (▁the=278, :=29901)")
    return vocab, merges


def _added(token_id: int, content: str) -> dict[str, Any]:
    flags = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True}
    return {"id": token_id, "content": content, **flags}


def llava_tokenizer_json(added: dict[int, str]) -> dict[str, Any]:
    """llava-hf's tokenizer.json layout: Llama-2 BPE with byte fallback, '▁' normalizer, BOS added, extra tokens."""
    vocab, merges = llama2_vocab_and_merges()
    bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [_added(i, t) for i, t in {0: "<unk>", 1: "<s>", 2: "</s>", **added}.items()],
        "normalizer": {
            "type": "Sequence",
            "normalizers": [
                {"type": "Prepend", "prepend": "▁"},
                {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
            ],
        },
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                bos,
                {"Sequence": {"id": "A", "type_id": 0}},
                {"SpecialToken": {"id": "<s>", "type_id": 1}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}},
        },
        "decoder": {
            "type": "Sequence",
            "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                {"type": "ByteFallback"},
                {"type": "Fuse"},
                {"type": "Strip", "content": " ", "start": 1, "stop": 0},
            ],
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": True,
            "byte_fallback": True,
            "ignore_merges": False,
            "vocab": {token: i for i, token in enumerate(vocab)},
            "merges": [f"{a} {b}" for a, b in merges],
        },
    }


# --- the replicas -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Replica:
    """A named checkpoint's replica: its spec folder, how to write its tokenizer, which config parts shrink."""

    checkpoint: str  # the hub id it stands for
    spec: str  # folder under replica_specs/
    tokenizer: Callable[[], dict[str, Any]]
    shrink: dict[str, dict[str, Any]] = field(default_factory=dict)  # config section -> sizes


REPLICAS = {
    "llava-1.5": Replica(
        "llava-hf/llava-1.5-7b-hf",
        "llava-1.5-7b-hf",
        lambda: llava_tokenizer_json({32000: "<image>", 32001: "<pad>"}),
        {"text_config": TINY_TEXT, "vision_config": TINY_CLIP},
    ),
    "llava-next": Replica(
        "llava-hf/llava-v1.6-vicuna-7b-hf",
        "llava-v1.6-vicuna-7b-hf",
        lambda: llava_tokenizer_json({32000: "<image>"}),
        {"text_config": TINY_TEXT, "vision_config": TINY_CLIP},
    ),
}


def shrunk_config(config: dict[str, Any], shrink: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The checkpoint's config.json with only the listed sizes replaced."""
    out = json.loads(json.dumps(config))
    for section, sizes in shrink.items():
        out[section] = {**out.get(section, {}), **sizes}
    return out


def build_replica(
    family: str, out: str | Path, seed: int = 0, full_size: bool = False, settings: dict[str, Any] | None = None
) -> Path:
    """Write a replica folder (processing files, real tokenizer, random weights) and check that it loads;
    `settings` replaces shape settings of the checkpoint (families.SHAPES: base size, patch, tiles, grid, ...)."""
    from transformers import AutoProcessor

    from ..core.compat import allow_processors_without_video
    from .families import FAMILIES

    out = Path(out)
    if family in FAMILIES:
        if full_size:
            raise DataFormatError(f"--full-size exists for the LLaVA replicas only, not {family!r}")
        checkpoint = FAMILIES[family][0]
        build_family(family, out, seed, check_settings(family, settings))
    elif family in REPLICAS:
        checkpoint = REPLICAS[family].checkpoint
        build_llava(family, out, seed, full_size, check_settings(family, settings))
    else:
        raise DataFormatError(f"no replica for {family!r}; the replicas are {sorted([*REPLICAS, *FAMILIES])}")
    write_json(
        out / "replica.json",
        {
            "checkpoint": checkpoint,
            "family": family,
            "seed": seed,
            "full_size": full_size,
            "settings": settings or {},
            "random_weights": True,
        },
    )
    allow_processors_without_video()
    AutoProcessor.from_pretrained(out)  # the folder must load as the real one does
    return out


def build_llava(family: str, out: Path, seed: int, full_size: bool, settings: dict[str, Any] | None = None) -> None:
    """A LLaVA replica from its spec folder: the checkpoint's files copied, the tokenizer written, sizes shrunk;
    `settings` rewrite the shape settings in the config and the processor's files (families.llava)."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from .families.llava import PROCESSING, reshape

    replica = REPLICAS[family]
    spec = SPECS / replica.spec
    out.mkdir(parents=True, exist_ok=True)
    for path in spec.iterdir():
        shutil.copyfile(path, out / path.name)
    write_json(out / "tokenizer.json", replica.tokenizer(), indent=None)
    files = {name: json.loads((spec / name).read_text(encoding="utf-8")) for name in ("config.json", *PROCESSING)}
    files["config.json"] = files["config.json"] if full_size else shrunk_config(files["config.json"], replica.shrink)
    shaped = reshape(family, files, settings) if settings else files
    write_json(out / "config.json", shaped["config.json"])
    for name in PROCESSING:  # rewritten only where a setting changed them: the checkpoint's own stay verbatim
        if shaped[name] != files[name]:
            write_json(out / name, shaped[name])
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(AutoConfig.from_pretrained(out))
    model.save_pretrained(out)


def check_settings(family: str, settings: dict[str, Any] | None) -> dict[str, Any] | None:
    """The settings, if the family varies every one of them (families.SHAPES); otherwise an error naming them."""
    from .families import SHAPES

    known = SHAPES.get(family, ({}, {}))[1]
    unknown = sorted(set(settings or {}) - set(known))
    if unknown:
        raise DataFormatError(f"replica {family!r}: settings {unknown} cannot be varied; it varies {sorted(known)}")
    return settings


def draw_settings(family: str, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` shape settings of a family: the checkpoint's own first, then seeded draws from families.SHAPES
    (fewer when the family varies nothing, or has fewer distinct combinations)."""
    import random

    from .families import SHAPES

    real, varied = SHAPES.get(family, ({}, {}))
    drawn, rng = [dict(real)], random.Random(f"{family}:{seed}")
    for _ in range(50 * count):
        if len(drawn) >= count or not varied:
            break
        pick = {key: rng.choice(choices) for key, choices in varied.items()}
        if pick not in drawn:
            drawn.append(pick)
    return drawn


def build_family(family: str, out: Path, seed: int, settings: dict[str, Any] | None = None) -> None:
    """A replica of another family: its builder makes the processor and a tiny model, both saved into `out`."""
    import shutil as sh

    import torch

    from .families import FAMILIES

    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model, processor = FAMILIES[family][1](out, settings)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.save_pretrained(out)
    processor.save_pretrained(out)
    sh.rmtree(out / "tokenizer", ignore_errors=True)  # the builder's scratch folder; the processor saved its own


def main(argv: list[str] | None = None) -> int:
    """CLI: build a replica folder."""
    p = argparse.ArgumentParser(prog="python -m mllm_safety.tools.replicas", description=__doc__)
    p.add_argument("family", help="llava-1.5, llava-next, or a family of tools.families")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--full-size", action="store_true", help="keep the checkpoint's layer sizes (GPU benchmarks)")
    p.add_argument("--settings", type=json.loads, help="shape settings as JSON, e.g. '{\"image_size\": 28}'")
    args = p.parse_args(argv)
    return run_cli(lambda: print(build_replica(args.family, args.out, args.seed, args.full_size, args.settings)))


if __name__ == "__main__":
    sys.exit(main())
