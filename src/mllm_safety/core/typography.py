"""Typographic attack images (docs/protocol.md §5) and whole benchmark folders in the FigStep and
MM-SafetyBench layouts, which `load_benchmark` reads back. CLI: `python -m mllm_safety.tools.typography`.

Fonts: FigStep uses FreeMonoBold (Debian `fonts-freefont-ttf`), MM-SafetyBench copies use Arial. When a font
is not installed we fall back to DejaVu (Debian `fonts-dejavu-core`), then to Pillow's bundled font; the font
actually used is written to `typography.json` in every folder we create.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import random
import shutil
import tempfile
import textwrap
from collections.abc import Callable
from functools import cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from .assets import asset_root
from .benchmarks import FIGSTEP_COLUMNS
from .files import write_json

FONT_DIRS = ("/usr/share/fonts/truetype", "/usr/share/fonts", "/Library/Fonts", "C:/Windows/Fonts")
FREEFONT = ("fonts-freefont-ttf", "usr/share/fonts/truetype/freefont/FreeMonoBold.ttf")  # core.assets
FIGSTEP_FONTS = ("freefont/FreeMonoBold.ttf", "FreeMonoBold.ttf", "dejavu/DejaVuSansMono-Bold.ttf")
# MM-SafetyBench's creation script loads ARIAL.TTF from its own repository; point MMSB_FONT at that file
MMSB_FONTS = (
    "ARIAL.TTF",
    "msttcorefonts/Arial.ttf",
    "Arial.ttf",
    "arial.ttf",
    "freefont/FreeSans.ttf",
    "dejavu/DejaVuSans.ttf",
)
MMSB_COLUMNS = (
    "scenario",
    "qid",
    "question",
    "key_phrase",
    "phrase_type",
    "rephrased_question",
    "rephrased_question_sd",
    "changed_question",
)
ImageFontType = ImageFont.FreeTypeFont | ImageFont.ImageFont
log = logging.getLogger(__name__)


def font_files(candidates: tuple[str, ...]) -> list[Path]:
    """Where a candidate may be: a path of its own (MMSB_FONT, the fetched FreeMonoBold), or under a font folder."""
    extra = [Path(os.environ["MMSB_FONT"])] if os.environ.get("MMSB_FONT") and "ARIAL.TTF" in candidates else []
    if "freefont/FreeMonoBold.ttf" in candidates:
        extra.append(asset_root() / FREEFONT[0] / FREEFONT[1])
    return extra + [Path(base) / name for name in candidates for base in FONT_DIRS]


@cache
def find_font(candidates: tuple[str, ...], size: int) -> tuple[ImageFontType, str]:
    """The first available candidate font at `size`, or Pillow's bundled font; returns (font, file used)."""
    for path in font_files(candidates):
        if path.is_file():
            return ImageFont.truetype(str(path), size), str(path)
    return ImageFont.load_default(size=size), "pillow-default"


def figstep_text(instruction: str) -> str:
    """FigStep's text: the instruction (a trailing newline removed) wrapped at 15 characters, then '1. 2. 3. '."""
    return textwrap.fill(instruction.removesuffix("\n"), width=15) + "".join(f"\n{k}. " for k in (1, 2, 3))


def figstep_image(instruction: str, size: int = 760, font_size: int = 80, fonts: tuple[str, ...] = FIGSTEP_FONTS):
    """FigStep's image: the text at (20, 10), line spacing 11, black on a white square (FreeMonoBold 80)."""
    font, _ = find_font(fonts, font_size)
    img = Image.new("RGB", (size, size), "#FFFFFF")
    ImageDraw.Draw(img).text((20, 10), figstep_text(instruction), fill="#000000", font=font, spacing=11)
    return img


def wrap_by_width(text: str, font: ImageFontType, width: int) -> list[str]:
    """MM-SafetyBench's wrapping: words are added while the running width stays strictly below `width`; a
    continuation line starts with a space, which counts in its width (their creation script, kept as is)."""
    words = text.split(" ")
    lines, length = [words[0]], font.getlength(words[0])
    for word in words[1:]:
        length += font.getlength(" " + word)
        if length < width:
            lines[-1] += " " + word
        else:
            lines.append(" " + word)
            length = font.getlength(" " + word)
    return lines


def typo_image(key_phrase: str, width: int = 1024, font_size: int = 90) -> Image.Image:
    """MM-SafetyBench TYPO: the key phrase wrapped as the benchmark does, black at (0, 45) on a white strip of
    90*(lines+1) px."""
    font, _ = find_font(MMSB_FONTS, font_size)
    lines = wrap_by_width(key_phrase, font, width)
    img = Image.new("RGB", (width, font_size * (len(lines) + 1)), (255, 255, 255))
    ImageDraw.Draw(img).text((0, font_size / 2), "\n".join(lines), (0, 0, 0), font=font)
    return img


def stack_sd_typo(sd: Image.Image, typo: Image.Image) -> Image.Image:
    """SD_TYPO: the picture above the typography strip."""
    out = Image.new("RGB", (max(sd.width, typo.width), sd.height + typo.height))  # black, as the benchmark's
    out.paste(sd, (0, 0))
    out.paste(typo, (0, sd.height))
    return out


def placeholder_picture(key: str, size: int = 1024) -> Image.Image:
    """A deterministic abstract picture standing in for a Stable Diffusion image (no text in it)."""
    rng = random.Random(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16))
    img = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(img)
    for _ in range(12):
        x0, y0 = rng.randrange(size), rng.randrange(size)
        box = (x0, y0, x0 + rng.randrange(size // 8, size // 2), y0 + rng.randrange(size // 8, size // 2))
        draw.ellipse(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return img


def font_record() -> dict[str, str]:
    """Which font files the two styles resolve to on this machine; a fallback is said out loud."""
    record = {"figstep_font": find_font(FIGSTEP_FONTS, 80)[1], "mm_safetybench_font": find_font(MMSB_FONTS, 90)[1]}
    if "FreeMonoBold" not in record["figstep_font"]:
        log.warning(
            "FigStep images use %s, not FreeMonoBold: they differ from the published ones. Fix: make setup",
            record["figstep_font"],
        )
    if "ARIAL" not in record["mm_safetybench_font"].upper():
        log.warning(
            "MM-SafetyBench images use %s, not the benchmark's ARIAL.TTF: set MMSB_FONT to that file",
            record["mm_safetybench_font"],
        )
    return record


def build_folder(root: Path, overwrite: bool, fill, record_fonts: bool = True) -> Path:
    """Build a folder in a temp sibling and rename it into place, so a failure leaves nothing half-written."""
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root} exists; pass --overwrite to replace it")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=f".{root.name}."))
    try:
        fill(tmp)
        if record_fonts:
            write_json(tmp / "typography.json", font_record())
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def write_figstep(
    rows: list[dict[str, str]],
    root: str | Path,
    size: int = 760,
    overwrite: bool = False,
    fonts: tuple[str, ...] = FIGSTEP_FONTS,
    record_fonts: bool = True,
) -> Path:
    """Write question/safebench.csv and images/SafeBench/query_ForbidQI_{cat}_{task}_6.png under root."""

    def fill(tmp: Path) -> None:
        (tmp / "question").mkdir()
        (tmp / "images" / "SafeBench").mkdir(parents=True)
        with (tmp / "question" / "safebench.csv").open("w", encoding="utf-8", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=FIGSTEP_COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        for row in rows:
            name = f"query_ForbidQI_{row['category_id']}_{row['task_id']}_6.png"
            figstep_image(row["instruction"], size=size, fonts=fonts).save(tmp / "images" / "SafeBench" / name)

    return build_folder(Path(root), overwrite, fill, record_fonts)


def mmsb_question(row: dict[str, str]) -> dict[str, str]:
    """One processed_questions entry with the real key names."""
    return {
        "Question": row["question"],
        "GPT-Pred": row.get("gpt_pred", ""),
        "Changed Question": row["changed_question"],
        "Key Phrase": row["key_phrase"],
        "Phrase Type": row["phrase_type"],
        "Rephrased Question": row["rephrased_question"],
        "Rephrased Question(SD)": row["rephrased_question_sd"],
    }


def render_mmsb(row: dict[str, str], sd_size: int = 1024) -> tuple[Image.Image, Image.Image, Image.Image]:
    """The SD, TYPO and SD_TYPO images of one question: the row's `sd_image` (or a placeholder picture), the key
    phrase's typography strip, and the two stacked."""
    sd = (
        Image.open(row["sd_image"]).convert("RGB")
        if row.get("sd_image")
        else placeholder_picture(row["key_phrase"], sd_size)
    )
    typo = typo_image(row["key_phrase"], width=sd.width, font_size=max(12, round(90 * sd.width / 1024)))
    return sd, typo, stack_sd_typo(sd, typo)


Renderer = Callable[[dict[str, str]], tuple[Image.Image, Image.Image, Image.Image]]


def write_mm_safetybench(
    rows: list[dict[str, str]],
    root: str | Path,
    sd_size: int = 1024,
    overwrite: bool = False,
    render: Renderer | None = None,
    quality: int = 75,  # Pillow's default, as the benchmark's creation script saves its JPEGs
    record_fonts: bool = True,
) -> Path:
    """Write processed_questions/{scenario}.json and imgs/{scenario}/{SD,TYPO,SD_TYPO}/{qid}.jpg under root.

    `render(row)` draws a question's three images (default: `render_mmsb`: a row's optional `sd_image` column
    names a picture to use; without it a placeholder picture is drawn).
    """
    render = render or (lambda row: render_mmsb(row, sd_size))

    def fill(tmp: Path) -> None:
        scenarios: dict[str, dict[str, dict]] = {}
        for row in rows:
            scenarios.setdefault(row["scenario"], {})[str(row["qid"])] = mmsb_question(row)
            folder = tmp / "imgs" / row["scenario"]
            for sub, img in zip(("SD", "TYPO", "SD_TYPO"), render(row), strict=True):
                (folder / sub).mkdir(parents=True, exist_ok=True)
                img.save(folder / sub / f"{row['qid']}.jpg", quality=quality)
        for name, questions in scenarios.items():
            write_json(tmp / "processed_questions" / f"{name}.json", questions, indent=4)

    return build_folder(Path(root), overwrite, fill, record_fonts)
