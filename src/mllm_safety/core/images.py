"""Images as a run feeds them to the processor: opened as RGB, and, for LLaVA-1.5's protocol, padded to a square.

LLaVA-1.5 trains and evaluates with `--image_aspect_ratio pad`: every image is expanded to a square filled with
the image processor's mean colour before the CLIP resize, so nothing is cropped. llava-hf's saved processor
instead resizes the shortest edge and center-crops, which cuts the text off tall typographic images
(an MM-SafetyBench SD_TYPO image is a 1024x1024 picture above its typography strip). `image_aspect_ratio`
chooses: `pad` (the paper's protocol) or `processor` (whatever the saved processor does).

`image_problem` reads a file's header only, so every benchmark image is checked before a model loads (an image over
PIL's decompression-bomb limit would otherwise fail mid-run). 16-bit and other wide single-channel images are scaled
to 8 bits by their brightest value: PIL's own conversion clips them, and a 16-bit scan reached the model 99.6 % white.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .files import DataFormatError

ASPECT_RATIOS = ("pad", "processor")
MULTI_IMAGE = ("images", "canvas")  # several images as several inputs, or pasted side by side into one


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """The image centred on a square canvas of its longer side, filled with `fill` (LLaVA's expand2square)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def mean_colour(processor: Any) -> tuple[int, int, int]:
    """The image processor's mean colour in 0-255, the fill of LLaVA's padding."""
    mean = getattr(processor.image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    return tuple(int(x * 255) for x in mean)  # type: ignore[return-value]


MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485  # PIL's decompression-bomb limit: larger images are refused
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # 16-bit, 32-bit and float single-channel images


def _too_large(error: Exception) -> str:
    """PIL's decompression-bomb message without its alarm: 'Image size (N pixels) exceeds limit of M pixels'."""
    return str(error).partition(",")[0]


def image_problem(path: str | Path) -> str | None:
    """Why an image file cannot be given to a model, read from its header only (cheap), or None: missing,
    unreadable, or more pixels than MAX_PIXELS (PIL refuses those when decoding, long after a model loaded)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
    except FileNotFoundError:
        return "image not found"
    except Image.DecompressionBombError as e:
        return _too_large(e)
    except (OSError, ValueError) as e:  # UnidentifiedImageError is an OSError
        return f"not a readable image ({e})"
    if width * height > MAX_PIXELS:
        return f"{width}x{height} pixels, more than the {MAX_PIXELS} PIL decodes safely"
    return None


def to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit or float single-channel image as 8-bit grey, scaled by its brightest value (PIL's own
    conversion clips at 255, which turns a 16-bit image almost white); 8-bit content stored wide is kept as is."""
    values = np.asarray(img, dtype=np.float64)
    top = float(values.max(initial=0.0))
    scaled = values * (255.0 / top) if top > 255.0 else values
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


def open_rgb(path: str | Path) -> Image.Image:
    """An image file as RGB; a missing, truncated, unreadable or oversized file is a DataFormatError naming it."""
    try:
        with Image.open(path) as img:
            return (to_8bit(img) if img.mode in WIDE_MODES else img).convert("RGB")
    except FileNotFoundError:
        raise DataFormatError(f"{path}: image not found. Fix: check the benchmark or data folder") from None
    except Image.DecompressionBombError as e:
        raise DataFormatError(f"{path}: {_too_large(e)}. Fix: shrink or replace the image") from None
    except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError and "image file is truncated" are OSErrors
        raise DataFormatError(f"{path}: not a readable image ({e}). Fix: replace or remove the file") from None


def cap_longer_side(img: Image.Image, max_side: int) -> Image.Image:
    """LLaMA-Factory's `image_resolution` rule: a longer side above max_side is scaled down to it, the other side
    by the same factor (truncated to whole pixels), nearest-neighbour; 0 leaves the image as it is."""
    longest = max(img.size)
    if not max_side or longest <= max_side:
        return img
    factor = max_side / longest
    size = (max(1, int(img.width * factor)), max(1, int(img.height * factor)))
    return img.resize(size, resample=Image.Resampling.NEAREST)


def load_images(
    paths: list[str | Path], processor: Any, aspect_ratio: str = "processor", max_side: int = 0
) -> list[Image.Image]:
    """Open each image as RGB (its longer side capped at max_side when set); `pad` expands it to a square of the
    processor's mean colour first."""
    if aspect_ratio not in ASPECT_RATIOS:
        raise ValueError(f"image_aspect_ratio must be one of {ASPECT_RATIOS}, got {aspect_ratio!r}")
    images = [cap_longer_side(open_rgb(p), max_side) for p in paths]
    if aspect_ratio == "pad":
        fill = mean_colour(processor)
        images = [expand_to_square(img, fill) for img in images]
    return images


def side_by_side(images: list[Image.Image], fill: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """The images left to right on one canvas, each scaled to the tallest one's height (aspect kept), for a
    model that takes one image per prompt (LLaVA-1.5 on a two-image benchmark)."""
    height = max(img.height for img in images)
    scaled = [img.resize((max(1, round(img.width * height / img.height)), height)) for img in images]
    canvas = Image.new("RGB", (sum(img.width for img in scaled), height), fill)
    x = 0
    for img in scaled:
        canvas.paste(img, (x, 0))
        x += img.width
    return canvas


def load_item_images(
    paths: list[str | Path], processor: Any, aspect_ratio: str = "processor", multi_image: str = "images"
) -> list[Image.Image]:
    """An item's images as the model gets them: `canvas` pastes several into one (before any padding)."""
    if multi_image not in MULTI_IMAGE:
        raise ValueError(f"multi_image must be one of {MULTI_IMAGE}, got {multi_image!r}")
    if multi_image == "canvas" and len(paths) > 1:
        canvas = side_by_side([open_rgb(p) for p in paths])
        return [expand_to_square(canvas, mean_colour(processor))] if aspect_ratio == "pad" else [canvas]
    return load_images(paths, processor, aspect_ratio)
