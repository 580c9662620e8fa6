"""Prompt formats: LLaVA's explicit conversation styles (vicuna_v1, llava_v1) and the model's own chat template.

Training (`core.labels`) and generation (`core.generation`) render prompts through this module, so a run
trains and is evaluated in the same format.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .vocabulary import IMAGE_TAG, strip_image_tags

CHAT_TEMPLATE = "chat_template"
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
LLAVA_SYSTEM = VICUNA_SYSTEM.replace("user", "human")


@dataclass(frozen=True)
class PromptFormat:
    """An explicit prompt format: `{system} USER: {q} ASSISTANT: {a}</s>USER: ...` (LLaVA's conversation style)."""

    name: str
    system: str
    roles: tuple[str, str] = ("USER", "ASSISTANT")
    eot: str = "</s>"

    def prompt(self, question: str) -> str:
        """The generation prompt for one question (no answer)."""
        return f"{self.system} {self.roles[0]}: {question} {self.roles[1]}:"


FORMATS = {"vicuna_v1": PromptFormat("vicuna_v1", VICUNA_SYSTEM), "llava_v1": PromptFormat("llava_v1", LLAVA_SYSTEM)}
PROMPT_FORMATS = (*FORMATS, CHAT_TEMPLATE)


def check_format(prompt_format: str) -> None:
    """Raise ValueError for an unknown prompt format."""
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(f"unknown prompt_format {prompt_format!r}; choose one of {list(PROMPT_FORMATS)}")


def to_messages(conv: list[dict]) -> list[dict]:
    """LLaVA turns as chat messages: each <image> tag of a question becomes an image part before its text."""
    messages = []
    for turn in conv:
        text = turn["value"]
        if turn["from"] == "human":
            parts = [{"type": "image"}] * text.count(IMAGE_TAG)
            messages.append({"role": "user", "content": [*parts, {"type": "text", "text": strip_image_tags(text)}]})
        else:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
    return messages


def image_tags_first(text: str) -> str:
    """A question as LLaVA's training code (`preprocess_multimodal`) hands it on: its image tags taken out, the rest
    stripped, the tags put in front, each followed by a newline ("What is this?\n<image>" -> "<image>\nWhat is
    this?"). Text without a tag is unchanged. LLaVA keeps one tag; a two-image question keeps both here."""
    n = text.count(IMAGE_TAG)
    return ((IMAGE_TAG + "\n") * n + text.replace(IMAGE_TAG, "").strip()).strip() if n else text


def build_prompt(question: str, n_images: int, processor: Any, prompt_format: str) -> str:
    """The generation prompt for one question: image tags in front of it, in the chosen prompt format."""
    check_format(prompt_format)
    question = (IMAGE_TAG + "\n") * n_images + question
    if prompt_format == CHAT_TEMPLATE:
        messages = to_messages([{"from": "human", "value": question}])
        return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return FORMATS[prompt_format].prompt(question)
