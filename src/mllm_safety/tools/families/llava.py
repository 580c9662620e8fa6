"""The llava-1.5-7b-hf and llava-v1.6-vicuna-7b-hf replicas' shape settings (`REAL`, `VARIED`, `NEXT_REAL`,
`NEXT_VARIED`). Their replicas are the spec folders' files (`replicas.build_llava`); `reshape` writes the settings
into the model config and the processor's two files, so that plain transformers' processor and model agree."""

from __future__ import annotations

import json
from typing import Any

Files = dict[str, dict[str, Any]]  # file name -> its JSON
PROCESSING = ("preprocessor_config.json", "processor_config.json")

# the settings that change tensor shapes: the checkpoint's, and the choices the differential tests draw from
REAL = {"image_size": 336, "patch_size": 14, "vision_feature_select_strategy": "default"}
VARIED = {
    "image_size": (28, 42, 56),  # the tower's input, the processor's crop (a multiple of every patch size)
    "patch_size": (14, 7),
    # default: CLIP, CLS dropped; full: LLaVA-1.5 keeps CLIP's CLS as a token, LLaVA-NeXT takes SigLIP (no CLS)
    "vision_feature_select_strategy": ("default", "full"),
}
# LLaVA-NeXT's any-resolution grids, rows x columns in multiples of the base size: the checkpoint's five, fewer
NEXT_GRIDS = ("1x2,2x1,2x2,3x1,1x3", "1x2,2x1,2x2", "1x1,1x2,2x1")
NEXT_REAL = {**REAL, "grid": NEXT_GRIDS[0]}
NEXT_VARIED = {**VARIED, "grid": NEXT_GRIDS}
TOWER_SIZES = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")


def pinpoints(base: int, grid: str) -> list[list[int]]:
    """The any-resolution grid in pixels, [height, width] each: "1x2,2x1" at 336 is [[336, 672], [672, 336]]."""
    cells = [cell.split("x") for cell in grid.split(",")]
    return [[base * int(rows), base * int(cols)] for rows, cols in cells]


def siglip(family: str, s: dict[str, Any]) -> bool:
    """Whether the tower is SigLIP: LLaVA-NeXT under `full` (its model packs the grid's tiles as patches only, so a
    kept CLS would not fit; transformers pairs `full` with a tower without CLS, as OneVision's)."""
    return family == "llava-next" and s["vision_feature_select_strategy"] == "full"


def vision_config(clip: dict[str, Any], s: dict[str, Any], use_siglip: bool) -> dict[str, Any]:
    """The spec's CLIP tower at the settings' image and patch size, or a SigLIP tower of the same sizes."""
    shape = {"image_size": s["image_size"], "patch_size": s["patch_size"]}
    if not use_siglip:
        return {**clip, **shape}
    sizes = {key: clip[key] for key in TOWER_SIZES}
    return {"model_type": "siglip_vision_model", **sizes, **shape, "vision_use_head": False}


def reshape(family: str, files: Files, settings: dict[str, Any]) -> Files:
    """A copy of config.json, preprocessor_config.json and processor_config.json with the settings written in
    (the checkpoint's own where a setting is not given: then the files are unchanged)."""
    s = {**(NEXT_REAL if family == "llava-next" else REAL), **settings}
    out = json.loads(json.dumps(files))
    config, images, processor = (out[name] for name in ("config.json", *PROCESSING))
    config["vision_config"] = vision_config(config["vision_config"], s, siglip(family, s))
    config["vision_feature_select_strategy"] = s["vision_feature_select_strategy"]
    images["crop_size"] = {"height": s["image_size"], "width": s["image_size"]}
    images["size"] = {"shortest_edge": s["image_size"]}
    if "grid" in s:
        config["image_grid_pinpoints"] = images["image_grid_pinpoints"] = pinpoints(s["image_size"], s["grid"])
    processor["patch_size"] = s["patch_size"]
    processor["vision_feature_select_strategy"] = s["vision_feature_select_strategy"]
    processor["num_additional_image_tokens"] = 0 if siglip(family, s) else 1  # CLIP's CLS
    return out
