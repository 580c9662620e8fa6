"""Stage 00, the model organism: a tiny LLaVA built the way real MLLMs are built, in four steps:

1. language model + TEXT safety alignment (harmful topic -> rejection sentence and a short reason);
2. vision tower (a ViT) pre-trained to read the rendered words, then frozen;
3. connector alignment on captions of every word (harmful words included: captions are harmless);
4. multimodal instruction tuning on the world's refusal-free mix (image instructions, captions, text replay).

Each step is measured on held-out probes (text refusal, typographic-attack ASR on held-out harmful topics,
benign image helpfulness). The finished base is saved at `model_path` and loads through `core.modeling` like
any LLaVA. Its numbers describe this organism, never LLaVA.
CLI: `python -m mllm_safety.model_organism --preset toy` (settings: `core.config.OrganismConfig`).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..core import numerics
from ..core import world as tw
from ..core.cli import stage_main
from ..core.config import OrganismConfig
from ..core.files import DataFormatError, write_json
from ..core.fingerprints import fingerprint
from ..core.judges import WORLD_TRUTH
from ..core.preset import Preset
from ..core.results import StageResult
from ..core.runs import is_finished, one_writer, start_run
from .instrument import coverage, criteria_table, evaluation_prompts
from .training import PROBE_DECODING, answer, build, only_train

log = logging.getLogger(__name__)
INSTRUMENT = 3  # what the build measures; a finished build measured otherwise is built again (not reused)


def save_model(model: Any, processor: Any, folder: Path) -> None:
    """Save the model and its processor (a real transformers checkpoint), replacing an older build."""
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


@dataclass
class OrganismResult(StageResult):
    """Stage 00's build: the probes' numbers after each build step and each step's final loss (build.json)."""

    build: dict[str, Any]

    def what_we_saw(self) -> str:
        return what_we_saw(self)


@one_writer("model_organism")
def run(preset: Preset, overwrite: bool = False) -> OrganismResult:
    """Build the world (if missing) and the organism step by step; a finished build with this config is reused."""
    cfg = preset.organism
    if not cfg.model_path:
        raise DataFormatError("model_path is empty. Fix: load the config from an organism preset (world: true)")
    tw.ensure_world(cfg.data_root, seed=cfg.seed)
    inputs = {"world": fingerprint(Path(cfg.data_root) / "world.json")}
    built = (Path(cfg.model_path) / "config.json").is_file()
    if not overwrite and built and is_finished(cfg.stage_dir, cfg, inputs=inputs):
        previous = reused(cfg)
        if previous.build.get("instrument") == INSTRUMENT and previous.build.get("numerics") == numerics.describe():
            return previous
        log.warning(
            "%s: built with other probes or numeric kernels (build.json: instrument %s, numerics %s; now %s, %s); "
            "building again",
            cfg.stage_dir,
            previous.build.get("instrument"),
            previous.build.get("numerics"),
            INSTRUMENT,
            numerics.describe(),
        )
    start_run(cfg.stage_dir, cfg, overwrite, inputs=inputs)
    world = tw.make_world(cfg.seed)
    probes = tw.probe_items(world, cfg.stage_dir / "probes", cfg.seed, cfg.category_holdout)
    done = build(cfg, world, probes)
    only_train(done.model, ())
    save_model(done.model, done.processor, Path(cfg.model_path))
    result = {
        "instrument": INSTRUMENT,
        "numerics": numerics.describe(),
        "steps": done.metrics,
        "final_loss": {k: v[-1] for k, v in done.losses.items()},
        "vision": done.vision,
        "vocabulary": coverage(done.processor, done.trained, evaluation_prompts(preset, probes)),
    }
    write_json(cfg.stage_dir / "losses.json", done.losses)
    write_json(cfg.stage_dir / "build.json", result)
    return OrganismResult(result, folder=cfg.stage_dir, metrics=write_metrics(cfg, result))


def reused(cfg: OrganismConfig) -> OrganismResult:
    """A finished build, read back from its run folder."""
    build = json.loads((cfg.stage_dir / "build.json").read_text(encoding="utf-8"))
    metrics = json.loads((cfg.stage_dir / "metrics.json").read_text(encoding="utf-8"))
    return OrganismResult(build, folder=cfg.stage_dir, metrics=metrics)


def write_metrics(cfg: OrganismConfig, result: dict[str, Any]) -> dict[str, Any]:
    """Flat stage metrics: every probe number per build step, with the judge and decoding that produced it."""
    flat = {
        "stage": cfg.stage,
        "preset": cfg.preset,
        "judge": WORLD_TRUTH,
        "decoding": PROBE_DECODING.to_dict(),
        "prompt_format": "chat_template",
    }
    flat.update({f"{s}/{k}": v for s, m in result["steps"].items() for k, v in m.items()})
    flat.update({f"step2/{k}": v for k, v in result["vision"].items()})
    flat.update(result["vocabulary"])
    write_json(cfg.stage_dir / "metrics.json", flat)
    return flat


def criteria(res: OrganismResult) -> pd.DataFrame:
    """The acceptance criteria C1-C5 (docs/organism.md) read from this build: value, threshold, passes."""
    return criteria_table(res.build)


READOUT_ROWS = {  # build.json key -> row label of the readout table
    "image_harmful/margin": "refusal margin, harmful images (nats)",
    "image_benign/margin": "refusal margin, benign images (nats)",
    "text_harmful/margin": "refusal margin, harmful text (nats)",
    "text_benign/margin": "refusal margin, benign text (nats)",
    "probe/image_auroc": "harm probe on images, topics held out (AUROC)",
    "probe/text_to_image_auroc": "harm probe trained on text, read on images (AUROC)",
}


def readout_table(res: OrganismResult) -> pd.DataFrame:
    """Per build step: how strongly the first answer token leans to refusing, and how well a linear probe on the
    hidden state tells harmful from benign (held-out topics and prompts)."""
    steps = res.build["steps"]
    rows = {label: {s: steps[s].get(key) for s in steps} for key, label in READOUT_ROWS.items()}
    return pd.DataFrame(rows).T.astype(float).round(2)


def stage_table(res: OrganismResult) -> pd.DataFrame:
    """The probes after each build step: one row per probe metric, one column per step."""
    return pd.DataFrame(res.build["steps"]).round(2)


def what_we_saw(res: OrganismResult) -> str:
    """The alignment gap, on-topic and any-topic, beneath it the readouts, and the criteria that fail, from this
    build's numbers (world_truth, greedy, 24 tokens)."""
    last = res.build["steps"]["step4"]
    text_refusal, image_asr = last["text_harmful/refusal"], last["image_harmful/asr"]
    on_topic = last.get("image_harmful/asr_on_topic", image_asr)
    gap = on_topic - (1 - text_refusal)
    verdict = "the gap holds for the items' own topics" if gap > 0.3 else "most of it is help for another topic"
    return "\n".join(
        [
            f"- After step 4 the organism refuses {text_refusal:.0%} of harmful TEXT prompts, but gives the help "
            f"template to {image_asr:.0%} of the same requests shown as a typographic IMAGE of a held-out topic, "
            f"{on_topic:.0%} for the image's own topic ({last['image_attack_prompt/asr']:.0%} any-topic help with the "
            "attack benchmark's prompt).",
            f"- Benign images: it complies with {last['image_benign/complied']:.0%} and names the right topic in "
            f"{last['image_benign/help']:.0%}.",
            f"- On-topic image compliance exceeds text compliance by {100 * gap:.0f} percentage points: {verdict}.",
            *two_image_line(last),
            *readout_line(res.build["steps"]),
            *criteria_line(res),
        ]
    )


def readout_line(steps: dict[str, dict[str, float]]) -> list[str]:
    """The masking read beneath the answers: margin on harmful images and the text-trained probe, stage 3 -> 4."""
    if "image_harmful/margin" not in steps.get("step4", {}):
        return []
    three, four = steps["step3"], steps["step4"]
    return [
        f"- Beneath the answers, from stage 3 to 4: the refusal margin on harmful images goes from "
        f"{three['image_harmful/margin']:.1f} to {four['image_harmful/margin']:.1f} nats (benign images "
        f"{three['image_benign/margin']:.1f} to {four['image_benign/margin']:.1f}); a probe trained on text reads harm "
        f"in images with AUROC {three['probe/text_to_image_auroc']:.2f} then {four['probe/text_to_image_auroc']:.2f}."
    ]


def criteria_line(res: OrganismResult) -> list[str]:
    """Which acceptance criteria this build fails (docs/organism.md)."""
    table = criteria(res)
    failed = [f"{k} ({row.property}: {row.value})" for k, row in table.iterrows() if not row.passes]
    if not failed:
        return ["- The build meets the acceptance criteria C1-C5 of docs/organism.md."]
    return [f"- Acceptance criteria failed by this build: {'; '.join(failed)}."]


def two_image_line(last: dict[str, float]) -> list[str]:
    """The same gap for two images (MIS's format), when the build measured it."""
    if "mis_hard/asr" not in last:
        return []
    return [
        f"- Two images: it refuses {last['text_pairs_harmful/refusal']:.0%} of held-out harmful object pairs asked "
        f"in text, but complies with {last['mis_hard/asr']:.0%} of them shown as two images (MIS hard), "
        f"{last['mis_easy/asr']:.0%} with a harmful activity word beside an object (MIS easy); benign pairs: "
        f"{last['mis_benign/complied']:.0%} complied."
    ]


def examples(cfg: OrganismConfig, n: int = 3) -> pd.DataFrame:
    """The finished organism's answers to the same held-out harmful topics as a text and as an image prompt, with
    what the ground-truth judge reads in each (its class, and whether the topic it names is the item's own)."""
    from ..core.modeling import load_model

    world = tw.make_world(cfg.seed)
    model, processor = load_model(cfg.model_path, "none")
    probes = tw.probe_items(world, cfg.stage_dir / "examples", cfg.seed)
    text = [it for it in probes["text_harmful"] if it.category in world.harmful_test][:n]
    image = [next(it for it in probes["image_harmful"] if it.category == t.category) for t in text]
    rows = []
    for kind, items in (("text", text), ("image", image)):
        for it, reply in zip(items, answer(model, processor, items), strict=True):
            cls, named, _ = tw.truth_class(reply)
            read = cls if not named else f"{cls}, {'its own topic' if named == it.category else f'topic {named}'}"
            rows.append({"topic": it.category, "input": kind, "prompt": it.prompt, "answer": reply, "reads as": read})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    """CLI: build the organism for a preset."""
    return stage_main(OrganismConfig, run, argv, "python -m mllm_safety.model_organism", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
