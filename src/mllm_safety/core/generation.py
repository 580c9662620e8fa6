"""Batched, resumable generation for any model (+ optional LoRA adapter) on EvalItems.

Each (model, adapter, benchmark, mode) gets one JSONL file; each line is the item's fields plus `response`,
`model`, `adapter`, `prompt_format`, `decoding`, `image_input`, the fingerprints of the weights it came from
(`inputs`: base, adapter) and of the item itself (`item_fingerprint`: its fields and its images' bytes). Items
already answered are skipped, so an interrupted run resumes; a file written under another decoding or prompt
format is never appended to; a file made from other weights is generated again, and an item edited since it was
answered is answered again (one log line says which). Only the new tokens are decoded (left padding, so every
prompt ends where generation starts).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .benchmarks import EvalItem
from .console import bar
from .files import DataFormatError, read_jsonl, write_text
from .fingerprints import MISSING, file_digests, input_change, value_digest
from .images import load_item_images
from .prompts import CHAT_TEMPLATE, build_prompt, to_messages

log = logging.getLogger(__name__)
HEADER_DEFAULTS = {
    "image_aspect_ratio": "processor",
    "multi_image": "images",
}  # for files written before the key was recorded
BLANK_SIZE = 336  # a white square for text-only items when blank_image is on (LLaVA-1.5's input size)
FORMAT = 2  # 2: rows carry item_fingerprint, the header the weights' fingerprints; older files are made again
STALE_KEYS = ("inputs", "format")  # header keys whose change means "generate again", not "refuse"


@dataclass(frozen=True)
class Decoding:
    """Decoding settings; greedy with 512 new tokens is the official setting."""

    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The settings as recorded beside every generation and metric."""
        return asdict(self)

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for model.generate."""
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens, "do_sample": self.do_sample}
        if self.do_sample:
            kwargs.update(temperature=self.temperature, top_p=self.top_p)
        return kwargs


def item_images(
    item: EvalItem, blank_image: bool, processor: Any = None, aspect: str = "processor", multi_image: str = "images"
) -> list[Image.Image]:
    """The item's images (padded to a square for `pad`; several pasted into one for `canvas`); a text-only item
    gets one blank image when blank_image is on, none otherwise."""
    if item.image_paths():
        return load_item_images(item.image_paths(), processor, aspect, multi_image)
    return [Image.new("RGB", (BLANK_SIZE, BLANK_SIZE), "white")] if blank_image else []


def processor_inputs(processor: Any, texts: list[str], images: list[list[Image.Image]]) -> Any:
    """The processor's batch: images nested per sample (families that tile or cross-attend need to know whose
    image is whose), one BOS (a template that writes it is not given a second one)."""
    bos = processor.tokenizer.bos_token
    special = not (bos and any(t.startswith(bos) for t in texts))
    nested = images if any(images) else None
    return processor(text=texts, images=nested, padding=True, return_tensors="pt", add_special_tokens=special)


@torch.no_grad()
def stop_token_ids(model: Any, processor: Any, prompt_format: str) -> list[int]:
    """The model's EOS ids, plus the special token that ends an assistant turn in its chat template (e.g.
    <|im_end|>), which generation configs often omit; without it a chat model talks past the end of its turn."""
    eos = model.generation_config.eos_token_id
    ids = list(eos) if isinstance(eos, list | tuple) else ([eos] if eos is not None else [])
    if prompt_format == CHAT_TEMPLATE:
        tok = processor.tokenizer
        turn = to_messages([{"from": "human", "value": "q"}, {"from": "gpt", "value": "ANSWER"}])
        suffix = processor.apply_chat_template(turn, tokenize=False).split("ANSWER", 1)[1]
        special = {i for i, t in tok.added_tokens_decoder.items() if t.special} | set(tok.all_special_ids)
        first = tok(suffix, add_special_tokens=False)["input_ids"][:1]
        ids += [i for i in first if i in special and i not in ids]
    return ids


def generate_batch(
    model: Any,
    processor: Any,
    items: list[EvalItem],
    prompt_format: str,
    decoding: Decoding,
    blank_image: bool = False,
    image_aspect_ratio: str = "processor",
    multi_image: str = "images",
) -> list[str]:
    """Generate answers for a batch of items (left padding); returns only the newly generated text."""
    images = [item_images(it, blank_image, processor, image_aspect_ratio, multi_image) for it in items]
    texts = [
        build_prompt(it.prompt, len(imgs), processor, prompt_format) for it, imgs in zip(items, images, strict=True)
    ]
    processor.tokenizer.padding_side = "left"
    inputs = processor_inputs(processor, texts, images).to(model.device)
    check_context(model, items, inputs["attention_mask"].sum(dim=1).tolist(), decoding.max_new_tokens)
    if "pixel_values" in inputs:
        inputs["pixel_values"] = inputs["pixel_values"].to(model.dtype)
    if decoding.do_sample:
        torch.manual_seed(decoding.seed)
    pad = processor.tokenizer.pad_token_id
    stop = stop_token_ids(model, processor, prompt_format)
    out = model.generate(**inputs, **decoding.generate_kwargs(), pad_token_id=pad, eos_token_id=stop or None)
    new = out[:, inputs["input_ids"].shape[1] :]
    return [t.strip() for t in processor.tokenizer.batch_decode(new, skip_special_tokens=True)]


def context_length(model: Any) -> int | None:
    """The language model's context (max_position_embeddings), None when its config does not say."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    return getattr(config, "max_position_embeddings", None)


def check_context(model: Any, items: list[EvalItem], prompt_tokens: list[int], new_tokens: int) -> None:
    """The context rule: items whose prompt (image tokens included) plus max_new_tokens exceeds the language model's
    context are answered as given, never truncated, and named in one warning line with how many fill the context
    by themselves (a replica keeps its library's default context, not the checkpoint's, so this is no refusal)."""
    limit = context_length(model)
    if limit is None:
        return
    over = [(it.id, n) for it, n in zip(items, prompt_tokens, strict=True) if n + new_tokens > limit]
    if over:
        full = sum(n >= limit for _, n in over)
        log.warning(
            "%d item(s) exceed the model's %d-token context with max_new_tokens=%d (%d by their prompt alone); "
            "answered as given: %s",
            len(over),
            limit,
            new_tokens,
            full,
            ", ".join(f"{i} ({n} tokens)" for i, n in over[:5]),
        )


def read_generations(path: Path) -> list[dict[str, Any]]:
    """Lines of a generations file. A torn last line (a crash mid-write) is cut off the file itself and a last
    line that lost its newline gets it back, so that appending continues on a line of its own; a bad line
    elsewhere, or an item id on two lines (two writers at once), is an error."""
    if not path.is_file():
        return []
    rows = read_jsonl(path, "generations file", "delete the file to regenerate", cut_torn_end=True)
    end_last_line(path)
    counts = Counter(r.get("id") for r in rows)
    twice = next((i for i, n in counts.items() if n > 1), None)
    if twice is not None:
        raise DataFormatError(
            f"{path}: item id {twice!r} is on {counts[twice]} lines (two runs wrote the file at once?). "
            "Fix: delete the file to generate its answers again"
        )
    return rows


def end_last_line(path: Path) -> None:
    """Give a last line that lost its newline (a kill between a record and its newline) its newline back."""
    with path.open("rb+") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return
        f.seek(-1, os.SEEK_END)
        if f.read(1) != b"\n":
            log.warning("%s: the last line had lost its newline; restored it", path)
            f.write(b"\n")


def check_compatible(rows: list[dict[str, Any]], header: dict[str, Any], path: Path) -> None:
    """Refuse to append to a file made with another model, adapter, prompt format, decoding or image input."""
    settings = {k: v for k, v in header.items() if k not in STALE_KEYS}
    for row in rows[:1]:
        changed = [k for k, v in settings.items() if row.get(k, HEADER_DEFAULTS.get(k)) != v]
        if changed:
            raise FileExistsError(
                f"{path} was generated with different {changed} "
                f"(file: {[row.get(k) for k in changed]}, now: {[header[k] for k in changed]}); "
                "use another output folder or delete the file"
            )


def item_fingerprints(items: list[EvalItem]) -> dict[str, str]:
    """Each item's fingerprint: its fields, with its images' bytes in place of their paths."""
    paths = {p: str(Path(p).resolve()) for it in items for p in it.image_paths()}
    digests = file_digests(p for p in paths.values() if Path(p).is_file())
    return {
        it.id: value_digest({**it.to_dict(), "image": [digests.get(paths[p], MISSING) for p in it.image_paths()]})
        for it in items
    }


def usable_rows(path: Path, header: dict[str, Any], fingerprints: dict[str, str]) -> list[dict[str, Any]]:
    """The file's rows that still hold: another config is refused; a file made from other weights (or by an older
    version) is deleted; rows of items edited since they were answered are dropped. Each says so in one line."""
    rows = read_generations(path)
    check_compatible(rows, header, path)
    old = rows[0] if rows else header
    stale = input_change(old.get("inputs", {}), header["inputs"])
    if old.get("format", 1) != FORMAT:
        stale = f"written by an older version (format {old.get('format', 1)}, now {FORMAT})"
    if stale:
        log.info("%s: %s; generating every answer again", path, stale)
        path.unlink()
        return []
    edited = {r["id"] for r in rows if r["id"] in fingerprints and r.get("item_fingerprint") != fingerprints[r["id"]]}
    if edited:
        shown = ", ".join(sorted(map(str, edited))[:5]) + (", ..." if len(edited) > 5 else "")
        log.info("%s: %d item(s) changed since they were answered (%s); answering them again", path, len(edited), shown)
        rows = [r for r in rows if r["id"] not in edited]
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return rows


def append_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append whole lines and flush them to disk, so a crash loses at most the batch in flight."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        f.flush()
        os.fsync(f.fileno())


def generate(
    model: Any,
    processor: Any,
    items: list[EvalItem],
    out_path: str | Path,
    *,
    model_name: str,
    adapter: str | None,
    prompt_format: str,
    decoding: Decoding,
    batch_size: int = 8,
    blank_image: bool = False,
    image_aspect_ratio: str = "processor",
    multi_image: str = "images",
    inputs: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Answer every item not yet in out_path, appending batch by batch; returns the rows of these items (the file
    may hold more: rows of items left out now stay for a later run). inputs: fingerprints of the weights."""
    out_path = Path(out_path)
    header = {
        "model": model_name,
        "adapter": adapter,
        "prompt_format": prompt_format,
        "decoding": asdict(decoding),
        "image_input": "blank" if blank_image else "none",
        "image_aspect_ratio": image_aspect_ratio,
        "multi_image": multi_image,
        "inputs": dict(sorted((inputs or {}).items())),
        "format": FORMAT,
    }
    fingerprints = item_fingerprints(items)
    rows = usable_rows(out_path, header, fingerprints)
    done = {r["id"] for r in rows}
    todo = sorted((it for it in items if it.id not in done), key=lambda it: (len(it.image_paths()), len(it.prompt)))
    progress = bar(total=len(todo), desc=f"generate {out_path.stem}", unit="item")
    for k in range(0, len(todo), batch_size):
        chunk = todo[k : k + batch_size]
        responses = generate_batch(
            model, processor, chunk, prompt_format, decoding, blank_image, image_aspect_ratio, multi_image
        )
        new_rows = [
            {**it.to_dict(), "response": r, **header, "item_fingerprint": fingerprints[it.id]}
            for it, r in zip(chunk, responses, strict=True)
        ]
        append_lines(out_path, new_rows)
        rows += new_rows
        progress.update(len(chunk))
    progress.close()
    return [r for r in rows if r["id"] in fingerprints]
