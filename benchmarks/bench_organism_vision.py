"""How well the organism's vision tower learns to read, step by step: step 2 of the build alone (the toy preset's
tower and words), scored every 500 steps by the build's own measure (`vision_reads`: fresh plain renders, 4 per
word, named by step 2's head), for a learning-rate schedule and a number of steps.

    .venv/bin/python benchmarks/bench_organism_vision.py [--schedule constant|linear] [--steps N] [--threads 1]

Without --schedule or --steps, the toy preset's own.
"""

from __future__ import annotations

import argparse
import time

import torch

from mllm_safety.core import world as tw
from mllm_safety.core.preset import Preset
from mllm_safety.model_organism.training import build_model, train_vision, vision_reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schedule", choices=["constant", "linear"])
    parser.add_argument("--steps", type=int)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    chosen = {"vision_schedule": args.schedule, "vision_steps": args.steps}
    cfg = Preset.load("toy", **{k: v for k, v in chosen.items() if v is not None}).organism
    world = tw.make_world(cfg.seed)
    model, processor = build_model(cfg)
    start = time.perf_counter()

    def report(step: int, head: torch.nn.Module) -> None:
        if step % args.every == 0 or step == cfg.vision_steps:
            reads = vision_reads(model, processor, head, cfg, world)
            model.model.vision_tower.train()  # vision_reads leaves the model in eval mode
            print(
                f"{cfg.vision_schedule} {step:5d}: reads {reads['vision/reads']:.3f}, held-out harmful "
                f"{reads['vision/reads_harmful_test']:.3f} ({time.perf_counter() - start:.0f} s)",
                flush=True,
            )

    train_vision(model, processor, cfg, report)
    print(f"seed {cfg.seed}, vit_hidden {cfg.vit_hidden}, {args.threads} thread(s), lr {cfg.organism_lr}")


if __name__ == "__main__":
    main()
