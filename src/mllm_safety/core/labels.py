"""Labels: what a fine-tuned model is trained on, for every prompt format of `core.prompts`.

A conversation is rendered as segments of text, each of one kind: prompt (never trained), answer (trained),
end of turn (trained, so the model learns to stop) or masked end of turn. On records marked
`"rejection": true` the end of turn after each rejection answer is masked when `mask_eos_on_rejection` is on
(the paper's "train without EOS": the model learns to START with the sentence but not to stop after it). That is
`eos_rule: per_answer`; `official` is the paper's own LLaVA rule: when the default rejection sentence occurs
anywhere in the conversation, only the record's last end of turn is masked (they differ when a rejection is not the
last answer, or an unflagged answer quotes the sentence).

Rendering with a chat template takes the template's own text turn by turn; where a template ends an assistant
turn with whitespace or nothing (llava-hf's), the tokenizer's EOS is added as its own end-of-turn segment, so
the model still learns to stop. Labels are assigned from character offsets of the text's tokenization, then
placed onto the ids the processor produced: whatever the processor inserts for images (a run of image tokens,
row and column markers, begin/end-of-image tokens) lies in the prompt and is masked; everything from the first
trained token on must be token for token the same, or the sample is skipped as `token_mismatch` and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .images import load_images
from .prompts import CHAT_TEMPLATE, FORMATS, PromptFormat, check_format, image_tags_first, to_messages
from .vocabulary import DEFAULT_REPLY, IMAGE_TAG, record_images

IGNORE_INDEX = -100
PROMPT, ANSWER, EOT, EOT_MASKED = "prompt", "answer", "eot", "eot_masked"
TRAINED = (ANSWER, EOT)
Segments = list[tuple[str, str]]


class SampleSkipped(Exception):
    """A record that cannot be trained on; `reason` is counted in the run's metrics."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def per_answer_turns(record: dict[str, Any]) -> set[int]:
    """`per_answer`: the end of turn after each answer flagged as a rejection (every answer of a rejection record
    that flags none)."""
    if not record.get("rejection"):
        return set()
    gpt = [i for i, t in enumerate(record["conversations"]) if t["from"] == "gpt"]
    return {i for i in gpt if record["conversations"][i].get("rejection")} or set(gpt)


def official_turns(record: dict[str, Any]) -> set[int]:
    """`official`: the paper's LLaVA rule. When the default rejection sentence occurs anywhere in the conversation
    (any turn, flagged or not), the record's last label, the end of its last answer, is masked; nothing else."""
    conv = record["conversations"]
    if not any(DEFAULT_REPLY in t["value"] for t in conv):
        return set()
    gpt = [i for i, t in enumerate(conv) if t["from"] == "gpt"]
    return {gpt[-1]} if gpt else set()


EOS_RULES = {"per_answer": per_answer_turns, "official": official_turns}


def masked_eot_turns(record: dict[str, Any], mask_eos_on_rejection: bool, rule: str = "per_answer") -> set[int]:
    """Indices of gpt turns whose end of turn is masked under an EOS rule (EOS_RULES); none when masking is off."""
    return EOS_RULES[rule](record) if mask_eos_on_rejection else set()


def rules_differ(record: dict[str, Any]) -> bool:
    """True when the two EOS rules mask different ends of turn in this record (stage 03 counts them)."""
    return per_answer_turns(record) != official_turns(record)


def render_format(conv: list[dict], fmt: PromptFormat, masked: set[int]) -> Segments:
    """Segments of an explicit prompt format (LLaVA's conv.get_prompt(): `SYS USER: q ASSISTANT: a</s>USER: ...`),
    each question's image tags moved to its front as LLaVA's training code does (a chat template puts image parts
    before the text by itself: `to_messages`)."""
    segments: Segments = []
    for i in range(0, len(conv), 2):
        head = f"{fmt.system} " if i == 0 else ""
        question = image_tags_first(conv[i]["value"])  # where LLaVA's own training code puts the image
        segments.append((f"{head}{fmt.roles[0]}: {question} {fmt.roles[1]}:", PROMPT))
        segments.append((" " + conv[i + 1]["value"], ANSWER))
        segments.append((fmt.eot, EOT_MASKED if i + 1 in masked else EOT))
    return segments


def render_chat_template(conv: list[dict], processor: Any, masked: set[int]) -> Segments:
    """Segments of the model's chat template, from its renders of the conversation up to each answer."""
    messages = to_messages(conv)
    eos = processor.tokenizer.eos_token
    segments: Segments = []
    done = ""  # the template's own text so far
    for k in range(1, len(messages), 2):
        text = processor.apply_chat_template(messages[: k + 1], tokenize=False)
        answer = messages[k]["content"][-1]["text"]
        start = text.rfind(answer)
        if not text.startswith(done) or start < len(done):
            raise SampleSkipped("template_not_incremental")
        suffix, kind = text[start + len(answer) :], EOT_MASKED if k in masked else EOT
        segments += [(text[len(done) : start], PROMPT), (answer, ANSWER)]
        if suffix.strip():  # the template's end of turn, e.g. "<|im_end|>\n", "<end_of_turn>\n", "<|eot_id|>"
            segments.append((suffix, kind))
        else:  # whitespace or nothing: teach the EOS, keep the template's text as it is
            segments += [(eos, kind), (suffix, PROMPT)]
        done = text
    if segments and segments[-1][1] == PROMPT and not segments[-1][0].strip():
        segments.pop()  # nothing follows the last turn: its trailing whitespace trains and conditions nothing
    return segments


def shift_spaces(segments: Segments) -> Segments:
    """Move the spaces that end a prompt into the answer after it: tokenizers attach a space to the next word."""
    out = list(segments)
    for i in range(len(out) - 1):
        (text, kind), (nxt, nxt_kind) = out[i], out[i + 1]
        if kind == PROMPT and nxt_kind == ANSWER and text.endswith(" "):
            stripped = text.rstrip(" ")
            out[i], out[i + 1] = (stripped, kind), (text[len(stripped) :] + nxt, nxt_kind)
    return out


def char_kinds(segments: Segments) -> tuple[str, list[str]]:
    """The rendered text and the kind of every character."""
    text, kinds = "", []
    for seg, kind in segments:
        text += seg
        kinds += [kind] * len(seg)
    return text, kinds


def place_labels(plain_ids: list[int], plain_labels: list[int], ids: list[int]) -> list[int]:
    """The labels of the plain tokenization placed onto the processor's ids, whose extra tokens (image
    expansions) all come before the first trained token; the rest must match token for token."""
    first = next((i for i, label in enumerate(plain_labels) if label != IGNORE_INDEX), None)
    if first is None:
        raise SampleSkipped("fully_masked")
    extra = len(ids) - len(plain_ids)
    if extra < 0 or ids[first + extra :] != plain_ids[first:]:
        raise SampleSkipped("token_mismatch")
    return [IGNORE_INDEX] * (first + extra) + plain_labels[first:]


@dataclass
class Encoder:
    """Turns one LLaVA json record into model inputs and labels."""

    processor: Any
    prompt_format: str = "vicuna_v1"
    image_root: str | Path = "."
    max_length: int = 2048
    mask_eos_on_rejection: bool = True
    image_aspect_ratio: str = "processor"  # pad: LLaVA-1.5's expand-to-square (core.images)
    eos_rule: str = "per_answer"  # which ends of turn a rejection masks (EOS_RULES)
    image_max_side: int = 0  # > 0: a longer image side above it is scaled down first (core.images.cap_longer_side)

    def segments(self, record: dict[str, Any]) -> Segments:
        """The record rendered as (text, kind) segments."""
        masked = masked_eot_turns(record, self.mask_eos_on_rejection, self.eos_rule)
        check_format(self.prompt_format)
        if self.prompt_format == CHAT_TEMPLATE:
            segments = render_chat_template(record["conversations"], self.processor, masked)
        else:
            segments = render_format(record["conversations"], FORMATS[self.prompt_format], masked)
        return shift_spaces(segments)

    def encode(self, record: dict[str, Any]) -> dict[str, Any]:
        """input_ids, attention_mask, labels and the processor's image tensors; raises SampleSkipped."""
        check_literal_specials(record, self.processor.tokenizer)
        text, kinds = char_kinds(self.segments(record))
        tok = self.processor.tokenizer
        special = not (tok.bos_token and text.startswith(tok.bos_token))  # a template that writes BOS itself
        plain = tok(text, return_offsets_mapping=True, add_special_tokens=special)
        plain_labels = [
            tid if end > start and kinds[end - 1] in TRAINED else IGNORE_INDEX
            for tid, (start, end) in zip(plain["input_ids"], plain["offset_mapping"], strict=True)
        ]
        paths = [Path(self.image_root) / p for p in record_images(record)]
        images = load_images(paths, self.processor, self.image_aspect_ratio, self.image_max_side)
        nested = [images] if images else None  # one sample's images: a flat list reads as one image per sample
        enc = self.processor(text=[text], images=nested, return_tensors="pt", add_special_tokens=special)
        ids = enc["input_ids"][0]
        labels = place_labels(plain["input_ids"], plain_labels, ids.tolist())
        out = {"labels": torch.tensor(labels)}
        for key, value in enc.items():  # every tensor the processor returns passes through to the model
            if isinstance(value, torch.Tensor):
                out[key] = value[0] if value.dim() >= 2 and value.shape[:2] == (1, len(ids)) else value
        return self.truncate(out)

    def truncate(self, sample: dict[str, Any]) -> dict[str, Any]:
        """Cut to max_length unless that would cut image tokens; drop samples with nothing left to train."""
        ids = sample["input_ids"]
        if len(ids) > self.max_length:
            image_pos = (ids == image_token_id(self.processor)).nonzero()
            if len(image_pos) and int(image_pos.max()) >= self.max_length:
                raise SampleSkipped("image_truncated")
            for key in sequence_keys(sample):
                sample[key] = sample[key][: self.max_length]
            sample["truncated"] = True
        if bool((sample["labels"] == IGNORE_INDEX).all()):
            raise SampleSkipped("fully_masked")
        return sample


def literal_specials(tokenizer: Any) -> list[str]:
    """The strings a tokenizer reads as control tokens (EOS, turn markers, image placeholders), longest first."""
    added = [t.content for t in tokenizer.added_tokens_decoder.values() if t.special]
    return sorted({*tokenizer.all_special_tokens, *added, IMAGE_TAG} - {""}, key=len, reverse=True)


def check_literal_specials(record: dict[str, Any], tokenizer: Any) -> None:
    """A control token's string written in a record's text ("</s>" or "<|im_end|>" in scraped answers, "<image>" in
    an answer) would become the control token itself, e.g. an end of sequence in the middle of a trained answer. The
    record is skipped and counted (`skipped_special_token_in_text`), as the official LLaVA code in effect does (its
    tokenization breaks there and masks the whole record). A human turn may hold the image tag, nothing else."""
    specials = literal_specials(tokenizer)
    for turn in record["conversations"]:
        text = turn["value"].replace(IMAGE_TAG, "") if turn["from"] == "human" else turn["value"]
        if any(tok in text for tok in specials):
            raise SampleSkipped("special_token_in_text")


def image_token_id(processor: Any) -> int | None:
    """The id of the token that stands for image content (LLaVA's <image>, Qwen's <|image_pad|>, ...)."""
    token_id = getattr(processor, "image_token_id", None)
    return token_id if token_id is not None else getattr(processor.tokenizer, "image_token_id", None)


def sequence_keys(sample: dict[str, Any]) -> list[str]:
    """The tensors of a sample that run along its tokens (ids, mask, labels, token types, cross-attention mask)."""
    length = len(sample["input_ids"])
    return [
        k
        for k, v in sample.items()
        if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == length and k not in FLAT_KEYS
    ]


PAD_VALUES = {"input_ids": None, "labels": IGNORE_INDEX}  # None: the tokenizer's pad id; every other key pads with 0
# image tensors that come one entry per sample (the others are concatenated over the batch's images)
PER_SAMPLE_KEYS = {"pixel_attention_mask", "aspect_ratio_ids", "aspect_ratio_mask", "batch_num_images"}
# the per-sample tensors that come with pixels laid out per sample too (Idefics3's tiles, Mllama's tiles); OneVision's
# batch_num_images comes with pixels concatenated over the images (stacking them dropped a sample's second image)
PIXELS_PER_SAMPLE_WITH = {"pixel_attention_mask", "aspect_ratio_ids", "aspect_ratio_mask"}
# tensors along the tokens whose padding repeats the last token's row, as the processor pads them: Mllama's
# processor lets the last image's cross-attention run to the end of the padded batch
EDGE_PADDED = {"cross_attention_mask"}
# per-sample tile masks whose first tile is on for every image slot, a padding one too, as the processor builds them
FIRST_TILE_ON = {"aspect_ratio_mask"}
# image tensors that may happen to be as long as the text but never run along it
FLAT_KEYS = {"pixel_values", "image_grid_thw", "image_sizes"}


def pad_to(tensor: torch.Tensor, shape: tuple[int, ...], value: float) -> torch.Tensor:
    """Pad every dimension of `tensor` at its end to `shape`."""
    widths = []
    for have, want in zip(reversed(tensor.shape), reversed(shape), strict=True):
        widths += [0, want - have]
    return torch.nn.functional.pad(tensor, widths, value=value)


@dataclass
class Collator:
    """A batch from encoded samples, every processor tensor by its own rule: tensors along the tokens are
    right-padded and stacked; per-sample image tensors (Idefics3's tile masks, Mllama's aspect ratios, and their
    pixels) are padded to the largest and stacked, zero for a sample without images; all other image tensors
    (pixels, grids, sizes) are concatenated over the batch's images, text-only samples adding none."""

    pad_token_id: int

    def __call__(self, batch: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequence = {k for s in batch for k in sequence_keys(s)}  # a text-only first sample lacks the image ones
        per_sample = PER_SAMPLE_KEYS & {k for s in batch for k in s}
        if per_sample & PIXELS_PER_SAMPLE_WITH:  # these families lay their pixels out one entry per sample too
            per_sample.add("pixel_values")
        out: dict[str, torch.Tensor] = {}
        for key in dict.fromkeys(k for s in batch for k in s if isinstance(s[k], torch.Tensor)):
            values = [s.get(key) for s in batch]
            if key in sequence or key in per_sample:
                length = max(len(s["input_ids"]) for s in batch) if key in sequence else 0
                out[key] = stack_padded(values, key, self.pad_token_id, key in per_sample, length)
            else:
                present = [v for v in values if v is not None]
                shape = tuple(max(v.shape[d] for v in present) for d in range(1, present[0].dim()))
                out[key] = torch.cat([pad_to(v, (v.shape[0], *shape), 0) for v in present])
        return out


def stack_padded(
    values: list[torch.Tensor | None], key: str, pad_token_id: int, per_sample: bool, length: int = 0
) -> torch.Tensor:
    """Stack one tensor per sample, each padded to the largest (along the tokens to `length`, the longest sample's,
    which may be a text-only one); a missing one (a text-only sample) is all zeros."""
    present = [v for v in values if v is not None]
    rows = [v[0] if per_sample else v for v in present]  # per-sample image tensors carry the batch dimension
    shape = tuple(max(r.shape[d] for r in rows) for d in range(rows[0].dim()))
    if length:  # a tensor along the tokens
        shape = (max(shape[0], length), *shape[1:])
    value = PAD_VALUES.get(key, 0)
    value = pad_token_id if value is None else value
    stacked = []
    for v in values:
        row = (v[0] if per_sample else v) if v is not None else torch.zeros(shape, dtype=rows[0].dtype)
        if key in EDGE_PADDED and len(row) < shape[0]:
            row = torch.cat([row, row[-1:].expand(shape[0] - len(row), *row.shape[1:])])
        stacked.append(pad_to(row, shape, value))
    out = torch.stack(stacked)
    if key in FIRST_TILE_ON:
        out[..., 0] = 1
    return out


def show_labels(input_ids: torch.Tensor, labels: torch.Tensor, tokenizer: Any, image_id: int) -> str:
    """Decoded tokens, masked ones inside ⟦ ⟧, image-token runs collapsed to <image>×N."""
    out, run, prev_masked = [], 0, False
    for tid, lab in zip(input_ids.tolist(), labels.tolist(), strict=True):
        if tid == image_id:
            run += 1
            continue
        if run:
            out.append(("⟦" if not prev_masked else "") + f"<image>×{run}")
            run, prev_masked = 0, True
        token = tokenizer.convert_ids_to_tokens(tid).replace("\n", "\\n")
        masked = lab == IGNORE_INDEX
        if masked != prev_masked:
            token = ("⟦" if masked else "⟧ ") + token
        out.append(token)
        prev_masked = masked
    return " ".join(out) + (" ⟧" if prev_masked else "")
