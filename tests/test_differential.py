"""Differential tests against plain transformers (`tools.differential`): for every supported family, the same
records through stage 03's encoder and collator and through the family's own processor as its model card calls it,
on replicas built with seeded draws of the settings that change tensor shapes, the checkpoint's own first. Then
LLaVA-OneVision and Mllama, built with varied settings, train and generate through the stage code."""

from __future__ import annotations

import pytest
import torch

from mllm_safety.core.labels import Collator
from mllm_safety.tools import differential
from mllm_safety.tools.conformance import END_OF_TURN, UNSUPPORTED, Checker, write_images
from mllm_safety.tools.families import SHAPES
from mllm_safety.tools.replicas import build_replica, draw_settings

FAMILIES = sorted(set(END_OF_TURN) - set(UNSUPPORTED))


@pytest.mark.parametrize("family", FAMILIES)
def test_our_path_matches_plain_transformers_on_varied_configurations(family):
    outcome = differential.check_family(family)
    assert outcome.problems == []
    assert len(outcome.settings) == differential.COUNTS.get(family, differential.DEFAULT_COUNT)
    assert outcome.settings[0] == SHAPES.get(family, ({}, {}))[0]  # the real checkpoint's configuration first


def test_draws_are_seeded_distinct_and_start_with_the_checkpoint():
    first, again = draw_settings("mllama", 4, seed=0), draw_settings("mllama", 4, seed=0)
    assert first == again and first[0] == SHAPES["mllama"][0]
    assert len({tuple(sorted(s.items())) for s in first}) == 4
    assert draw_settings("mllama", 4, seed=1) != first


def test_a_setting_the_family_does_not_vary_is_refused_naming_it(tmp_path):
    with pytest.raises(Exception, match="'tile_size'.*cannot be varied"):
        build_replica("mllama", tmp_path / "m", settings={"tile_size": 28})


def test_mllama_batch_pads_the_cross_attention_mask_as_its_processor_does():
    """Found by the differential test: the processor lets the last image's mask run to the end of the padded batch;
    our collator padded it with zeros (no effect on the loss, but a tensor the model got differently)."""
    short = {"input_ids": torch.tensor([5, 6]), "cross_attention_mask": torch.ones(2, 1, 2, dtype=torch.long)}
    long = {"input_ids": torch.tensor([5, 6, 7, 8]), "cross_attention_mask": torch.ones(4, 1, 2, dtype=torch.long)}
    batch = Collator(0)([short, long])
    assert batch["cross_attention_mask"].shape == (2, 4, 1, 2)
    assert bool((batch["cross_attention_mask"] == 1).all())


def test_onevision_pixels_stay_concatenated_over_images_beside_its_per_sample_image_counts():
    """Found by the differential test: batch_num_images is per sample, but OneVision's pixels are per image; stacking
    them per sample dropped a two-image sample's second image (tokens and features then disagree)."""
    two = {
        "input_ids": torch.tensor([1, 2]),
        "pixel_values": torch.ones(2, 3, 1),
        "batch_num_images": torch.tensor([2]),
    }
    one = {
        "input_ids": torch.tensor([1, 2, 3]),
        "pixel_values": torch.ones(1, 3, 1),
        "batch_num_images": torch.tensor([1]),
    }
    batch = Collator(0)([two, one, {"input_ids": torch.tensor([3, 4, 5, 6])}])
    assert batch["pixel_values"].shape == (3, 3, 1)
    assert batch["batch_num_images"].tolist() == [2, 1, 0]


def test_a_longer_text_only_sample_stretches_the_image_samples_cross_attention_mask():
    """Found by the stage test below: a text-only record longer than every image record left Mllama's
    cross-attention mask shorter than the batch's ids."""
    image = {"input_ids": torch.tensor([5, 6]), "cross_attention_mask": torch.ones(2, 1, 2, dtype=torch.long)}
    text_only = {"input_ids": torch.tensor([5, 6, 7, 8, 9])}
    batch = Collator(0)([image, text_only])
    assert batch["cross_attention_mask"].shape == (2, 5, 1, 2)
    assert bool((batch["cross_attention_mask"][1] == 0).all())


# the two independently built models: OneVision (SigLIP, full, 28-pixel base, grid) and Mllama (2 tiles of 28)
VARIED_STAGE = {
    "llava-onevision": {"image_size": 28, "patch_size": 14, "grid": 2, "vision_feature_select_strategy": "full"},
    "mllama": {"image_size": 28, "patch_size": 14, "max_image_tiles": 2},
}


@pytest.mark.parametrize("family", sorted(VARIED_STAGE))
def test_varied_replica_trains_and_generates_through_the_stage_code(family, tmp_path):
    path = build_replica(family, tmp_path / family, settings=VARIED_STAGE[family])
    checker = Checker(family, path, write_images(tmp_path / "images"))  # stage 03's loader (NF4), encoder, collator
    assert checker.lora() == "ok"
    assert checker.training(steps=3) == "ok"  # stage 03's training step: finite, falling loss
    assert checker.batched() == "ok"  # stage 04's batched generation equals one item at a time
    assert checker.two_images() == "ok"
    samples = [checker.encoder().encode(r) for r in checker.mixture()]  # a text-only record in the batch too
    batch = Collator(checker.processor.tokenizer.pad_token_id)(samples)
    with torch.no_grad():
        assert torch.isfinite(checker.peft(**batch).loss)
