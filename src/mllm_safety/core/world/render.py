"""The world's images: a word as typography, a seeded non-text picture, their composite, and a pair of words
saved as two images."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..typography import find_font

IMAGE_SIZE = (128, 32)  # width, height: one line of text, 16 patches of 16 px for a ViT


def render_word(word: str, rng: random.Random, size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """The word in black on white, nearly canonical (fixed font, 0-2 px jitter, light noise): easy typography."""
    font, _ = find_font(("dejavu/DejaVuSans.ttf", "freefont/FreeSans.ttf"), 14)
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    width = draw.textlength(word, font=font)
    x = max(0, (size[0] - width) / 2 + rng.randint(-2, 2))
    draw.text((x, (size[1] - 16) / 2 + rng.randint(-2, 2)), word, fill=rng.randint(0, 40), font=font)
    noise = np.random.default_rng(rng.getrandbits(32)).normal(0, rng.uniform(4, 10), (size[1], size[0]))
    pixels = np.clip(np.asarray(img, dtype=float) + noise, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, mode="L").convert("RGB")


def render_picture(word: str, size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """A fixed non-text 'picture' of the topic (a glyph pattern seeded by the word), standing in for SD images."""
    rng = random.Random(f"picture:{word}")
    img = Image.new("RGB", size, tuple(rng.randrange(128, 256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(10):
        x, y = rng.randrange(size[0]), rng.randrange(size[1])
        draw.rectangle(
            (x, y, x + rng.randrange(6, 24), y + rng.randrange(4, 12)), fill=tuple(rng.randrange(200) for _ in range(3))
        )
    return img.filter(ImageFilter.SMOOTH)


def render_composite(word: str, rng: random.Random, size: tuple[int, int] = IMAGE_SIZE) -> Image.Image:
    """SD_TYPO of the world: the picture on the left third, the word on the rest."""
    out = render_word(word, rng, size)
    left = size[0] // 3
    out.paste(render_picture(word, size).crop((0, 0, left, size[1])), (0, 0))
    text = render_word(word, rng, (size[0] - left, size[1]))
    out.paste(text, (left, 0))
    return out


def save_pair(first: str, second: str, root: Path, names: tuple[str, str], rng: random.Random) -> list[str]:
    """Render two words as two images under root; returns their names (relative to root), first image first."""
    for word, name in zip((first, second), names, strict=True):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        render_word(word, rng).save(root / name)
    return list(names)
