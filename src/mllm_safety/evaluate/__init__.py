"""Stage 04, evaluation: the base model and every fine-tuned adapter on safety, over-refusal and utility benchmarks.

For each model: batched, resumable generation (`core.generation`), every judge on every response
(`core.judges`), metrics with bootstrap intervals (`core.metrics`). Writes, under runs/<preset>/04_evaluate/:
<model>/<benchmark>.jsonl (generations), <model>/judgements.jsonl, <model>/metrics.json, and for all models
results.csv (the tidy table the figures read), agreement.csv, metrics.json and, where the ground-truth judge ran
(the organism's world), truth_agreement.csv and truth_confusion.csv: every string-match judge against it.
CLI: `python -m mllm_safety.evaluate --preset toy` (settings: `core.config.EvalConfig`).
"""

from __future__ import annotations

import gc
import json
import logging
import shutil
from typing import Any

import pandas as pd

from ..core.benchmark_specs import spec_name
from ..core.benchmarks import EvalItem, load_spec
from ..core.cli import stage_main
from ..core.config import EvalConfig
from ..core.files import DataFormatError, write_json, write_text
from ..core.fingerprints import input_change
from ..core.generation import Decoding, generate
from ..core.judges import ModelJudge, judge_rows, mis_judge
from ..core.metrics import (
    SCORERS,
    agreement,
    mis_rates,
    results_table,
    score_utility,
    truth_agreement,
    truth_confusion,
)
from ..core.preset import Preset
from ..core.runs import TRAINED, record_run, run_lock, saved_config, saved_inputs
from . import readouts
from .inputs import adapter_path, model_inputs, models, stage_inputs
from .tables import (
    EvalResult,
    agreement_table,
    category_table,
    confusion_table,
    mis_table,
    over_refusal_table,
    safety_table,
    side_by_side,
    truth_table,
    utility_table,
    what_we_saw,
)

__all__ = [
    "EvalResult",
    "adapter_path",
    "agreement_table",
    "category_table",
    "confusion_table",
    "main",
    "mis_table",
    "over_refusal_table",
    "run",
    "safety_table",
    "side_by_side",
    "stage_inputs",
    "truth_table",
    "utility_table",
    "what_we_saw",
]
log = logging.getLogger(__name__)
OWN_SETTINGS = ("prompt_format", "max_new_tokens")  # what a benchmark entry may set for itself
TRUTH_COLUMNS = ("truth_class", "truth_topic", "item_topic", "on_topic", "exact")  # what world_truth adds


def decoding(cfg: EvalConfig, spec: dict[str, Any] | None = None) -> Decoding:
    """The decoding settings of the config; a benchmark entry's own max_new_tokens wins (ScienceQA: 1024)."""
    max_new = (spec or {}).get("max_new_tokens") or cfg.max_new_tokens
    return Decoding(max_new, cfg.do_sample, cfg.temperature, cfg.top_p, cfg.seed)


def spec_format(cfg: EvalConfig, spec: dict[str, Any]) -> str:
    """The prompt format a benchmark is asked in: its entry's own, else the run's (ScienceQA: vicuna_v1)."""
    return spec.get("prompt_format") or cfg.generation_format


def spec_variant(spec: dict[str, Any]) -> str:
    """The benchmark's mode, subset or split ("" when it has none)."""
    return spec.get("mode") or spec.get("subset") or spec.get("split") or ""


def load_items(cfg: EvalConfig, spec: dict[str, Any]) -> list[EvalItem]:
    """The benchmark's items (the first max_items when set)."""
    items = load_spec(spec, cfg.data_root)
    return items[: cfg.max_items] if cfg.max_items > 0 else items


def eval_dtype(cfg: EvalConfig) -> Any:
    """The torch dtype of unquantized evaluation (base, merged adapters, fully fine-tuned models): eval_dtype; None
    for `auto` (the compute dtype) and for quantized bases (their compute dtype is bitsandbytes')."""
    import torch

    if cfg.eval_dtype == "auto" or cfg.eval_quantization != "none":
        return None
    return getattr(torch, cfg.eval_dtype)


def load_for_eval(cfg: EvalConfig, adapter: str | None):
    """The base model, with the stage-03 adapter of `adapter` applied (merged into the weights when the base is
    unquantized and merge_adapters is on, as the official evaluation does); a fully fine-tuned run's own model."""
    from ..core.modeling import load_model

    weights = adapter_path(cfg, adapter) if adapter else None
    dtype = eval_dtype(cfg)
    if weights is not None and weights.name == TRAINED["full"][0]:  # full fine-tuning: the run's own model
        model, processor = load_model(weights, cfg.eval_quantization, cfg.trust_remote_code, dtype)
        return model.eval(), processor
    model, processor = load_model(cfg.model_path, cfg.eval_quantization, cfg.trust_remote_code, dtype)
    if weights is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(weights))
        if cfg.merge_adapters and cfg.eval_quantization == "none":
            model = model.merge_and_unload()
    return model.eval(), processor


def judge_all(cfg: EvalConfig, rows: list[dict], spec: dict[str, Any], guards: list[ModelJudge]) -> list[dict]:
    """Every refusal judge on every row, the model judges (the MIS judge on MIS only), and the utility scorer
    when the benchmark has reference answers."""
    judged = [j for name in cfg.judges for j in judge_rows(rows, name)]
    for guard in guards:
        if guard.name != "mis_judge" or spec["name"] == "mis":
            judged += judge_rows(rows, guard.name, guard)
    if spec.get("metric"):
        scorer = SCORERS[spec["metric"]][0]
        judged += [
            {**r, "label": score_utility(r["response"], r["meta"].get("answer"), scorer), "judge": scorer} for r in rows
        ]
    return judged


def evaluate_model(
    cfg: EvalConfig, name: str, adapter: str | None, guards: list[ModelJudge], items: dict[str, list]
) -> list[dict]:
    """Generate (resuming; answers from other weights or of edited items are made again), judge and save one
    model's results; returns its judgement rows."""
    inputs = model_inputs(cfg, adapter)
    model, processor = load_for_eval(cfg, adapter)
    out_dir = cfg.stage_dir / name
    judged = []
    for spec in cfg.benchmarks:
        key = spec_name(spec)
        rows = generate(
            model,
            processor,
            items[key],
            out_dir / f"{key}.jsonl",
            model_name=cfg.model_path,
            adapter=adapter,
            prompt_format=spec_format(cfg, spec),
            decoding=decoding(cfg, spec),
            batch_size=cfg.batch_size,
            blank_image=cfg.blank_image,
            image_aspect_ratio=cfg.image_aspect_ratio,
            multi_image=spec.get("multi_image", cfg.multi_image),
            inputs=inputs,
        )
        judged += [{**r, "benchmark_key": key, "mode": spec_variant(spec)} for r in judge_all(cfg, rows, spec, guards)]
    write_text(out_dir / "judgements.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in judged))
    if readouts.read_keys(cfg):
        formats = {spec_name(spec): spec_format(cfg, spec) for spec in cfg.benchmarks}
        summary = readouts.run_readouts(cfg, model, processor, items, formats, out_dir)
        write_text(out_dir / readouts.SUMMARY, summary.to_csv(index=False, float_format="%.6g"))
    del model
    gc.collect()
    return judged


def to_frame(judged: list[dict], model_label: str) -> pd.DataFrame:
    """Judgement rows as the table metrics.summarize expects."""
    df = pd.DataFrame(judged)
    df["benchmark"] = df.pop("benchmark_key")
    df["model"] = model_label
    df["adapter"] = df["adapter"].fillna("")
    columns = ["id", "model", "adapter", "benchmark", "mode", "category", "judge", "harmful", "label"]
    extra = [c for c in (*TRUTH_COLUMNS, "judge_output") if c in df]
    return df[[*columns, *extra, "prompt", "response"]]


def run(preset: Preset, overwrite: bool = False) -> EvalResult:
    """Evaluate the base model and every adapter; write results.csv, agreement.csv and metrics.json, holding the
    stage folder's lock. Generations already on disk are reused while the weights and items they came from are
    the same (a file made with other settings is refused); overwrite generates everything again."""
    cfg = preset.eval
    items = checked_items(cfg)
    with run_lock(cfg.stage_dir):
        begin(cfg, items, overwrite)
        return evaluate_all(cfg, items)


def begin(cfg: EvalConfig, items: dict[str, list[EvalItem]], overwrite: bool) -> None:
    """Clear the stage folder for overwrite, say in one line which inputs changed since a run with this config,
    and record the config and the inputs (the run is unfinished until its metrics.json is written again)."""
    if overwrite and cfg.stage_dir.exists():
        log.warning("%s: --overwrite: generating every answer again", cfg.stage_dir)
        shutil.rmtree(cfg.stage_dir)
    inputs = stage_inputs(cfg, items)
    before = saved_inputs(cfg.stage_dir) if saved_config(cfg.stage_dir) == cfg.to_dict() else {}
    shared = [k for k in inputs if k in before]  # a model added is no change
    if change := input_change({k: before[k] for k in shared}, {k: inputs[k] for k in shared}):
        log.warning("%s: %s; answers made from the old ones are made again, the rest reused", cfg.stage_dir, change)
    record_run(cfg.stage_dir, cfg, inputs)


def evaluate_all(cfg: EvalConfig, items: dict[str, list[EvalItem]]) -> EvalResult:
    """Every model on every benchmark, then the stage's tables and metrics."""
    if skipped := readouts.skipped_keys(cfg):
        log.warning("readouts %s name no benchmark of this evaluation; they are not read", skipped)
    guards = [ModelJudge(cfg.judge_model_path)] if cfg.judge_model_path else []
    guards += [mis_judge(cfg.mis_judge_model_path)] if cfg.mis_judge_model_path else []
    frames = {name: to_frame(evaluate_model(cfg, name, adapter, guards, items), name) for name, adapter in models(cfg)}
    res = tabulate(cfg, frames)
    save_tables(res)
    read = readouts.stage_summary(cfg.stage_dir, list(frames)) if readouts.read_keys(cfg) else pd.DataFrame()
    res.metrics = write_metrics(cfg, res, read)
    return res


def checked_items(cfg: EvalConfig) -> dict[str, list[EvalItem]]:
    """Every benchmark's items, read (and so checked) before any model loads; the adapters must exist."""
    if not cfg.benchmarks:
        raise DataFormatError("benchmarks is empty. Fix: name at least one benchmark folder under data_root")
    if not (cfg.eval_base or cfg.eval_adapters):
        raise DataFormatError("nothing to evaluate: eval_base is false and eval_adapters is empty")
    missing = [str(adapter_path(cfg, a)) for a in cfg.eval_adapters if not adapter_path(cfg, a).is_dir()]
    if missing:
        raise FileNotFoundError(f"no adapter at {', '.join(missing)}. Fix: train these mixtures in stage 03 first")
    return {spec_name(spec): load_items(cfg, spec) for spec in cfg.benchmarks}


def tabulate(cfg: EvalConfig, frames: dict[str, pd.DataFrame]) -> EvalResult:
    """The stage's tables from every model's judgements (MIS's rates on its harmful splits only: a benign control
    in MIS's layout is read as over-refusal, like the others)."""
    judged = pd.concat(frames.values(), ignore_index=True)
    mis_keys = [spec_name(spec) for spec in cfg.benchmarks if spec["name"] == "mis" and spec.get("harmful", True)]
    return EvalResult(
        results_table(judged, cfg.bootstrap_samples, cfg.seed),
        agreement(judged),
        frames,
        cfg.headline_judge,
        truth_agreement(judged),
        truth_confusion(judged),
        mis_rates(judged, mis_keys) if mis_keys else pd.DataFrame(),
        folder=cfg.stage_dir,
    )


def save_tables(res: EvalResult) -> None:
    """results.csv and agreement.csv, and the truth and MIS tables when there are any."""
    out = res.folder
    write_text(out / "results.csv", res.results.to_csv(index=False, float_format="%.6g"))
    write_text(out / "agreement.csv", res.agreement.to_csv(index=False, float_format="%.6g"))
    if not res.truth.empty:
        write_text(out / "truth_agreement.csv", res.truth.to_csv(index=False, float_format="%.6g"))
        write_text(out / "truth_confusion.csv", res.confusion.to_csv(index=False))
    if not res.mis.empty:
        write_text(out / "mis_rates.csv", res.mis.to_csv(index=False, float_format="%.6g"))


def mis_flat(mis: pd.DataFrame, model: str) -> dict[str, float]:
    """One model's MIS rates beyond ASR (which results.csv holds), keyed benchmark/judge/mis_<rate>."""
    if mis.empty:
        return {}
    rows = mis[mis["model"] == model].itertuples()
    return {f"{r.benchmark}/{r.judge}/mis_{k}": getattr(r, k) for r in rows for k in ("rsr", "rr", "hr", "unreadable")}


def per_benchmark(cfg: EvalConfig) -> dict[str, dict[str, Any]]:
    """The benchmarks asked in their own prompt format or length, with those settings."""
    own = {spec_name(s): {k: s[k] for k in OWN_SETTINGS if s.get(k)} for s in cfg.benchmarks}
    return {name: settings for name, settings in own.items() if settings}


def write_metrics(cfg: EvalConfig, res: EvalResult, read: pd.DataFrame | None = None) -> dict[str, Any]:
    """metrics.json per model and for the stage: overall numbers keyed benchmark/judge/metric (and the readouts,
    keyed readout/benchmark/name), with context."""
    context = {
        "model": cfg.model_path,
        "quantization": cfg.eval_quantization,
        "adapters_merged": cfg.merge_adapters and cfg.eval_quantization == "none",
        "dtype": str(eval_dtype(cfg) or "compute dtype").removeprefix("torch."),
        "prompt_format": cfg.generation_format,
        "image_aspect_ratio": cfg.image_aspect_ratio,
        "decoding": decoding(cfg).to_dict(),
        "image_input": "blank" if cfg.blank_image else "none",
        "multi_image": cfg.multi_image,
        "headline_judge": cfg.headline_judge,
    }
    if own := per_benchmark(cfg):
        context["per_benchmark"] = own
    overall = res.results[res.results["category"] == "all"]
    read = readouts.flat(read if read is not None else pd.DataFrame())
    stage: dict[str, Any] = {"stage": cfg.stage, "preset": cfg.preset, **context}
    for name, part in overall.groupby("model"):
        flat = {f"{r.benchmark}/{r.judge}/{r.metric}": r.value for r in part.itertuples()}
        flat.update(mis_flat(res.mis, name))
        flat.update(read.get(name, {}))
        adapter = {"adapter": name if name != "base" else None}
        write_json(cfg.stage_dir / name / "metrics.json", {**adapter, **context, **flat})
        stage.update({f"{name}/{k}": v for k, v in flat.items()})
    write_json(cfg.stage_dir / "metrics.json", stage)
    return stage


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 04 for a preset."""
    return stage_main(EvalConfig, run, argv, "python -m mllm_safety.evaluate", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
