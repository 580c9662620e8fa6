"""Stage 04: evaluate the base model and every fine-tuned adapter on safety, over-refusal and utility benchmarks.

For each model: batched, resumable generation (`mllm_safety.generate`), every judge on every response
(`mllm_safety.judges`), metrics with bootstrap intervals (`mllm_safety.metrics`). Writes, under
runs/<preset>/04_eval/: <model>/<benchmark>.jsonl (generations), <model>/judgements.jsonl, <model>/metrics.json,
and for all models results.csv (the tidy table the figures read) and agreement.csv.
CLI: `python -m mllm_safety.evaluate --preset toy`.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .config import stage_main, to_dict
from .data import load_benchmark
from .files import write_json, write_text
from .generate import Decoding, generate
from .judges import ModelJudge, judge_rows
from .metrics import agreement, score_utility, summarize

log = logging.getLogger(__name__)
STAGE = "04_eval"
SPEC_OPTIONS = ("mode", "subset", "benchmark", "image_root", "scenarios")  # passed on to load_benchmark


@dataclass(frozen=True)
class EvalConfig:
    """Stage 04's settings; field names equal the notebook's parameters and the preset's keys."""

    preset: str = "toy"
    runs_root: str = "runs"
    data_root: str = "data/toy"
    model_path: str = "llava-hf/llava-1.5-7b-hf"
    quantization: str = "nf4"
    trust_remote_code: bool = False
    prompt_format: str = "vicuna_v1"
    eval_adapters: list[str] = field(default_factory=list)  # mixtures trained in stage 03
    eval_base: bool = True  # also evaluate the base model (the studies evaluate it once, not per run)
    benchmarks: list[dict[str, Any]] = field(default_factory=list)  # {name, root, mode/subset/..., metric}
    judges: list[str] = field(default_factory=lambda: ["paper_strmatch", "xstest_strmatch", "refusal_keywords"])
    judge_model_path: str = ""  # a local guard model (e.g. Llama Guard 3); "" = none
    max_new_tokens: int = 512
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    batch_size: int = 8
    blank_image: bool = False  # give text-only items a blank image instead of none
    max_items: int = -1  # per benchmark; -1 = all
    bootstrap_samples: int = 1000

    @property
    def stage_dir(self) -> Path:
        return Path(self.runs_root) / self.preset / STAGE

    def decoding(self) -> Decoding:
        return Decoding(self.max_new_tokens, self.do_sample, self.temperature, self.top_p, self.seed)


def spec_key(spec: dict[str, Any]) -> str:
    """A benchmark run's name: the loader plus its mode or subset (mm_safetybench_sd_typo, vlguard_test_unsafes);
    `key` names it explicitly (e.g. a benign control in a harmful benchmark's layout)."""
    name = spec.get("benchmark") if spec["name"] == "llava_eval_json" else spec.get("key", spec["name"])
    suffix = spec.get("mode") or spec.get("subset")
    return f"{name}_{suffix}" if suffix else str(name)


def load_items(cfg: EvalConfig, spec: dict[str, Any]) -> list:
    """The benchmark's items (the first max_items when set)."""
    options = {k: spec[k] for k in SPEC_OPTIONS if k in spec}
    if "image_root" in options:
        options["image_root"] = Path(cfg.data_root) / options["image_root"]
    items = load_benchmark(spec["name"], Path(cfg.data_root) / spec["root"], **options)
    if "harmful" in spec:  # a benign control in a harmful benchmark's layout: its metric becomes over-refusal
        items = [dataclasses.replace(it, harmful=bool(spec["harmful"])) for it in items]
    return items[: cfg.max_items] if cfg.max_items > 0 else items


def load_for_eval(cfg: EvalConfig, adapter: str | None):
    """The base model, with the stage-03 adapter of `adapter` applied when given."""
    from .modeling import load_model

    model, processor = load_model(cfg.model_path, cfg.quantization, cfg.trust_remote_code)
    if adapter:
        from peft import PeftModel

        path = Path(cfg.runs_root) / cfg.preset / "03_finetune" / adapter / "adapter"
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no adapter; train the mixture {adapter!r} in stage 03 first")
        model = PeftModel.from_pretrained(model, str(path))
    return model.eval(), processor


def judge_all(cfg: EvalConfig, rows: list[dict], spec: dict[str, Any], guard: ModelJudge | None) -> list[dict]:
    """Every refusal judge on every row, plus the utility scorer when the benchmark has reference answers."""
    judged = [j for name in cfg.judges for j in judge_rows(rows, name, guard)]
    if guard is not None:
        judged += judge_rows(rows, guard.name, guard)
    scorer = {"letter": "letter_match", "exact": "exact_match"}.get(spec.get("metric", ""))
    if scorer:
        judged += [{**r, "label": score_utility(r["response"], r["meta"].get("answer"), scorer), "judge": scorer}
                   for r in rows]  # fmt: skip
    return judged


def evaluate_model(cfg: EvalConfig, name: str, adapter: str | None, guard: ModelJudge | None) -> list[dict]:
    """Generate (resuming), judge and save one model's results; returns its judgement rows."""
    model, processor = load_for_eval(cfg, adapter)
    out_dir = cfg.stage_dir / name
    judged = []
    for spec in cfg.benchmarks:
        key = spec_key(spec)
        rows = generate(model, processor, load_items(cfg, spec), out_dir / f"{key}.jsonl", model_name=cfg.model_path,
                        adapter=adapter, prompt_format=cfg.prompt_format, decoding=cfg.decoding(),
                        batch_size=cfg.batch_size, blank_image=cfg.blank_image)  # fmt: skip
        judged += [{**r, "benchmark_key": key, "mode": spec.get("mode") or spec.get("subset") or ""}
                   for r in judge_all(cfg, rows, spec, guard)]  # fmt: skip
    write_text(out_dir / "judgements.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in judged))
    del model
    gc.collect()
    return judged


def to_frame(judged: list[dict], model_label: str) -> pd.DataFrame:
    """Judgement rows as the table metrics.summarize expects."""
    df = pd.DataFrame(judged)
    df["benchmark"] = df.pop("benchmark_key")
    df["model"] = model_label
    df["adapter"] = df["adapter"].fillna("")
    return df[
        ["id", "model", "adapter", "benchmark", "mode", "category", "judge", "harmful", "label", "prompt", "response"]
    ]


@dataclass
class EvalResult:
    """What stage 04 computes: the tidy results, judge agreement, and the judgement rows per model."""

    results: pd.DataFrame
    agreement: pd.DataFrame
    judged: dict[str, pd.DataFrame]


def run(cfg: EvalConfig) -> EvalResult:
    """Evaluate the base model and every adapter; write results.csv and agreement.csv."""
    if not cfg.benchmarks:
        raise ValueError("benchmarks is empty: name at least one benchmark folder under data_root")
    if not (cfg.eval_base or cfg.eval_adapters):
        raise ValueError("nothing to evaluate: eval_base is false and eval_adapters is empty")
    write_json(cfg.stage_dir / "config.json", to_dict(cfg))
    guard = ModelJudge(cfg.judge_model_path) if cfg.judge_model_path else None
    frames = {}
    models = [("base", None)] if cfg.eval_base else []
    for name, adapter in [*models, *[(a, a) for a in cfg.eval_adapters]]:
        frames[name] = to_frame(evaluate_model(cfg, name, adapter, guard), name)
    judged = pd.concat(frames.values(), ignore_index=True)
    results = summarize(judged, cfg.bootstrap_samples, cfg.seed)
    agree = agreement(judged)
    write_text(cfg.stage_dir / "results.csv", results.to_csv(index=False, float_format="%.6g"))
    write_text(cfg.stage_dir / "agreement.csv", agree.to_csv(index=False, float_format="%.6g"))
    return EvalResult(results, agree, frames)


def write_metrics(cfg: EvalConfig, res: EvalResult) -> dict[str, Any]:
    """metrics.json per model and for the stage: overall numbers keyed benchmark/judge/metric, with context."""
    context = {"model": cfg.model_path, "quantization": cfg.quantization, "prompt_format": cfg.prompt_format,
               "decoding": to_dict(cfg.decoding()), "image_input": "blank" if cfg.blank_image else "none"}  # fmt: skip
    overall = res.results[res.results["category"] == "all"]
    stage: dict[str, Any] = {"stage": STAGE, "preset": cfg.preset, **context}
    for name, part in overall.groupby("model"):
        flat = {f"{r.benchmark}/{r.judge}/{r.metric}": r.value for r in part.itertuples()}
        write_json(
            cfg.stage_dir / name / "metrics.json", {"adapter": name if name != "base" else None, **context, **flat}
        )
        stage.update({f"{name}/{k}": v for k, v in flat.items()})
    write_json(cfg.stage_dir / "metrics.json", stage)
    return stage


def side_by_side(res: EvalResult, benchmark: str, judge: str = "paper_strmatch", n: int = 3) -> pd.DataFrame:
    """The first n items of a benchmark: the prompt, then every model's response and its label under `judge`."""
    frames = []
    for name, df in res.judged.items():
        part = df[(df["benchmark"] == benchmark) & (df["judge"] == judge)].set_index("id").head(n)
        if not frames:
            frames.append(part[["prompt"]])
        frames.append(part[["response", "label"]].add_prefix(f"{name}: "))
    return pd.concat(frames, axis=1)


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 04 for a preset."""
    return stage_main(EvalConfig, run, write_metrics, argv, "python -m mllm_safety.evaluate", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
