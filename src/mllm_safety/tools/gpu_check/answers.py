"""The generation and merge rows of the GPU check: the same items answered one at a time and batched, and the
trained adapter's answers merged and unmerged."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from .models import Target, load_filled
from .training import sync


def generation_items(work: Path, image_side: int, count: int) -> list[Any]:
    """`count` questions of different lengths, each with its own image."""
    from ...core.items import EvalItem

    folder = work / "generation"
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.new("RGB", (image_side, image_side), (20 + 13 * i, 200 - 9 * i, 90)).save(path)
        question = "What does this picture show" + " in detail" * (i % 5) + "?"
        items.append(EvalItem(f"g{i}", "check", "check", question, str(path), harmful=False))
    return items


def answer(model: Any, processor: Any, items: list[Any], fmt: str, batch: int, new: int) -> tuple[list[str], float]:
    """Greedy answers of `new` tokens, `batch` items per call, and the seconds they took."""
    from ...core.generation import Decoding, generate_batch

    model.eval()
    decoding = Decoding(max_new_tokens=new)
    sync()
    start = time.perf_counter()
    out = []
    for i in range(0, len(items), batch):
        out += generate_batch(model, processor, items[i : i + batch], fmt, decoding)
    sync()
    return out, time.perf_counter() - start


def check_generation(target: Target, model: Any, processor: Any, items: list[Any], new: int) -> list[dict[str, Any]]:
    """The same items one at a time and batched: seconds, items/s, identical outputs, non-empty outputs."""
    from ...core.preset import Preset

    fmt = Preset.load(target.preset).eval.generation_format
    answer(model, processor, items[:2], fmt, 2, new)  # warm-up
    single, t_single = answer(model, processor, items, fmt, 1, new)
    batched, t_batched = answer(model, processor, items, fmt, len(items), new)
    same = sum(a == b for a, b in zip(single, batched, strict=True))
    ways = [("one at a time", t_single, single), (f"batched, {len(items)} per call", t_batched, batched)]
    return [
        {
            "model": target.preset,
            "way": way,
            "items": len(items),
            "seconds": round(t, 3),
            "items_per_s": round(len(items) / t, 2),
            "identical": f"{same}/{len(items)}",
            "non_empty": sum(bool(a) for a in answers),
        }
        for way, t, answers in ways
    ]


def common_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def check_merge(
    target: Target, folder: Path, work: Path, trained: Any, processor: Any, items: list[Any], new: int, seed: int
) -> dict[str, Any]:
    """The trained adapter on its NF4 base, unmerged, against the same adapter merged into an unquantized load of
    the same weights in the preset's eval_dtype; and the NF4 base without the adapter (does the adapter matter)."""
    from peft import PeftModel

    from ...core.preset import Preset
    from ...evaluate import eval_dtype

    ev = Preset.load(target.preset).eval
    fmt = ev.generation_format
    adapter = work / "adapter" / target.preset
    trained.save_pretrained(adapter)
    unmerged, _ = answer(trained, processor, items, fmt, len(items), new)
    with trained.disable_adapter():
        plain, _ = answer(trained, processor, items, fmt, len(items), new)
    dtype = eval_dtype(ev) or (torch.bfloat16 if torch.cuda.is_available() else torch.float32)
    base = load_filled(folder, "none", seed, dtype=dtype)
    merged_model = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged, _ = answer(merged_model, processor, items, fmt, len(items), new)
    del base, merged_model
    n = len(items)
    same = lambda xs, ys: f"{sum(x == y for x, y in zip(xs, ys, strict=True))}/{n}"  # noqa: E731
    return {
        "model": target.preset,
        "merged_dtype": str(dtype).removeprefix("torch."),
        "identical_merged_vs_nf4": same(merged, unmerged),
        "mean_common_prefix_chars": round(sum(map(common_prefix, merged, unmerged)) / n, 1),
        "mean_answer_chars": round(sum(len(a) for a in unmerged) / n, 1),
        "identical_adapter_vs_no_adapter": same(plain, unmerged),
    }


def generation_part(
    target: Target, folder: Path, processor: Any, items: list[Any], new: int, seed: int
) -> list[dict[str, Any]]:
    """Generation on an unquantized load in the preset's eval_dtype (stage 04's official setting)."""
    from ...core.preset import Preset
    from ...evaluate import eval_dtype

    dtype = eval_dtype(Preset.load(target.preset).eval)
    model = load_filled(folder, "none", seed, dtype=dtype)
    rows = check_generation(target, model, processor, items, new)
    del model
    return rows
