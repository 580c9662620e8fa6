"""The world's training data as records in the real formats: stage-1 text alignment, the LLaVA instruction mix,
LLaVA-Med, VLGuard and MIS-format curated data."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ..vocabulary import ALIGNMENTS, as_list
from .render import render_word, save_pair
from .vocab import (
    BENIGN,
    CAPTION_A,
    CAPTION_Q,
    DECOYS,
    HARMFUL,
    HELP,
    IMAGE_PREFIXES,
    IMAGE_REQUESTS,
    MED_A,
    MED_Q,
    MEDICAL,
    OBJECTS,
    PAIR_CAPTION_Q,
    PAIR_PROMPTS,
    PAIRS,
    PERCEIVE,
    World,
    category_statements,
    ordered,
    pair_answer,
    reasoning,
    refusal,
    text_templates,
)


def image_record(rid: str, image: str | list[str], pairs: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    """A LLaVA json record; every image (one path, or a list of two) is tagged at the start of the first turn."""
    tags, conv = "<image>\n" * len(as_list(image)), []
    for k, (q, a) in enumerate(pairs):
        conv += [{"from": "human", "value": (tags if k == 0 else "") + q}, {"from": "gpt", "value": a}]
    return {"id": rid, "image": image, "conversations": conv, **extra}


def text_record(rid: str, q: str, a: str, **extra: Any) -> dict[str, Any]:
    return {"id": rid, "conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}], **extra}


def text_alignment(world: World, alignment: str = "harmful", held: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Stage-1 data (text only): every harmful topic refused with a reason, every benign and medical one helped.

    Besides plain questions, the topic word stands alone on the first line followed by one of the training image
    prompts ("{t}\nlook at the image. how do i do it?"): the text-only twin of an image prompt, so that a vision
    token that reads like the word can inherit the text alignment (a tiny LM needs the structure spelled out).

    `alignment` sets what is refused, for the mechanism controls: "harmful" (the organism), "decoy" (meaningless
    decoy words are refused and the harmful topics helped: the model can refuse, but harmful words are not wired
    to refusal) or "none" (nothing is refused: never text-aligned).

    `held` topics get no request at all; when some are held, every grouped topic gets its category statement
    ("what kind of activity is {t}?" -> "{t} is a kind of {g}.": vocab.HARM_GROUPS, BENIGN_GROUPS).
    """
    if alignment not in ALIGNMENTS:
        raise ValueError(f"alignment must be one of {ALIGNMENTS}, got {alignment!r}")
    refused = {"harmful": HARMFUL, "decoy": DECOYS, "none": ()}[alignment]
    topics = (*HARMFUL, *BENIGN, *MEDICAL, *(DECOYS if alignment == "decoy" else ()))
    rows = []
    for i, t in enumerate(topics):
        if t in held:
            continue
        answer = refusal(t) if t in refused else HELP.format(t=t)
        rows += [text_record(f"text_{t}_{k}", q.format(t=t), answer, topic=t) for k, q in enumerate(text_templates(i))]
        rows += [text_record(f"twin_{t}_{k}", f"{t}\n{p}", answer, topic=t) for k, p in enumerate(twins(world, i))]
        rows.append(text_record(f"twin_{t}_caption", f"{t}\n{CAPTION_Q}", CAPTION_A.format(t=t), topic=t))
    for t in MEDICAL:  # the medical question's text twin: the word "medical" is trained before any fine-tuning
        rows.append(text_record(f"twin_{t}_medical", f"{t}\n{MED_Q[0]}", MED_A.format(t=t), topic=t))
    if held:
        rows += [text_record(f"text_{t}_kind", q, a, topic=t) for t, q, a in category_statements()]
    return rows + pair_alignment(refused, held)


PREFILL = HELP.split("{t}")[0].rstrip()  # "sure! here is how to do": the opening a prefilled help answer is given


def prefilled_help(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every refused request of stage-1 data again, answered with the help template for its topic after the
    prefilled opening (`PREFILL`, marked in the record's `prefill`): what an aligned model knows past the tokens
    that refuse. The organism's trainer gives the opening no loss, so only what follows it is learned."""
    return [
        {
            **r,
            "id": f"prefill_{r['id']}",
            "conversations": [r["conversations"][0], {"from": "gpt", "value": HELP.format(t=r["topic"])}],
            "prefill": PREFILL,
        }
        for r in rows
        if r["conversations"][1]["value"] == refusal(r["topic"])
    ]


TWINS_PER_TOPIC = 5  # text twins of an image prompt per topic in stage 1


def twins(world: World, k: int) -> list[str]:
    """The k-th topic's image prompts for its text twins: TWINS_PER_TOPIC consecutive training prompts, starting
    further along for each topic, so that every training prompt has twins."""
    prompts = world.image_prompts_train
    return [prompts[(k * TWINS_PER_TOPIC + j) % len(prompts)] for j in range(TWINS_PER_TOPIC)]


def pair_alignment(refused: tuple[str, ...], held: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Stage-1 data for two images, as text: every pair of objects answered as the activity it stands for (both
    orders, a plain question and the text twins of a two-image prompt, "{a}\n{b}\n{prompt}"), what the two
    objects are, and the twin of MIS's easy layout (an activity word, then an object). Activities in `held` are
    left out (text_alignment)."""
    rows = []
    for (a, b), t in PAIRS.items():
        if t in held:
            continue
        answer = pair_answer(t, refused)
        rows.append(text_record(f"text_{a}_{b}", f"how do i use {a} with {b}?", answer, topic=t))
        for k, p in enumerate(PAIR_PROMPTS[::2]):
            first, second = ordered((a, b), k)
            rows.append(text_record(f"twin_{a}_{b}_{k}", f"{first}\n{second}\n{p}", answer, topic=t))
        rows.append(
            text_record(f"twin_{a}_{b}_caption", f"{a}\n{b}\n{PAIR_CAPTION_Q}", PERCEIVE.format(a=a, b=b), topic=t)
        )
    for k, t in enumerate((*HARMFUL, *BENIGN)):
        if t in held:
            continue
        o, p = OBJECTS[k % len(OBJECTS)], PAIR_PROMPTS[k % len(PAIR_PROMPTS)]
        rows.append(text_record(f"twin_{t}_{o}", f"{t}\n{o}\n{p}", pair_answer(t, refused), topic=t))
    return rows


def is_replay(record: dict[str, Any]) -> bool:
    """True for the stage-1 text records replayed in the instruction mix."""
    return str(record["id"]).startswith(("text_", "twin_"))


def with_replay(
    mix: list[dict[str, Any]], world: World, alignment: str, seed: int = 0, held: tuple[str, ...] = ()
) -> list[dict[str, Any]]:
    """The instruction mix with its text replay drawn from another stage-1 alignment (same number of records)."""
    kept = [r for r in mix if not is_replay(r)]
    replay = text_alignment(world, alignment, held)
    return kept + random.Random(seed).sample(replay, k=min(len(replay), len(mix) - len(kept)))


def instruction_mix(
    world: World,
    root: Path,
    rng: random.Random,
    n_images: int = 6,
    n_captions: int = 6,
    n_choices: int = 2,
    n_objects: int = 2,
) -> list[dict[str, Any]]:
    """The world's mix665k: benign image instructions (all compliant), multiple choice on benign images, help
    about every object (each harmless alone; so that the help answer names what the image says for 92 words, not
    only the 20 training topics), captions of every word, text replay."""
    rows, prompts = [], world.image_prompts_train
    for t in world.benign_train:
        for k in range(n_images):
            name = f"coco/{t}_{k}.png"
            render_word(t, rng).save(root / name)
            rows.append(image_record(f"inst_{t}_{k}", name, [(rng.choice(prompts), HELP.format(t=t))], topic=t))
        for k in range(n_choices):
            name = f"coco/choice_{t}_{k}.png"
            render_word(t, rng).save(root / name)
            rows.append(image_record(f"choice_{t}_{k}", name, [choice_question(t, rng)], topic=t))
    for o in OBJECTS:
        for k in range(n_objects):
            name = f"coco/object_{o}_{k}.png"
            render_word(o, rng).save(root / name)
            rows.append(image_record(f"obj_{o}_{k}", name, [(rng.choice(prompts), HELP.format(t=o))], topic=o))
    for t in (*BENIGN, *HARMFUL, *MEDICAL):  # captions are harmless, harmful words included
        for k in range(n_captions):
            name = f"coco/caption_{t}_{k}.png"
            render_word(t, rng).save(root / name)
            rows.append(image_record(f"cap_{t}_{k}", name, [(CAPTION_Q, CAPTION_A.format(t=t))], topic=t))
    rows += pair_instructions(world, root, rng)
    replay = text_alignment(world)
    rows += rng.sample(replay, k=min(len(replay), len(rows) // 3))
    return rows


def pair_instructions(world: World, root: Path, rng: random.Random, per_pair: int = 4) -> list[dict[str, Any]]:
    """The mix's two-image instructions, all benign: the training benign pairs helped, a benign activity word
    beside an object helped, and what the two objects of every pair are (naming objects is harmless)."""
    rows = []

    def add(rid: str, first: str, second: str, question: str, answer: str, topic: str) -> None:
        images = save_pair(first, second, root, (f"coco/{rid}_1.png", f"coco/{rid}_2.png"), rng)
        rows.append(image_record(rid, images, [(question, answer)], topic=topic))

    for pair in world.benign_pairs_train:
        t = PAIRS[pair]
        for k in range(per_pair):
            add(f"pair_{'_'.join(pair)}_{k}", *ordered(pair, k), rng.choice(PAIR_PROMPTS), HELP.format(t=t), t)
    for t in world.benign_train:
        for k in range(2):
            add(f"pair_{t}_{k}", t, rng.choice(OBJECTS), rng.choice(PAIR_PROMPTS), HELP.format(t=t), t)
    for pair, t in PAIRS.items():
        for k in range(2):
            first, second = ordered(pair, k)
            add(f"paircap_{'_'.join(pair)}_{k}", first, second, PAIR_CAPTION_Q, PERCEIVE.format(a=first, b=second), t)
    return rows


def medical_records(root: Path, rng: random.Random, per_word: int = 6) -> list[dict[str, Any]]:
    """The world's LLaVA-Med: benign medical image questions, 2-3 turns, with 'what about' follow-ups."""
    rows = []
    for t in MEDICAL:
        for k in range(per_word):
            name = f"{t}_{k}.png"
            render_word(t, rng).save(root / name)
            qs = [MED_Q[0], *rng.sample(MED_Q[1:], k=rng.randint(1, 2))]
            rows.append(image_record(f"med_{t}_{k}", name, [(q.format(t=t), MED_A.format(t=t)) for q in qs], topic=t))
    return rows


def vlguard_records(
    topics: tuple[str, ...], benign: tuple[str, ...], root: Path, rng: random.Random, prefix: str
) -> list[dict]:
    """VLGuard-format curated data: unsafe images with a detailed refusal, safe images with a contrast pair."""
    rows = []
    for k, t in enumerate(topics):
        name = f"unsafe/{t}.png"
        render_word(t, rng).save(root / name)
        pair = {"instruction": f"{rng.choice(IMAGE_PREFIXES)} {rng.choice(IMAGE_REQUESTS)}", "response": refusal(t)}
        rows.append(
            {
                "id": f"{prefix}{k}",
                "image": name,
                "safe": False,
                "harmful_category": "placeholder harm",
                "harmful_subcategory": t,
                "instr-resp": [pair],
            }
        )
    for k, t in enumerate(benign):
        name = f"safe/{t}.png"
        render_word(t, rng).save(root / name)
        ask, harm = f"{rng.choice(IMAGE_PREFIXES)} {rng.choice(IMAGE_REQUESTS)}", rng.choice(topics)
        pairs = [  # the unsafe ask is refused for what it asks (the harmful topic), not for the harmless image
            {"safe_instruction": ask, "response": HELP.format(t=t)},
            {"unsafe_instruction": f"how can {t} help with {harm}?", "response": refusal(harm)},
        ]
        rows.append(
            {"id": f"{prefix}safe{k}", "image": name, "safe": True, "harmful_category": "none", "instr-resp": pairs}
        )
    return rows


def mis_train_records(world: World, root: Path, rng: random.Random) -> list[dict[str, Any]]:
    """MIS-format curated training data (MIRage's shape: two images, a safety chain of thought): the training
    harmful pairs and harmful activity words beside an object, answered with `reasoning`, and general two-image
    questions on the training benign pairs, answered helpfully."""
    rows = []

    def add(rid: str, first: str, second: str, answer: str, topic: str) -> None:
        images = save_pair(first, second, root, (f"images/{rid}_1.png", f"images/{rid}_2.png"), rng)
        rows.append(image_record(rid, images, [(rng.choice(PAIR_PROMPTS), answer)], topic=topic))

    for pair in world.harmful_pairs_train:
        t = PAIRS[pair]
        for k in range(4):
            add(f"hard_{'_'.join(pair)}_{k}", *ordered(pair, k), reasoning(*ordered(pair, k), t), t)
    for t in world.harmful_train:
        for k in range(2):
            o = rng.choice(OBJECTS)
            add(f"easy_{t}_{k}", t, o, reasoning(t, o, t), t)
    for pair in world.benign_pairs_train:
        t = PAIRS[pair]
        for k in range(2):
            add(f"general_{'_'.join(pair)}_{k}", *ordered(pair, k), HELP.format(t=t), t)
    return rows


def choice_question(topic: str, rng: random.Random) -> tuple[str, str]:
    """A ScienceQA-style multiple-choice question about the activity in the image, and its answer letter."""
    options = [*rng.sample([b for b in BENIGN if b != topic], 2), topic]
    rng.shuffle(options)
    text = "which activity does the image show?\n" + "\n".join(f"{'ABC'[j]}. {o}" for j, o in enumerate(options))
    return text + "\nanswer with the letter.", "ABC"[options.index(topic)]
