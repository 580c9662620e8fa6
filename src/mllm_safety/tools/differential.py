"""Differential tests against plain transformers: the same records through stage 03's path (`core.labels.Encoder`
and `Collator`) and through the family's own processor called as its model card shows (`apply_chat_template`,
then `processor(text=..., images=...)`), then the model's forward. Input ids, every processor tensor (shapes and
values) and the loss must agree, for one sample and for a batch of two (a landscape image; a portrait and the
landscape in one two-turn prompt), with and without LLaVA's padding to a square; on replicas built with varied shape
settings (`replicas.draw_settings`, `COUNTS` per family, the checkpoint's own first).

Where our path must differ from the processor, `DIFFERENCES` says how, and the oracle is given that difference
(and nothing else): labels (ours mask the prompt; the oracle's forward takes our labels), right padding (the
oracle's tokenizer pads right for the comparison), the EOS we teach where a template ends a turn without one.
"""

from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# family -> configurations drawn per family (the checkpoint's own first; a family that varies nothing has one)
COUNTS = {
    "llava-1.5": 4,
    "llava-next": 4,
    "qwen2-vl": 2,
    "qwen2.5-vl": 2,
    "internvl": 2,
    "llava-onevision": 4,
    "gemma3": 2,
    "idefics3": 3,
    "smolvlm": 2,
    "mllama": 4,
}
DEFAULT_COUNT = 1
SEED = 0
# family -> what our text adds to the template's (the oracle's answers get it too)
EOS_AFTER_ANSWER = {"llava-1.5", "llava-next"}  # llava-hf's templates end a turn with a space: we teach the EOS
DIFFERENCES = (
    "labels: ours mask everything but the answers and ends of turn; the oracle's forward is given our labels",
    "padding: our collator pads on the right; the oracle's tokenizer pads on the right for the comparison",
    "EOS: where a template ends an assistant turn without a token (llava-hf's), our text adds the tokenizer's EOS "
    "after each answer and drops the trailing space; the oracle's answers carry the EOS",
    "pad: with image_aspect_ratio pad the oracle is given the images padded to a square of the mean colour",
)
IMAGE_SIZES = {"a.png": (50, 30), "b.png": (20, 64)}  # landscape and portrait, neither square
RECORDS = [
    {
        "id": "one",
        "image": "a.png",
        "conversations": [
            {"from": "human", "value": "<image>\nWhat is in the picture?"},
            {"from": "gpt", "value": "A red square."},
        ],
    },
    {
        "id": "two",
        "image": ["b.png", "a.png"],  # two images in one prompt: OneVision tiles neither
        "conversations": [
            {"from": "human", "value": "<image>\n<image>\nDescribe them."},
            {"from": "gpt", "value": "A tall blue bar."},
            {"from": "human", "value": "And its colour?"},
            {"from": "gpt", "value": "Blue."},
        ],
    },
]

VARIANTS = ((RECORDS[:1], False), (RECORDS, False), (RECORDS, True))  # (records, pad to a square)


@dataclass
class Outcome:
    """A family's differential results: the settings drawn and what disagreed (empty: all agreed)."""

    family: str
    settings: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def write_images(folder: Path) -> Path:
    """The records' images: two sizes, two aspect ratios, a gradient so that resampling shows."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in IMAGE_SIZES.items():
        img = Image.new("RGB", (w, h))
        img.putdata([((x * 5) % 256, (y * 4) % 256, 120) for y in range(h) for x in range(w)])
        img.save(folder / name)
    return folder


def card_messages(record: dict[str, Any], eos: str) -> list[dict[str, Any]]:
    """The record as a model card writes messages: the image part, then the question; answers as text."""
    messages = []
    for turn in record["conversations"]:
        text = turn["value"]
        if turn["from"] == "human":
            parts = [{"type": "image"}] * text.count("<image>")
            messages.append(
                {"role": "user", "content": [*parts, {"type": "text", "text": text.replace("<image>\n", "")}]}
            )
        else:
            messages.append({"role": "assistant", "content": [{"type": "text", "text": text + eos}]})
    return messages


def card_images(root: Path, record: dict[str, Any], pad: bool, fill: tuple[int, ...]) -> list[Any]:
    """The record's images opened as the model card does (RGB), padded to a square by hand when `pad`."""
    from PIL import Image

    names = [record["image"]] if isinstance(record["image"], str) else record["image"]
    images = [Image.open(root / name).convert("RGB") for name in names]
    return [square(img, fill) if pad else img for img in images]


def square(img: Any, fill: tuple[int, ...]) -> Any:
    """The image centred on a square of its longer side filled with `fill` (LLaVA's expand2square, by hand)."""
    from PIL import Image

    side = max(img.size)
    canvas = Image.new("RGB", (side, side), fill)
    canvas.paste(img, ((side - img.width) // 2, (side - img.height) // 2))
    return canvas


def oracle_batch(family: str, processor: Any, records: list[dict[str, Any]], root: Path, pad: bool) -> Any:
    """Plain transformers: the processor's chat template and the processor itself, right padding."""
    tok = processor.tokenizer
    eos = tok.eos_token if family in EOS_AFTER_ANSWER else ""
    texts = [processor.apply_chat_template(card_messages(r, eos), tokenize=False) for r in records]
    if family in EOS_AFTER_ANSWER:
        texts = [t.rstrip() for t in texts]
    fill = tuple(int(x * 255) for x in processor.image_processor.image_mean)
    images = [card_images(root, r, pad, fill) for r in records]
    special = not (tok.bos_token and texts[0].startswith(tok.bos_token))
    side, tok.padding_side = tok.padding_side, "right"
    try:
        kwargs = {"padding": True, "padding_side": "right", "add_special_tokens": special}  # InternVL's own: left
        return processor(text=texts, images=images, return_tensors="pt", **kwargs)
    finally:
        tok.padding_side = side


def our_batch(processor: Any, records: list[dict[str, Any]], root: Path, pad: bool) -> dict[str, Any]:
    """Stage 03's path: the chat-template encoder and the collator."""
    from ..core.labels import Collator, Encoder

    aspect = "pad" if pad else "processor"
    encoder = Encoder(processor, "chat_template", root, max_length=1 << 16, image_aspect_ratio=aspect)
    return Collator(processor.tokenizer.pad_token_id)([encoder.encode(r) for r in records])


def tensor_problems(ours: dict[str, Any], theirs: Any) -> list[str]:
    """Every key the processor returns must be ours too, with the same shape and values."""
    import torch

    problems = (
        [f"keys: ours {sorted(set(ours) - {'labels'})}, oracle {sorted(theirs)}"]
        if set(ours) - {"labels"} != set(theirs)
        else []
    )
    for key in sorted(set(ours) & set(theirs)):
        a, b = ours[key], torch.as_tensor(theirs[key])
        if a.shape != b.shape:
            problems.append(f"{key}: shape {tuple(a.shape)} vs oracle {tuple(b.shape)}")
        elif not torch.allclose(a.double(), b.double(), atol=1e-6):
            problems.append(f"{key}: values differ ({int((a != b).sum())} of {a.numel()})")
    return problems


def answer_window(labels: Any) -> int:
    """How many last positions hold every trained label and the position before it (the logits that the loss
    reads): the rest of a 150k-word vocabulary's logits would cost seconds and change nothing."""
    from ..core.labels import IGNORE_INDEX

    first = int((labels != IGNORE_INDEX).any(0).nonzero().min())
    return labels.shape[1] - first + 1


def loss_problem(model: Any, ours: dict[str, Any], theirs: Any) -> list[str]:
    """The forward with labels: our batch and the oracle's (given our labels) must give the same loss (the model's
    own loss over the logits of `answer_window`, which is the whole sequence's: nothing before it is trained)."""
    import torch

    keep = answer_window(ours["labels"])
    inputs = {k: v for k, v in ours.items() if k != "labels"}
    with torch.no_grad():
        mine = model(**inputs, labels=ours["labels"][:, -keep:], logits_to_keep=keep).loss
        oracle = model(**dict(theirs), labels=ours["labels"][:, -keep:], logits_to_keep=keep).loss
    if not torch.isfinite(mine) or not torch.allclose(mine, oracle, atol=1e-5, rtol=1e-4):
        return [f"loss {float(mine):.6f} vs oracle {float(oracle):.6f}"]
    return []


def compare(family: str, model: Any, processor: Any, root: Path) -> list[str]:
    """One sample, and a batch of two with and without padding to a square: every disagreement."""
    problems = []
    for records, pad in VARIANTS:
        try:
            ours = our_batch(processor, records, root, pad)
            theirs = oracle_batch(family, processor, records, root, pad)
            found = tensor_problems(ours, theirs)
            if not found and len(records) > 1 and not pad:  # the loss once per configuration: logits are big
                found = loss_problem(model, ours, theirs)
        except Exception as e:  # a crash on either side is a finding, reported with where it happened
            found = [f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"]
        problems += [f"{len(records)} sample(s), pad={pad}: {p}" for p in found]
    return problems


def build(family: str, out: Path, settings: dict[str, Any]) -> tuple[Any, Any]:
    """A replica's model (eval mode) and processor in memory, with these shape settings."""
    import torch

    from .families import FAMILIES
    from .replicas import REPLICAS, build_replica

    torch.manual_seed(0)
    if family in REPLICAS:  # the LLaVA replicas are built from their spec folders, on disk
        from transformers import AutoModelForImageTextToText

        from ..core.modeling import load_processor

        path = build_replica(family, out, settings=settings or None)
        return AutoModelForImageTextToText.from_pretrained(path).eval(), load_processor(path)
    model, processor = FAMILIES[family][1](out, settings)
    return model.eval(), processor


@functools.cache
def check_family(family: str, count: int | None = None, seed: int = SEED) -> Outcome:
    """Draw `count` shape settings (COUNTS by default) and compare both paths on each (cached per process)."""
    from .replicas import draw_settings

    outcome = Outcome(family)
    with tempfile.TemporaryDirectory() as tmp:
        root = write_images(Path(tmp) / "images")
        for k, settings in enumerate(draw_settings(family, count or COUNTS.get(family, DEFAULT_COUNT), seed)):
            outcome.settings.append(settings)
            model, processor = build(family, Path(tmp) / f"replica{k}", settings)
            outcome.problems += [f"{settings}: {p}" for p in compare(family, model, processor, root)]
    return outcome
