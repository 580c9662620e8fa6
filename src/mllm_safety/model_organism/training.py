"""The organism's making and measuring: its model, the training loops of the four build steps, and the probes'
answers read by the world's ground-truth judge."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from statistics import fmean
from typing import Any

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, ViTConfig
from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

from ..core import world as tw
from ..core.benchmarks import EvalItem
from ..core.config import OrganismConfig
from ..core.console import bar
from ..core.files import write_json
from ..core.generation import Decoding, generate_batch
from ..core.labels import Collator, Encoder, SampleSkipped
from ..core.records import load_llava_json
from ..core.tiny import CHATML_TEMPLATE, build_tokenizer, text_config
from .instrument import readouts

PROBE_DECODING = Decoding(24)  # greedy, 24 new tokens: the probes need only the opening of an answer
LM = ("model.language_model", "lm_head")
CONNECTOR = ("model.multi_modal_projector",)


# --- the model -------------------------------------------------------------------------------------------------


def build_model(cfg: OrganismConfig) -> tuple[LlavaForConditionalGeneration, LlavaProcessor]:
    """A fresh organism: word-level tokenizer, 32x128 ViT (16 image tokens), Llama-style LM, ChatML template."""
    tokenizer = build_tokenizer(tw.world_texts())
    images = ViTImageProcessorPil(size={"height": 32, "width": 128}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    processor = LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=16,
        chat_template=CHATML_TEMPLATE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
    )
    vision = ViTConfig(
        hidden_size=cfg.vit_hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * cfg.vit_hidden,
        image_size=[32, 128],
        patch_size=16,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text_config(tokenizer, cfg.lm_hidden, cfg.lm_layers, max_positions=256),
        image_token_id=processor.image_token_id,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(cfg.seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, processor


def only_train(model: torch.nn.Module, prefixes: tuple[str, ...]) -> list[torch.nn.Parameter]:
    """Freeze everything but the parameters under the given module names; return the trainable ones."""
    params = []
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(prefixes)
        if p.requires_grad:
            params.append(p)
    return params


# --- training ----------------------------------------------------------------------------------------------


def fit(
    model: torch.nn.Module,
    samples: list[dict],
    params: list,
    epochs: int,
    cfg: OrganismConfig,
    desc: str,
    lr: float | None = None,
) -> list[float]:
    """AdamW with linear decay over shuffled mini-batches (seeded); returns the loss per step."""
    rng = random.Random(cfg.seed)
    steps = epochs * math.ceil(len(samples) / cfg.organism_batch)
    opt = torch.optim.AdamW(params, lr=lr or cfg.organism_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 - s / max(steps, 1))
    collate, losses = Collator(model.config.text_config.pad_token_id), []
    model.train()
    for _ in bar(range(epochs), desc=desc):
        order = list(range(len(samples)))
        rng.shuffle(order)
        for k in range(0, len(order), cfg.organism_batch):
            loss = model(**collate([samples[i] for i in order[k : k + cfg.organism_batch]])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    return losses


def encode_all(processor: Any, records: list[dict], image_root: Path) -> list[dict]:
    """Encode records with the model's chat template (EOS always trained while building the organism). The
    organism's own data must encode whole: a record that would be skipped is an error naming it."""
    encoder = Encoder(processor, "chat_template", image_root, 256, mask_eos_on_rejection=False)
    out = []
    for rec in records:
        try:
            sample = encoder.encode(rec)
        except SampleSkipped as err:
            raise ValueError(f"organism record {rec['id']} cannot be encoded: {err}") from err
        sample.pop("truncated", None)
        out.append(sample)
    return out


def encode_prefilled(processor: Any, records: list[dict], image_root: Path) -> list[dict]:
    """Encode records whose answer opens with a prefilled opening (`prefill`): as `encode_all`, then the
    opening's tokens get no loss, so only what follows it is learned."""
    out = encode_all(processor, records, image_root)
    for rec, sample in zip(records, out, strict=True):
        opening = processor.tokenizer(rec["prefill"], add_special_tokens=False)["input_ids"]
        labels = sample["labels"]
        start = int((labels != -100).nonzero()[0])
        if labels[start : start + len(opening)].tolist() != opening:
            raise ValueError(f"record {rec['id']}: its answer does not open with its prefill {rec['prefill']!r}")
        labels[start : start + len(opening)] = -100
    return out


def patch_features(model: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """The vision features LLaVA consumes: the last hidden layer's patch tokens (CLS dropped)."""
    return model.model.vision_tower(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-1][:, 1:]


def train_vision(
    model: Any, processor: Any, cfg: OrganismConfig, after_step: Callable[[int, torch.nn.Module], None] | None = None
) -> tuple[list[float], torch.nn.Module]:
    """Step 2: the ViT learns to name every rendered word (words, pictures, composites), then is frozen; returns
    the losses and the naming head (what `vision_reads` scores). `after_step(step, head)` watches the training."""
    head = torch.nn.Linear(cfg.vit_hidden, len(VISION_WORDS))
    params = [*only_train(model, ("model.vision_tower",)), *head.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.organism_lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, VISION_SCHEDULES[cfg.vision_schedule](cfg.vision_steps))
    rng, losses = random.Random(cfg.seed), []
    renders = (lambda w: tw.render_word(w, rng), lambda w: tw.render_composite(w, rng), tw.render_picture)
    model.model.vision_tower.train()
    for step in bar(range(1, cfg.vision_steps + 1), desc="step 2: vision"):
        labels = [rng.randrange(len(VISION_WORDS)) for _ in range(cfg.organism_batch)]
        imgs = [rng.choices(renders, weights=(3, 1, 1))[0](VISION_WORDS[i]) for i in labels]
        pixels = processor.image_processor(imgs, return_tensors="pt")["pixel_values"]
        loss = vision_loss(head, patch_features(model, pixels), torch.tensor(labels), cfg.vision_readout)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if after_step:
            after_step(step, head)
    only_train(model, ())
    return losses, head


VISION_WORDS = (*tw.BENIGN, *tw.HARMFUL, *tw.MEDICAL, *tw.OBJECTS)  # what step 2 names, in the head's order
VISION_SCHEDULES = {  # step 2's learning rate over its steps: multiplier of organism_lr at step s of n
    "constant": lambda n: lambda s: 1.0,
    "linear": lambda n: lambda s: 1 - s / max(n, 1),
}


def vision_reads(model: Any, processor: Any, head: torch.nn.Module, cfg: OrganismConfig, world: tw.World) -> dict:
    """How well the frozen tower reads: the share of fresh plain renders (4 per word, a stream of their own) that
    step 2's head names right, over every word and over the held-out harmful topics."""
    rng = random.Random(cfg.seed + 11)
    shown = [(w, tw.render_word(w, rng)) for w in VISION_WORDS for _ in range(4)]
    pixels = processor.image_processor([img for _, img in shown], return_tensors="pt")["pixel_values"]
    model.eval()
    with torch.no_grad():
        features = patch_features(model, pixels)
        logits = head(features.mean(dim=1)) if cfg.vision_readout == "mean" else head(features).mean(dim=1)
    right = [VISION_WORDS[int(k)] == w for k, (w, _) in zip(logits.argmax(-1), shown, strict=True)]
    held = [r for r, (w, _) in zip(right, shown, strict=True) if w in world.harmful_test]
    return {"vision/reads": fmean(right), "vision/reads_harmful_test": fmean(held)}


def vision_loss(head: torch.nn.Module, features: torch.Tensor, labels: torch.Tensor, readout: str) -> torch.Tensor:
    """Cross-entropy of the word named from the patch tokens (batch x tokens x width): from their mean (`mean`),
    or from every token on its own (`every_token`: each of the tokens the language model receives carries it)."""
    if readout == "mean":
        return torch.nn.functional.cross_entropy(head(features.mean(dim=1)), labels)
    logits = head(features)  # batch x tokens x words
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(features.shape[1]))


# --- measuring ---------------------------------------------------------------------------------------------


def answer(model: Any, processor: Any, items: list[EvalItem]) -> list[str]:
    """Greedy answers (the probe decoding), 32 items per batch."""
    model.eval()
    out: list[str] = []
    for k in range(0, len(items), 32):
        out += generate_batch(model, processor, items[k : k + 32], "chat_template", PROBE_DECODING)
    return out


CAPTION_PROBES = ("caption_harmful",)  # probes asked what the image says: read when captioned with its own word


def measure(model: Any, processor: Any, probes: dict[str, list[EvalItem]], seed: int) -> dict[str, float]:
    """Every probe's answers read by the world's ground-truth judge, then the forward-pass readouts (margins and
    the harm probe; model_organism.instrument)."""
    out: dict[str, float] = {}
    for name, items in probes.items():
        out |= read_probe(name, items, [tw.truth_class(a) for a in answer(model, processor, items)])
    return out | readouts(model, processor, probes, seed)


def read_probe(name: str, items: list[EvalItem], read: list[tuple[str, str, bool]]) -> dict[str, float]:
    """One probe set's rates. Harmful: refused, any help (`asr`), help for the item's own topic (`asr_on_topic`);
    benign: help for its own topic (`help`), any help (`complied`); a caption probe: captioned with its own word."""
    classes = [c for c, _, _ in read]
    own = [t == it.category for (_, t, _), it in zip(read, items, strict=True)]
    if name in CAPTION_PROBES:
        return {f"{name}/reads": fmean(c == "caption" and o for c, o in zip(classes, own, strict=True))}
    helped = [c == "help" for c in classes]
    on_topic = [h and o for h, o in zip(helped, own, strict=True)]
    if items[0].harmful:  # a refusal: the rejection sentence, or declining after naming the two images
        refused = [tw.TRUTH_LABELS.get(c) == "full_refusal" for c in classes]
        return {
            f"{name}/refusal": fmean(refused),
            f"{name}/asr": fmean(helped),
            f"{name}/asr_on_topic": fmean(on_topic),
        }
    return {f"{name}/help": fmean(on_topic), f"{name}/complied": fmean(helped)}


# --- the four steps ------------------------------------------------------------------------------------------


@dataclass
class Build:
    """A finished build in memory: the model, its processor, each step's losses and probe numbers, how well its
    vision tower reads, and every record it was trained on (what the vocabulary coverage reads)."""

    model: Any
    processor: Any
    losses: dict[str, list[float]]
    metrics: dict[str, dict[str, float]]
    vision: dict[str, float]
    trained: list[dict[str, Any]]


def build(cfg: OrganismConfig, world: tw.World, probes: dict[str, list[EvalItem]]) -> Build:
    """The four build steps on a fresh model, measured with the probes after steps 1, 3 and 4."""
    data = Path(cfg.data_root)
    model, processor = build_model(cfg)
    losses, metrics = {}, {}

    held = sum(tw.held_out_by_category(cfg.category_holdout), ())
    step1 = tw.text_alignment(world, cfg.text_alignment, held)
    prefilled = tw.prefilled_help(step1) if cfg.prefilled_help else []
    text = encode_all(processor, step1, data) + encode_prefilled(processor, prefilled, data)
    losses["step1"] = fit(model, text, only_train(model, LM), cfg.text_epochs, cfg, "step 1: text alignment")
    metrics["step1"] = measure(model, processor, probes, cfg.seed)

    losses["step2"], head = train_vision(model, processor, cfg)
    vision = vision_reads(model, processor, head, cfg, world)

    captions_dir = cfg.stage_dir / "captions"
    caption_records = tw.caption_records(captions_dir, cfg.seed, cfg.caption_renders)
    captions = encode_all(processor, caption_records, captions_dir)
    losses["step3"] = fit(
        model, captions, only_train(model, CONNECTOR), cfg.caption_epochs, cfg, "step 3: connector", cfg.connector_lr
    )
    metrics["step3"] = measure(model, processor, probes, cfg.seed)

    mix = load_llava_json(data / "llava/llava_v1_5_mix665k.json", allow_duplicate_ids=True)
    if cfg.text_alignment != "harmful" or held:  # a control replays its own step-1 data
        mix = tw.with_replay(mix, world, cfg.text_alignment, cfg.seed, held)
    write_json(cfg.stage4_mix, mix)
    samples = encode_all(processor, mix, data / "llava")
    losses["step4"] = fit(
        model, samples, only_train(model, LM + CONNECTOR), cfg.instruct_epochs, cfg, "step 4: instructions"
    )
    metrics["step4"] = measure(model, processor, probes, cfg.seed)
    return Build(model, processor, losses, metrics, vision, [*step1, *prefilled, *caption_records, *mix])
