"""General mixtures (fractions, several sources, the curated baseline) and the VLGuard ablation transforms."""

from __future__ import annotations

import pytest
from conftest import rec

from mllm_safety.core.files import DataFormatError
from mllm_safety.core.mixing import (
    curated_baseline,
    fractions_problem,
    mix_by_fraction,
    rejection_share,
    split_counts,
)
from mllm_safety.core.records import pair_kind
from mllm_safety.core.vlguard import (
    VLGUARD_VARIANTS,
    drop_safe_safe,
    plain_refusals,
    replace_harmful_images,
    split_single_turn,
    vlguard_variant,
)
from mllm_safety.core.vocabulary import DEFAULT_REPLY
from mllm_safety.data import load_llava_json, load_vlguard, vlguard_to_llava

BENIGN = {"mix": [rec(f"g{i}") for i in range(100)], "textvqa": [rec(f"t{i}") for i in range(100)]}
REJECT = {"med": [rec(f"m{i}", ("Q", "A"), ("What about B?", "C")) for i in range(100)]}


@pytest.mark.parametrize(("fraction", "n_rej"), [(0.0, 0), (0.1, 10), (0.286, 29), (1.0, 100)])
def test_fraction_gives_the_share_asked_for(fraction, n_rej):
    out = mix_by_fraction({"mix": BENIGN["mix"]}, REJECT, fraction, 100, seed=1)
    assert len(out) == 100 and sum(bool(r.get("rejection")) for r in out) == n_rej
    assert rejection_share(out) == pytest.approx(n_rej / 100)


def test_several_sources_split_evenly_and_deterministically():
    out = mix_by_fraction(BENIGN, REJECT, 0.2, 101, seed=2)
    sources = [r["source"] for r in out]
    assert (sources.count("mix"), sources.count("textvqa"), sources.count("med")) == (41, 40, 20)
    assert out == mix_by_fraction(BENIGN, REJECT, 0.2, 101, seed=2)
    assert out != mix_by_fraction(BENIGN, REJECT, 0.2, 101, seed=3)
    assert split_counts(5, ["a", "b"]) == {"a": 3, "b": 2}


def test_fraction_out_of_range_and_too_few_records():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mix_by_fraction(BENIGN, REJECT, 1.5, 10)
    with pytest.raises(DataFormatError, match="asked for 200"):
        mix_by_fraction({"mix": BENIGN["mix"]}, REJECT, 0.0, 200)


def test_a_fraction_that_rounds_to_none_or_all_of_the_records_is_refused():
    with pytest.raises(DataFormatError, match=r"0.1 of 3 records rounds to 0 rejection records.*multiple of 10"):
        mix_by_fraction({"mix": BENIGN["mix"]}, REJECT, 0.1, 3)
    with pytest.raises(DataFormatError, match="0.9 of 3 records rounds to 3"):
        mix_by_fraction({"mix": BENIGN["mix"]}, REJECT, 0.9, 3)


def test_stage_02_fractions_are_whole_counts_with_distinct_names():
    assert fractions_problem([0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3], 7000) is None  # the paper's sweep
    assert "not a whole number. Fix: make fraction_total a multiple of 100" in fractions_problem([0.01, 0.5], 50)
    assert "both make mixture frac_30pct" in fractions_problem([0.3, 0.3], 100)


def test_same_pool_for_benign_and_rejection_never_repeats_a_record():
    pool = {"mix": BENIGN["mix"]}
    out = mix_by_fraction(pool, pool, 0.5, 100, seed=0)
    assert len({r["id"] for r in out}) == 100


@pytest.fixture()
def vlguard(world_data):
    return load_vlguard(world_data / "vlguard/train.json")


def test_curated_baseline_keeps_all_curated_records(vlguard):
    llava = vlguard_to_llava(vlguard)
    out = curated_baseline(llava, BENIGN["mix"], 30, seed=0)
    assert len(out) == len(llava) + 30 and sum(r["source"] == "vlguard" for r in out) == len(llava)


def test_split_single_turn(vlguard):
    single = split_single_turn(vlguard_to_llava(vlguard))
    assert len(single) == sum(len(r["instr-resp"]) for r in vlguard)
    assert all(len(r["conversations"]) == 2 and r["conversations"][0]["value"].startswith("<image>\n") for r in single)
    assert all(r["conversations"][0]["value"].count("<image>") == 1 for r in single)


def test_drop_safe_safe_removes_only_the_safe_instruction(vlguard):
    out = drop_safe_safe(vlguard)
    kinds = [pair_kind(p)[0] for r in out for p in r["instr-resp"]]
    assert "safe_safe" not in kinds and kinds.count("safe_unsafe") == sum(r["safe"] for r in vlguard)
    assert any(pair_kind(p)[0] == "safe_safe" for r in vlguard for p in r["instr-resp"])  # input untouched


def test_replace_harmful_images_changes_unsafe_images_only(vlguard):
    out = replace_harmful_images(vlguard, ["benign/1.png", "benign/2.png"], seed=0)
    for old, new in zip(vlguard, out, strict=True):
        assert (new["image"] in ("benign/1.png", "benign/2.png")) == (not old["safe"])


def test_plain_refusals_replace_answers_to_harmful_instructions(vlguard):
    out = vlguard_to_llava(plain_refusals(vlguard), seed=None)  # file order: the safe pair first
    for r in out:
        answers = r["conversations"][1::2]
        if r["safe"]:
            assert answers[0]["value"] != DEFAULT_REPLY and answers[1]["value"] == DEFAULT_REPLY
        assert r["rejection"] and answers[-1]["rejection"]


@pytest.mark.parametrize("variant", VLGUARD_VARIANTS)
def test_every_variant_is_valid_llava_json(variant, vlguard, tmp_path):
    from conftest import write_json

    out = vlguard_variant(vlguard, variant, ["benign.png"], seed=0)
    assert load_llava_json(write_json(tmp_path / "v.json", out))
    with pytest.raises(ValueError, match="unknown VLGuard variant"):
        vlguard_variant(vlguard, "nope", [])


def test_vlguard_pairs_are_shuffled_per_image_as_vlguards_converter_does(vlguard):
    """VLGuard's converter seeds once (0) and shuffles each safe image's (safe, unsafe) pair in file order."""
    import random

    rng = random.Random(0)
    expected = []
    for item in vlguard:
        pairs = list(item["instr-resp"])
        if len(pairs) == 2:
            rng.shuffle(pairs)
        expected.append([pair_kind(p)[1] for p in pairs])
    out = vlguard_to_llava(vlguard)
    got = [[t["value"].removeprefix("<image>\n") for t in r["conversations"][0::2]] for r in out]
    assert got == expected and got != [[pair_kind(p)[1] for p in r["instr-resp"]] for r in vlguard]
    assert vlguard_to_llava(vlguard) == out  # seeded


def test_attack_style_questions_replace_only_the_question_a_rejection_answers():
    from mllm_safety.core.mixing import restyle_questions
    from mllm_safety.core.vocabulary import ATTACK_STYLE_QUESTIONS

    rejection = rec("m1", ("What is shown?", DEFAULT_REPLY), ("What about B?", "C"))
    rejection["conversations"][1]["rejection"] = True
    normal = rec("g1")
    out = restyle_questions([rejection, normal], "attack_style", seed=0)
    first = out[0]["conversations"][0]["value"]
    assert first.startswith("<image>\n") and first.removeprefix("<image>\n") in ATTACK_STYLE_QUESTIONS
    assert out[0]["conversations"][1:] == rejection["conversations"][1:]  # the answers and the follow-up stay
    assert out[1] == normal and restyle_questions([rejection], "own") == [rejection]
    with pytest.raises(ValueError, match="question style must be one of"):
        restyle_questions([rejection], "shouting")


def test_instruction_style_questions_come_from_the_mixtures_own_single_image_questions():
    from mllm_safety.core.benchmarks import FIGSTEP_PROMPT
    from mllm_safety.core.mixing import instruction_questions, restyle_questions
    from mllm_safety.core.vocabulary import ATTACK_STYLE_QUESTIONS
    from mllm_safety.core.world import MMSB_SD_Q, MMSB_TYPO_Q

    rejection = rec("m1", ("What is shown?", DEFAULT_REPLY))
    rejection["conversations"][1]["rejection"] = True
    asked = [rec(f"g{k}", (q, "fine")) for k, q in enumerate(("Describe it.", "What color?", "Describe it."))]
    choice = rec("c1", ("Which one?\nA. x\nB. y", "A"))  # a multi-line question is not a style to copy
    two = rec("p1", ("Compare them.", "ok"), image=["a.jpg", "b.jpg"])
    text = rec("t1", ("Hello?", "hi"), image=None)
    records = [rejection, *asked, choice, two, text]
    assert instruction_questions(records) == ["Describe it.", "What color?"]  # distinct, sorted
    out = restyle_questions(records, "instruction", seed=1)
    assert out[0]["conversations"][0]["value"].removeprefix("<image>\n") in {"Describe it.", "What color?"}
    assert out[1:] == records[1:]
    with pytest.raises(ValueError, match="needs single-image instruction records"):
        restyle_questions([rejection], "instruction")
    # the attack-style pool is in the benchmarks' style, never their exact text
    assert not set(ATTACK_STYLE_QUESTIONS) & {MMSB_TYPO_Q, MMSB_SD_Q, FIGSTEP_PROMPT}
