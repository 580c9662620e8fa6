"""Replicas of llava-hf/llava-1.5-7b-hf and llava-v1.6-vicuna-7b-hf (real tokenizer, template, processor; random
tiny weights), and labels that equal the official LLaVA `preprocess_v1` token for token.

The expected ids below were written from the official rules (LLaVA's conv_vicuna_v1 prompt, its
tokenizer_image_token, the preprocess_v1 masking loop, and the paper's train_without_eos.py masking of the final
</s> of rejection samples), not from this repository's renderer.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from mllm_safety.core.images import expand_to_square, load_images, mean_colour
from mllm_safety.core.labels import IGNORE_INDEX, Encoder, char_kinds
from mllm_safety.core.vocabulary import DEFAULT_REPLY
from mllm_safety.tools.replicas import build_replica

# "A chat between ... the user's questions. USER: <image>\n" as LLaVA's tokenizer_image_token writes it (-200 = image)
SYSTEM_USER_IMAGE = [
    1,
    319,
    13563,
    1546,
    263,
    12758,
    1404,
    322,
    385,
    23116,
    21082,
    20255,
    29889,
    450,
    20255,
    4076,
    8444,
    29892,
    13173,
    29892,
    322,
    1248,
    568,
    6089,
    304,
    278,
    1404,
    29915,
    29879,
    5155,
    29889,
    3148,
    1001,
    29901,
    29871,
    -200,
    29871,
    13,
]
WHAT_IS_THIS_ASSISTANT = [5618, 338, 445, 29973, 319, 1799, 9047, 13566, 29901]  # "What is this? ASSISTANT:"
A_CAT = [319, 6635, 29889, 2]  # " A cat.</s>"
SECOND_TURN_PROMPT = [
    3148,
    1001,
    29901,
    1724,
    2927,
    338,
    372,
    29973,
    319,
    1799,
    9047,
    13566,
    29901,
]  # "USER: What color is it? ASSISTANT:"
IT_IS_BLACK = [739, 338, 4628, 29889, 2]  # " It is black.</s>"
REJECTION = [306, 29915, 29885, 7423, 29892, 541, 306, 2609, 6985, 411, 596, 2009, 2]  # " I'm sorry, ... request</s>"


@pytest.fixture(scope="session")
def llava15(tmp_path_factory):
    return AutoProcessor.from_pretrained(build_replica("llava-1.5", tmp_path_factory.mktemp("replicas") / "llava-1.5"))


@pytest.fixture(scope="session")
def llava_next(tmp_path_factory):
    return AutoProcessor.from_pretrained(build_replica("llava-next", tmp_path_factory.mktemp("replicas") / "next"))


@pytest.fixture(scope="module")
def image_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("img")
    Image.new("RGB", (500, 300), "red").save(root / "a.png")
    return root


def official(ids_with_image: list[int], labels: list[int] | None = None) -> tuple[list[int], list[int]]:
    """Expand LLaVA's single -200 into the 576 image tokens of llava-hf's processor (label -100 for all)."""
    at = ids_with_image.index(-200)
    ids = ids_with_image[:at] + [32000] * 576 + ids_with_image[at + 1 :]
    if labels is None:
        return ids, []
    return ids, labels[:at] + [IGNORE_INDEX] * 576 + labels[at + 1 :]


def record(*pairs, rejection=False):
    conv = []
    for k, (q, a) in enumerate(pairs):
        conv += [
            {"from": "human", "value": ("<image>\n" if k == 0 else "") + q},
            {"from": "gpt", "value": a, **({"rejection": True} if rejection else {})},
        ]
    return {"id": "r", "image": "a.png", "conversations": conv, **({"rejection": True} if rejection else {})}


def masked(n: int) -> list[int]:
    return [IGNORE_INDEX] * n


def test_the_replicas_carry_the_real_processing(llava15, llava_next):
    assert type(llava15.tokenizer).__name__ == "TokenizersBackend" and len(llava15.tokenizer) == 32002
    assert llava15.tokenizer("Hello world!").input_ids == [1, 15043, 3186, 29991]
    assert (llava15.image_token_id, llava15.tokenizer.pad_token_id, llava15.tokenizer.eos_token_id) == (32000, 32001, 2)
    assert llava15.image_processor.crop_size == {"height": 336, "width": 336}
    assert (
        llava15.apply_chat_template(
            [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]}],
            add_generation_prompt=True,
        )
        == "USER: <image>\nWhat is this? ASSISTANT:"
    )
    # LLaVA-NeXT's checkpoint has no <pad>: it pads with <unk>; its any-resolution grid is the real one
    assert llava_next.tokenizer.pad_token_id == 0 and "<pad>" not in llava_next.tokenizer.get_vocab()
    assert llava_next.image_processor.image_grid_pinpoints[-1] == [336, 1008]


def test_vicuna_v1_single_turn_equals_the_official_preprocess(llava15, image_root):
    s = Encoder(llava15, "vicuna_v1", image_root).encode(record(("What is this?", "A cat.")))
    ids, labels = official(
        SYSTEM_USER_IMAGE + WHAT_IS_THIS_ASSISTANT + A_CAT,
        masked(len(SYSTEM_USER_IMAGE) + len(WHAT_IS_THIS_ASSISTANT)) + A_CAT,
    )
    assert s["input_ids"].tolist() == ids and s["labels"].tolist() == labels


def test_vicuna_v1_two_turns_equal_the_official_preprocess(llava15, image_root):
    rec = record(("What is this?", "A cat."), ("What color is it?", "It is black."))
    s = Encoder(llava15, "vicuna_v1", image_root).encode(rec)
    head = SYSTEM_USER_IMAGE + WHAT_IS_THIS_ASSISTANT
    ids, labels = official(
        head + A_CAT + SECOND_TURN_PROMPT + IT_IS_BLACK,
        masked(len(head)) + A_CAT + masked(len(SECOND_TURN_PROMPT)) + IT_IS_BLACK,
    )
    assert s["input_ids"].tolist() == ids and s["labels"].tolist() == labels


@pytest.mark.parametrize("mask", [True, False])
def test_vicuna_v1_rejection_masks_only_its_final_eos(llava15, image_root, mask):
    rec = record(("What is this?", DEFAULT_REPLY), rejection=True)
    s = Encoder(llava15, "vicuna_v1", image_root, mask_eos_on_rejection=mask).encode(rec)
    head = SYSTEM_USER_IMAGE + WHAT_IS_THIS_ASSISTANT
    trained = REJECTION[:-1] + ([IGNORE_INDEX] if mask else [2])  # the paper: target[cur_len - 1] = IGNORE_INDEX
    ids, labels = official(head + REJECTION, masked(len(head)) + trained)
    assert s["input_ids"].tolist() == ids and s["labels"].tolist() == labels


def trained_text(sample, processor) -> str:
    ids = sample["input_ids"][sample["labels"] != IGNORE_INDEX]
    return processor.tokenizer.decode(ids, skip_special_tokens=False)


@pytest.mark.parametrize("rejection", [False, True])
def test_llava_hf_chat_template_trains_every_turn_and_an_eos(llava15, image_root, rejection):
    """llava-hf's template ends assistant turns with a space: the EOS is taught as its own segment, and a
    multi-turn record keeps every turn (it used to be skipped as template_not_incremental)."""
    rec = record(("What is this?", "A cat."), ("What color is it?", "It is black."), rejection=rejection)
    encoder = Encoder(llava15, "chat_template", image_root)
    text, _ = char_kinds(encoder.segments(rec))
    assert (
        text == "USER: <image>\nWhat is this? ASSISTANT: A cat.</s> USER: What color is it? ASSISTANT: It is black.</s>"
    )
    s = encoder.encode(rec)
    expected = "A cat. It is black." if rejection else "A cat.</s> It is black.</s>"
    assert trained_text(s, llava15) == expected
    assert int((s["input_ids"] == 1).sum()) == 1  # one BOS


def test_llava_next_any_resolution_labels_skip_every_image_token(llava_next, image_root):
    s = Encoder(llava_next, "chat_template", image_root).encode(record(("What is this?", "A cat.")))
    image_tokens = int((s["input_ids"] == 32000).sum())
    assert image_tokens > 576 and s["pixel_values"].dim() == 5  # the grid adds patches: more than one 336 crop
    assert trained_text(s, llava_next) == "A cat.</s>"


def test_pad_to_square_keeps_the_bottom_line_of_an_sd_typo_image(llava15, tmp_path):
    """An MM-SafetyBench SD_TYPO image (1024x1024 picture above a typography strip): center-cropping cuts the strip's
    last line, LLaVA's padding to a square keeps it."""
    sd = Image.new("RGB", (1024, 1024), (90, 140, 200))
    strip = Image.new("RGB", (1024, 270), "white")
    strip.paste((0, 0, 0), (40, 180, 980, 235))  # the last line of text: a black bar at the bottom
    image = Image.new("RGB", (1024, 1294))
    image.paste(sd, (0, 0))
    image.paste(strip, (0, 1024))
    image.save(tmp_path / "sd_typo.jpg", quality=95)

    def black_share(aspect: str) -> float:
        pixels = llava15.image_processor(load_images([tmp_path / "sd_typo.jpg"], llava15, aspect), return_tensors="pt")
        mean = torch.tensor(llava15.image_processor.image_mean).view(3, 1, 1)
        std = torch.tensor(llava15.image_processor.image_std).view(3, 1, 1)
        rgb = pixels["pixel_values"][0] * std + mean
        return float((rgb.max(dim=0).values < 0.15).float().mean())

    assert black_share("processor") < 0.005  # the crop removed the bar
    assert black_share("pad") > 0.02  # the bar survives, about its share of the padded square
    assert expand_to_square(image, mean_colour(llava15)).getpixel((0, 0)) == (122, 116, 104)


def test_moving_the_tag_changes_exactly_the_tag_after_records_of_the_real_shapes(llava15, tmp_path, monkeypatch):
    """The real-shaped mix665k (LLaVA-Instruct records ending "...?\\n<image>", as id 000000033471): moving the tag to
    the front, as LLaVA's preprocess_multimodal does, changes the input ids of those records and of no other."""
    import json

    from mllm_safety.core import labels
    from mllm_safety.tools.realshapes import build

    data = build(tmp_path / "real-shapes")
    records = json.loads((data / "llava/llava_v1_5_mix665k.json").read_text(encoding="utf-8"))

    def ids() -> list[list[int]]:
        encoder = labels.Encoder(llava15, "llava_v1", data / "llava", 2048)
        return [encoder.encode(r)["input_ids"].tolist() for r in records]

    moved = ids()
    monkeypatch.setattr(labels, "image_tags_first", lambda text: text)  # the tag left where the record has it
    kept = ids()
    changed = [r["id"] for r, a, b in zip(records, moved, kept, strict=True) if a != b]
    after = [r["id"] for r in records if r["conversations"][0]["value"].rstrip().endswith("<image>")]
    assert after and changed == after, (changed, after)
    print(f"\n{len(changed)} of {len(records)} real-shaped mix665k records change their input ids")


def test_a_varied_replica_records_its_settings_and_its_processor_and_model_agree(tmp_path):
    import json

    from transformers import AutoConfig

    settings = {"image_size": 28, "patch_size": 7, "max_image_tiles": 2}
    path = build_replica("mllama", tmp_path / "mllama", settings=settings)
    assert json.loads((path / "replica.json").read_text())["settings"] == settings
    vision = AutoConfig.from_pretrained(path).vision_config
    images = AutoProcessor.from_pretrained(path).image_processor
    assert (vision.image_size, vision.patch_size, vision.max_num_tiles) == (28, 7, 2)
    assert (images.size["height"], images.max_image_tiles) == (28, 2)
    assert vision.supported_aspect_ratios == [[1, 1], [1, 2], [2, 1]]


@pytest.mark.parametrize("family", ["llava-1.5", "llava-next"])
def test_the_llava_checkpoints_own_settings_leave_its_spec_files_as_they_are(family):
    import json

    from mllm_safety.tools.families import SHAPES
    from mllm_safety.tools.families.llava import PROCESSING, reshape
    from mllm_safety.tools.replicas import REPLICAS, SPECS

    spec = SPECS / REPLICAS[family].spec
    files = {name: json.loads((spec / name).read_text()) for name in ("config.json", *PROCESSING)}
    assert reshape(family, files, SHAPES[family][0]) == files


def test_a_varied_llava_next_replica_has_its_processor_follow_its_model(tmp_path):
    from transformers import AutoConfig

    settings = {"image_size": 28, "patch_size": 7, "vision_feature_select_strategy": "full", "grid": "1x1,1x2,2x1"}
    path = build_replica("llava-next", tmp_path / "next", settings=settings)
    config, processor = AutoConfig.from_pretrained(path), AutoProcessor.from_pretrained(path)
    vision, images = config.vision_config, processor.image_processor
    assert (vision.model_type, vision.image_size, vision.patch_size) == ("siglip_vision_model", 28, 7)
    assert config.image_grid_pinpoints == images.image_grid_pinpoints == [[28, 28], [28, 56], [56, 28]]
    assert images.crop_size == {"height": 28, "width": 28} and images.size == {"shortest_edge": 28}
    assert (processor.patch_size, processor.num_additional_image_tokens) == (7, 0)  # SigLIP has no CLS
    assert processor.vision_feature_select_strategy == config.vision_feature_select_strategy == "full"
