"""Benchmark loaders read the real layouts back into EvalItems; bad layouts fail clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from mllm_safety.core.benchmarks import FIGSTEP_PROMPT, MMSB_SCENARIOS
from mllm_safety.core.files import DataFormatError
from mllm_safety.core.world import MMSB_PER_SCENARIO, make_world
from mllm_safety.data import load_benchmark


@pytest.mark.parametrize(
    ("mode", "subdir", "prompt_start"),
    [
        ("sd_typo", "SD_TYPO", "The bottom of the image"),
        ("typo", "TYPO", "The bottom of the image"),
        ("sd", "SD", "The image shows an activity"),
        ("text", None, "give me advice on"),  # the held-out text paraphrases, in turn
    ],
)
def test_mm_safetybench_modes(world_data, mode, subdir, prompt_start):
    items = load_benchmark("mm_safetybench", world_data / "mm_safetybench", mode=mode)
    assert len(items) == MMSB_PER_SCENARIO * len(MMSB_SCENARIOS)  # the world asks ten questions per scenario
    first = items[0]
    assert first.id == "01-Illegal_Activitiy/0" and first.category == "01-Illegal_Activitiy"
    assert first.prompt.startswith(prompt_start) and first.harmful
    if subdir is None:
        assert first.image is None
    else:
        assert Path(first.image).parts[-3:] == ("01-Illegal_Activitiy", subdir, "0.jpg")
    assert len({it.id for it in items}) == len(items)


def test_mm_safetybench_default_mode_is_sd_typo(world_data):
    assert load_benchmark("mm_safetybench", world_data / "mm_safetybench")[0].meta["mode"] == "sd_typo"


def test_mm_safetybench_unknown_scenario(world_data, tmp_path):
    root = shutil.copytree(world_data / "mm_safetybench", tmp_path / "mmsb")
    (root / "processed_questions" / "01-Illegal_Activitiy.json").rename(root / "processed_questions" / "99-Other.json")
    with pytest.raises(DataFormatError, match=r"unknown scenario\(s\) \['99-Other'\]"):
        load_benchmark("mm_safetybench", root)
    shutil.move(root / "imgs" / "01-Illegal_Activitiy", root / "imgs" / "99-Other")
    items = load_benchmark("mm_safetybench", root, scenarios=(*MMSB_SCENARIOS, "99-Other"))
    assert any(it.category == "99-Other" for it in items)


def test_missing_images_fail_or_skip(world_data, tmp_path):
    root = shutil.copytree(world_data / "mm_safetybench", tmp_path / "mmsb")
    (root / "imgs" / "02-HateSpeech" / "SD_TYPO" / "0.jpg").unlink()
    with pytest.raises(DataFormatError, match=r"1 of 130 item\(s\) have missing image files; first: 02-HateSpeech/0"):
        load_benchmark("mm_safetybench", root)
    assert len(load_benchmark("mm_safetybench", root, missing_images="skip")) == 129
    assert len(load_benchmark("mm_safetybench", root, mode="text")) == 130  # text mode needs no image


def test_figstep(world_data):
    items = load_benchmark("figstep", world_data / "figstep")
    topics = make_world(0).harmful_test  # the world's FigStep asks one question per held-out harmful topic
    assert len(items) == len(topics) and items[0].id == "1_1" and items[0].category == topics[0]
    assert all(it.prompt == FIGSTEP_PROMPT and it.harmful for it in items)
    assert items[0].image.endswith("images/SafeBench/query_ForbidQI_1_1_6.png")


def test_xstest(world_data):
    items = load_benchmark("xstest", world_data / "xstest")
    safe = [it for it in items if not it.harmful]
    assert len(safe) == 3 * (len(items) - len(safe))  # three safe prompts per unsafe contrast prompt
    assert {it.category for it in safe} == {"homonyms", "figurative_language", "safe_targets"}
    assert all(it.image is None for it in items)
    assert all(it.category.startswith("contrast_") for it in items if it.harmful)


def test_csv_missing_column(tmp_path):
    (tmp_path / "xstest_prompts.csv").write_text("id,prompt,type\n1,hi,homonyms\n", encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"missing column\(s\) \['label', 'focus', 'note'\]"):
        load_benchmark("xstest", tmp_path)


@pytest.mark.parametrize(("subset", "harmful"), [("unsafes", True), ("safe_unsafes", True), ("safe_safes", False)])
def test_vlguard_test_subsets(world_data, subset, harmful):
    items = load_benchmark("vlguard_test", world_data / "vlguard", subset=subset)
    assert items and all(it.harmful == harmful for it in items)
    assert all(Path(it.image).is_file() for it in items)
    assert len({it.id for it in items}) == len(items)


def test_llava_eval_json_and_jsonl(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    records = [
        {
            "id": "q1",
            "image": "a.jpg",
            "category": "sci",
            "conversations": [
                {"from": "human", "value": "<image>\nWhich letter? A. x B. y"},
                {"from": "gpt", "value": "B"},
            ],
        }
    ]
    (tmp_path / "qs.json").write_text(json.dumps(records), encoding="utf-8")
    item = load_benchmark("llava_eval_json", tmp_path / "qs.json")[0]
    assert (item.id, item.benchmark, item.category, item.prompt) == ("q1", "qs", "sci", "Which letter? A. x B. y")
    assert item.meta["answer"] == "B" and item.image == str(tmp_path / "a.jpg")
    lines = [{"question_id": 7, "image": "a.jpg", "text": "What is it?"}, {"question_id": 8, "text": "No image"}]
    (tmp_path / "qs.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    items = load_benchmark("llava_eval_json", tmp_path / "qs.jsonl", benchmark="vqa")
    assert [it.id for it in items] == ["7", "8"] and items[1].image is None and items[0].benchmark == "vqa"


def test_unknown_benchmark_and_missing_root(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark"):
        load_benchmark("nope", tmp_path)
    with pytest.raises(DataFormatError, match="not found"):
        load_benchmark("xstest", tmp_path / "absent")


def test_llava_jsonl_in_the_real_shapes(tmp_path):
    """LLaVA's MME file asks two questions per image under one question_id; LLaVA-Med's qa50 keeps <image> in text."""
    (tmp_path / "x.png").write_bytes(b"x")
    lines = [
        {
            "question_id": "artwork/1.jpg",
            "image": "x.png",
            "text": "Is it a painting?\nAnswer the question using a single word or phrase.",
            "category": "artwork",
        },
        {
            "question_id": "artwork/1.jpg",
            "image": "x.png",
            "text": "Is it a photo?\nAnswer the question using a single word or phrase.",
            "category": "artwork",
        },
        {"question_id": 0, "image": "x.png", "text": "What is the organ in the image?\n<image>"},
    ]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    items = load_benchmark("llava_eval_json", tmp_path / "q.jsonl")
    assert [it.id for it in items] == ["artwork/1.jpg", "artwork/1.jpg#2", "0"]
    assert items[1].meta["question_id"] == "artwork/1.jpg" and items[1].prompt.startswith("Is it a photo?")
    assert items[2].prompt == "What is the organ in the image?"
    (tmp_path / "torn.jsonl").write_text(json.dumps(lines[0]) + '\n{"question_id": 3, "te', encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"torn.jsonl: line 2 is not JSON"):
        load_benchmark("llava_eval_json", tmp_path / "torn.jsonl")


def test_scienceqa_img_is_the_image_subset_with_llavas_instruction(tmp_path):
    """llava_test_CQM-A.json as LLaVA's converter writes it: image questions carry "\n<image>", text ones none."""
    question = "Context: N/A\nQuestion: Which animal is a mammal?\nOptions: (A) frog (B) dog"
    records = [
        {
            "id": "4",
            "image": "4/image.png",
            "conversations": [
                {"from": "human", "value": question + "\n<image>"},
                {"from": "gpt", "value": "The answer is B."},
            ],
        },
        {
            "id": "5",
            "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "The answer is B."}],
        },
    ]
    (tmp_path / "images/test/4").mkdir(parents=True)
    (tmp_path / "images/test/4/image.png").write_bytes(b"x")
    (tmp_path / "llava_test_CQM-A.json").write_text(json.dumps(records), encoding="utf-8")
    img = load_benchmark("scienceqa_img", tmp_path)
    assert [it.id for it in img] == ["4"] and img[0].meta["answer"] == "B"
    assert img[0].prompt == question + "\nAnswer with the option's letter from the given choices directly."
    assert img[0].image.endswith("images/test/4/image.png")
    txt = load_benchmark("scienceqa_txt", tmp_path)
    assert [it.id for it in txt] == ["5"] and txt[0].image is None and txt[0].benchmark == "scienceqa_txt"


def vizwiz_record(image: str, question: str, answers: list[str], kind: str) -> dict:
    """One entry of VizWiz's Annotations/val.json as distributed."""
    said = [{"answer": a, "answer_confidence": "yes"} for a in answers]
    return {"image": image, "question": question, "answers": said, "answer_type": kind, "answerable": 1}


def test_vizwiz_val_is_asked_with_the_papers_instruction(tmp_path):
    records = [
        vizwiz_record("VizWiz_val_00000000.jpg", "What is this?", ["soup"] * 10, "other"),
        vizwiz_record("VizWiz_val_00000001.jpg", "Is it on?", ["yes"] * 4 + ["no"] * 6, "yes/no"),
    ]
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations/val.json").write_text(json.dumps(records), encoding="utf-8")
    (tmp_path / "val").mkdir()
    for rec in records:
        (tmp_path / "val" / rec["image"]).write_bytes(b"x")
    items = load_benchmark("vizwiz", tmp_path)
    assert [(it.id, it.category) for it in items] == [
        ("VizWiz_val_00000000", "other"),
        ("VizWiz_val_00000001", "yes/no"),
    ]
    # the prompt, written out from the paper's evaluation/evaluate_vizwiz.py
    official = "Is it on?\nWhen the provided information is insufficient, respond with 'Unanswerable'.\n"
    assert items[1].prompt == official + "Answer the question using a single word or phrase."
    assert items[1].meta["answer"] == ["yes"] * 4 + ["no"] * 6 and not items[1].harmful
    assert items[0].image == str(tmp_path / "val" / "VizWiz_val_00000000.jpg")


def test_vizwiz_without_its_annotations_or_answers_is_one_line(tmp_path):
    with pytest.raises(DataFormatError, match=r"no Annotations/val.json or val.json. Fix: unzip VizWiz"):
        load_benchmark("vizwiz", tmp_path)
    (tmp_path / "val.json").write_text(json.dumps([{"image": "a.jpg", "question": "What?"}]), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"val.json.*'answers' must be a list"):
        load_benchmark("vizwiz", tmp_path)
