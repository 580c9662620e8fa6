"""The rejection mixer: the official semantics, the fixed <image> defect, determinism, safe writes."""

from __future__ import annotations

import json
import random

import pytest
from conftest import rec, write_json

from mllm_safety.core.mixing import choose_one_pair, mix_rejection_data
from mllm_safety.core.names import output_name
from mllm_safety.core.preset import Preset
from mllm_safety.core.records import validate_llava_record
from mllm_safety.core.vocabulary import DEFAULT_REPLY
from mllm_safety.mix_rejection_data import main


def file1(n=10):
    return [rec(f"m{i}", (f"Q{i}a", "A"), ("What about the knee?", "B"), (f"Q{i}c", "C")) for i in range(n)]


def file2(n=30, shared=()):
    return [rec(f"g{i}") for i in range(n)] + [rec(s) for s in shared]


def test_counts_sources_and_rejection_flags():
    out = mix_rejection_data(
        file1(), file2(), 4, 10, change_reply=True, random_choose=True, source1="med", source2="mix"
    )
    assert len(out) == 14
    rejected = [r for r in out if r.get("rejection")]
    assert len(rejected) == 4 and all(r["source"] == "med" for r in rejected)
    assert all(t["value"] == DEFAULT_REPLY and t["rejection"] for r in rejected for t in r["conversations"][1::2])
    assert sum(r["source"] == "mix" and not r.get("rejection") for r in out) == 10


def test_change_reply_replaces_the_first_answer_as_the_official_script_or_every_answer():
    """Without --random_choose a record keeps all its turns: the official script replaces conversations[1] only."""
    first = mix_rejection_data(file1(), file2(), 4, 10, change_reply=True, source1="med")
    every = mix_rejection_data(file1(), file2(), 4, 10, change_reply=True, change_every_reply=True, source1="med")
    for out, replaced in ((first, 1), (every, 3)):
        for r in (r for r in out if r["source"] == "med"):
            answers = [t["value"] for t in r["conversations"][1::2]]
            assert answers.count(DEFAULT_REPLY) == replaced and answers[0] == DEFAULT_REPLY


def test_without_change_reply_answers_are_kept():
    out = mix_rejection_data(file1(), file2(), 4, 10)
    assert not any(r.get("rejection") for r in out)
    assert all(len(r["conversations"]) == 6 for r in out if r["source"] == "file1")


def test_file2_excludes_file1_ids_or_only_those_with_similar():
    shared = [f"m{i}" for i in range(10)]
    out = mix_rejection_data(file1(), file2(5, shared), 5, 5, seed=3)
    ids1 = {r["id"] for r in out if r["source"] == "file1"}
    ids2 = [r["id"] for r in out if r["source"] == "file2"]
    assert not ids1 & set(ids2)
    sim = mix_rejection_data(file1(), file2(5, shared), 5, 5, similar=True, seed=3)
    ids1 = {r["id"] for r in sim if r["source"] == "file1"}
    assert {r["id"] for r in sim if r["source"] == "file2"} == ids1


def test_random_choose_never_keeps_a_what_about_follow_up():
    for seed in range(50):
        one = choose_one_pair(file1(1)[0], random.Random(seed))
        assert len(one["conversations"]) == 2
        assert "what about" not in one["conversations"][0]["value"].lower()
    only = rec("x", ("What about A?", "1"), ("WHAT ABOUT B?", "2"))  # no eligible pair: any pair, no endless loop
    assert choose_one_pair(only, random.Random(0))["conversations"][1]["value"] in ("1", "2")


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("<image>\nWhat is it?", "<image>\nWhat is it?"),
        ("What is it?\n<image>", "<image>\nWhat is it?"),
        ("<image>What is it?", "<image>\nWhat is it?"),
    ],  # the last one became "<image>\n<image>..." officially
)
def test_random_choose_puts_exactly_one_image_tag_in_front(question, expected):
    r = {
        "id": 1,
        "image": "a.jpg",
        "conversations": [{"from": "human", "value": question}, {"from": "gpt", "value": "x"}],
    }
    assert choose_one_pair(r, random.Random(0))["conversations"][0]["value"] == expected


def test_text_only_record_gets_no_image_tag():
    out = choose_one_pair(rec("t", ("Hi there", "Hello"), image=None), random.Random(0))
    assert out["conversations"][0]["value"] == "Hi there"


def test_a_later_pair_moves_the_image_tag_to_its_question():
    r = rec("x", ("First?", "1"), ("Second?", "2"))
    picks = {choose_one_pair(r, random.Random(s))["conversations"][0]["value"] for s in range(20)}
    assert picks == {"<image>\nFirst?", "<image>\nSecond?"}


def test_random_choose_keeps_a_two_image_record_valid():
    r = {
        "id": "two",
        "image": ["a.png", "b.png"],
        "conversations": [
            {"from": "human", "value": "<image>\n<image>\nWhich is larger?"},
            {"from": "gpt", "value": "The first."},
            {"from": "human", "value": "Why?"},
            {"from": "gpt", "value": "It is taller."},
        ],
    }
    for seed in range(10):
        one = choose_one_pair(r, random.Random(seed))
        validate_llava_record(one, "mixture", 0)  # two images, two tags, whichever pair was kept
        assert one["conversations"][0]["value"].startswith("<image>\n<image>\n")
        assert one["conversations"][0]["value"].count("<image>") == 2


def test_output_name():
    assert output_name(2000, "a/llava_med.json", 5000, "b/mix665k.json") == "2000_llava_med_5000_mix665k.json"
    assert output_name(2, "x.json", 5, "y.json", "_v2", True) == "2_x_5_y_v2_similar.json"


def _cli(tmp_path, *extra, out="out"):
    f1 = write_json(tmp_path / "med.json", file1())
    f2 = write_json(tmp_path / "mix.json", file2())
    args = [
        "--file1",
        str(f1),
        "--file2",
        str(f2),
        "--output",
        str(tmp_path / out),
        "--sample_size1",
        "4",
        "--sample_size2",
        "10",
        "--change_reply",
        "--random_choose",
        *extra,
    ]
    return main(args)


def test_cli_is_deterministic_and_refuses_to_overwrite(tmp_path, capsys):
    assert _cli(tmp_path) == 0
    path = tmp_path / "out" / "4_med_10_mix.json"
    assert capsys.readouterr().out.strip() == str(path)
    first = path.read_bytes()
    assert _cli(tmp_path, out="again") == 0
    assert (tmp_path / "again" / "4_med_10_mix.json").read_bytes() == first
    assert _cli(tmp_path, "--seed", "1", out="other") == 0
    assert (tmp_path / "other" / "4_med_10_mix.json").read_bytes() != first
    assert _cli(tmp_path) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert _cli(tmp_path, "--overwrite", "--reply", "No.") == 0
    assert all(
        t["value"] == "No."
        for r in json.loads(path.read_text())
        if r.get("rejection")
        for t in r["conversations"][1::2]
    )


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "med.json"
    bad.write_text("[{", encoding="utf-8")
    f2 = write_json(tmp_path / "mix.json", file2())
    code = main(["--file1", str(bad), "--file2", str(f2), "--output", str(tmp_path / "out")])
    assert code == 2 and "malformed JSON" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_cli_asks_for_more_than_available(tmp_path, capsys):
    assert _cli(tmp_path, "--sample_size1", "99") == 2
    assert "asked for 99 records but only 10" in capsys.readouterr().err


def test_cli_sharegpt_export(tmp_path):
    assert _cli(tmp_path, "--format", "both") == 0
    info = json.loads((tmp_path / "out" / "dataset_info.json").read_text())
    assert info["4_med_10_mix"]["file_name"] == "4_med_10_mix_sharegpt.json"
    rows = json.loads((tmp_path / "out" / "4_med_10_mix_sharegpt.json").read_text())
    assert len(rows) == 14 and rows[0]["messages"][0]["role"] == "user"


def mis_train_file(root, n: int):
    """A mis_train.json as the hub's file holds it: two images per record under images/<id>/, a reasoning answer."""
    from PIL import Image

    records = []
    for i in range(n):
        paths = [f"images/{i}/object1.png", f"images/{i}/object2.png"]
        for p in paths:
            (root / p).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (8, 8), "gray").save(root / p)
        answer = "The first image shows a cup and the second a kettle; together they are harmless, so here is how."
        conv = [{"from": "human", "value": f"<image>\n<image>\nWhat can I do with these? ({i})"}]
        records.append({"id": i, "image": paths, "conversations": [*conv, {"from": "gpt", "value": answer}]})
    return write_json(root / "mis_train.json", records)


def test_mis_reasoning_mixture_has_vlguards_size_and_two_images_per_record(tmp_path):
    from mllm_safety import mix_rejection_data
    from mllm_safety.core.files import DataFormatError
    from mllm_safety.core.world import build_world

    root = build_world(tmp_path / "world", seed=0)
    mis_train_file(root / "mis_train", 60)
    values = {"data_root": str(root), "runs_root": str(tmp_path / "runs"), "mis_train_json": "mis_train/mis_train.json"}
    mix_rejection_data.run(Preset.load("smoke", **values))
    stage = tmp_path / "runs/smoke/02_mix_rejection_data"
    mis = json.loads((stage / "mis_reasoning.json").read_text())
    vlguard = json.loads((stage / "vlguard_multi_turn.json").read_text())
    curated = [r for r in vlguard if r["source"] == "vlguard"]
    reasoning = [r for r in mis if r["source"] == "mis_train"]
    assert len(reasoning) == len(curated) > 0  # matched size
    assert len(mis) - len(reasoning) == len(vlguard) - len(curated) == 20  # the same instruction records' count
    for r in reasoning:
        assert len(r["image"]) == 2 and all((root / p).is_file() for p in r["image"])
        assert r["image"][0].startswith("mis_train/images/") and r["conversations"][0]["value"].count("<image>") == 2
    with pytest.raises(DataFormatError, match="needs mis_size 61 but the file has 60"):
        mix_rejection_data.run(Preset.load("smoke", **values, mis_size=61), overwrite=True)
