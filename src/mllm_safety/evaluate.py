"""Stage 04, evaluation: the base model and every fine-tuned adapter on safety, over-refusal and utility benchmarks.

For each model: batched, resumable generation (`core.generation`), every judge on every response
(`core.judges`), metrics with bootstrap intervals (`core.metrics`). Writes, under runs/<preset>/04_evaluate/:
<model>/<benchmark>.jsonl (generations), <model>/judgements.jsonl, <model>/metrics.json, and for all models
results.csv (the tidy table the figures read), agreement.csv, metrics.json and, where the ground-truth judge ran
(the organism's world), truth_agreement.csv and truth_confusion.csv: every string-match judge against it.
CLI: `python -m mllm_safety.evaluate --preset toy` (settings: `core.config.EvalConfig`).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .core.benchmarks import load_benchmark
from .core.catalogue import benchmark_label
from .core.cli import stage_main
from .core.config import EvalConfig
from .core.files import DataFormatError, write_json, write_text
from .core.generation import Decoding, generate
from .core.judges import PAPER, ModelJudge, judge_rows, mis_judge
from .core.metrics import agreement, mis_rates, results_table, score_utility, truth_agreement, truth_confusion
from .core.names import display_label
from .core.results import StageResult
from .core.runs import TRAINED, trained_weights

log = logging.getLogger(__name__)
TRUTH_COLUMNS = ("truth_class", "truth_topic", "item_topic", "on_topic", "exact")  # what world_truth adds
SPEC_OPTIONS = ("mode", "subset", "split", "categories", "benchmark", "image_root", "scenarios")  # to load_benchmark


def decoding(cfg: EvalConfig) -> Decoding:
    """The decoding settings of the config."""
    return Decoding(cfg.max_new_tokens, cfg.do_sample, cfg.temperature, cfg.top_p, cfg.seed)


def spec_key(spec: dict[str, Any]) -> str:
    """A benchmark run's name: the loader plus its mode or subset (mm_safetybench_sd_typo, vlguard_test_unsafes);
    `key` names it explicitly (e.g. a benign control in a harmful benchmark's layout)."""
    name = spec.get("benchmark") if spec["name"] == "llava_eval_json" else spec.get("key", spec["name"])
    suffix = spec_variant(spec)
    return f"{name}_{suffix}" if suffix else str(name)


def spec_variant(spec: dict[str, Any]) -> str:
    """The benchmark's mode, subset or split ("" when it has none)."""
    return spec.get("mode") or spec.get("subset") or spec.get("split") or ""


def load_items(cfg: EvalConfig, spec: dict[str, Any]) -> list:
    """The benchmark's items (the first max_items when set)."""
    options = {k: spec[k] for k in SPEC_OPTIONS if k in spec}
    if "image_root" in options:
        options["image_root"] = Path(cfg.data_root) / options["image_root"]
    items = load_benchmark(spec["name"], Path(cfg.data_root) / spec["root"], **options)
    if "harmful" in spec:  # a benign control in a harmful benchmark's layout: its metric becomes over-refusal
        items = [dataclasses.replace(it, harmful=bool(spec["harmful"])) for it in items]
    return items[: cfg.max_items] if cfg.max_items > 0 else items


def adapter_path(cfg: EvalConfig, adapter: str) -> Path:
    """Where stage 03 saved what it trained on a mixture: the adapter, or the whole model (full fine-tuning)."""
    run = cfg.upstream("qlora_finetune") / adapter
    return trained_weights(run) or run / "adapter"


def load_for_eval(cfg: EvalConfig, adapter: str | None):
    """The base model, with the stage-03 adapter of `adapter` applied (merged into the weights when the base is
    unquantized and merge_adapters is on, as the official evaluation does); a fully fine-tuned run's own model."""
    from .core.modeling import load_model

    weights = adapter_path(cfg, adapter) if adapter else None
    if weights is not None and weights.name == TRAINED["full"][0]:  # full fine-tuning: the run's own model
        model, processor = load_model(weights, cfg.eval_quantization, cfg.trust_remote_code)
        return model.eval(), processor
    model, processor = load_model(cfg.model_path, cfg.eval_quantization, cfg.trust_remote_code)
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
    scorer = {"letter": "letter_match", "exact": "exact_match"}.get(spec.get("metric", ""))
    if scorer:
        judged += [
            {**r, "label": score_utility(r["response"], r["meta"].get("answer"), scorer), "judge": scorer} for r in rows
        ]
    return judged


def evaluate_model(
    cfg: EvalConfig, name: str, adapter: str | None, guards: list[ModelJudge], items: dict[str, list]
) -> list[dict]:
    """Generate (resuming), judge and save one model's results; returns its judgement rows."""
    model, processor = load_for_eval(cfg, adapter)
    out_dir = cfg.stage_dir / name
    judged = []
    for spec in cfg.benchmarks:
        key = spec_key(spec)
        rows = generate(
            model,
            processor,
            items[key],
            out_dir / f"{key}.jsonl",
            model_name=cfg.model_path,
            adapter=adapter,
            prompt_format=cfg.generation_format,
            decoding=decoding(cfg),
            batch_size=cfg.batch_size,
            blank_image=cfg.blank_image,
            image_aspect_ratio=cfg.image_aspect_ratio,
            multi_image=spec.get("multi_image", cfg.multi_image),
        )
        judged += [{**r, "benchmark_key": key, "mode": spec_variant(spec)} for r in judge_all(cfg, rows, spec, guards)]
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
    columns = ["id", "model", "adapter", "benchmark", "mode", "category", "judge", "harmful", "label"]
    extra = [c for c in (*TRUTH_COLUMNS, "judge_output") if c in df]
    return df[[*columns, *extra, "prompt", "response"]]


@dataclass
class EvalResult(StageResult):
    """What stage 04 computes: the tidy results, judge agreement, the judgement rows per model, the judge of the
    headline tables, and (the organism's world) each judge against the ground truth."""

    results: pd.DataFrame
    agreement: pd.DataFrame
    judged: dict[str, pd.DataFrame]
    headline: str = PAPER
    truth: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    confusion: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)
    mis: pd.DataFrame = dataclasses.field(default_factory=pd.DataFrame)

    def what_we_saw(self) -> str:
        return what_we_saw(self)


def run(cfg: EvalConfig, overwrite: bool = False) -> EvalResult:
    """Evaluate the base model and every adapter; write results.csv, agreement.csv and metrics.json.
    Generations already on disk are reused (overwrite is not needed: a file made otherwise is refused)."""
    if not cfg.benchmarks:
        raise DataFormatError("benchmarks is empty. Fix: name at least one benchmark folder under data_root")
    if not (cfg.eval_base or cfg.eval_adapters):
        raise DataFormatError("nothing to evaluate: eval_base is false and eval_adapters is empty")
    missing = [str(adapter_path(cfg, a)) for a in cfg.eval_adapters if not adapter_path(cfg, a).is_dir()]
    if missing:
        raise FileNotFoundError(f"no adapter at {', '.join(missing)}. Fix: train these mixtures in stage 03 first")
    items = {spec_key(spec): load_items(cfg, spec) for spec in cfg.benchmarks}  # every benchmark checked first
    write_json(cfg.stage_dir / "config.json", cfg.to_dict())
    guards = [ModelJudge(cfg.judge_model_path)] if cfg.judge_model_path else []
    guards += [mis_judge(cfg.mis_judge_model_path)] if cfg.mis_judge_model_path else []
    frames = {}
    models = [("base", None)] if cfg.eval_base else []
    for name, adapter in [*models, *[(a, a) for a in cfg.eval_adapters]]:
        frames[name] = to_frame(evaluate_model(cfg, name, adapter, guards, items), name)
    judged = pd.concat(frames.values(), ignore_index=True)
    results = results_table(judged, cfg.bootstrap_samples, cfg.seed)
    # MIS's rates on its harmful splits (a benign control in MIS's layout is read as over-refusal, like others)
    mis_keys = [spec_key(spec) for spec in cfg.benchmarks if spec["name"] == "mis" and spec.get("harmful", True)]
    res = EvalResult(
        results,
        agreement(judged),
        frames,
        cfg.headline_judge,
        truth_agreement(judged),
        truth_confusion(judged),
        mis_rates(judged, mis_keys) if mis_keys else pd.DataFrame(),
        folder=cfg.stage_dir,
    )
    write_text(cfg.stage_dir / "results.csv", res.results.to_csv(index=False, float_format="%.6g"))
    write_text(cfg.stage_dir / "agreement.csv", res.agreement.to_csv(index=False, float_format="%.6g"))
    if not res.truth.empty:
        write_text(cfg.stage_dir / "truth_agreement.csv", res.truth.to_csv(index=False, float_format="%.6g"))
        write_text(cfg.stage_dir / "truth_confusion.csv", res.confusion.to_csv(index=False))
    if not res.mis.empty:
        write_text(cfg.stage_dir / "mis_rates.csv", res.mis.to_csv(index=False, float_format="%.6g"))
    res.metrics = write_metrics(cfg, res)
    return res


def mis_flat(mis: pd.DataFrame, model: str) -> dict[str, float]:
    """One model's MIS rates beyond ASR (which results.csv holds), keyed benchmark/judge/mis_<rate>."""
    if mis.empty:
        return {}
    rows = mis[mis["model"] == model].itertuples()
    return {f"{r.benchmark}/{r.judge}/mis_{k}": getattr(r, k) for r in rows for k in ("rsr", "rr", "hr", "unreadable")}


def write_metrics(cfg: EvalConfig, res: EvalResult) -> dict[str, Any]:
    """metrics.json per model and for the stage: overall numbers keyed benchmark/judge/metric, with context."""
    context = {
        "model": cfg.model_path,
        "quantization": cfg.eval_quantization,
        "adapters_merged": cfg.merge_adapters and cfg.eval_quantization == "none",
        "prompt_format": cfg.generation_format,
        "image_aspect_ratio": cfg.image_aspect_ratio,
        "decoding": decoding(cfg).to_dict(),
        "image_input": "blank" if cfg.blank_image else "none",
        "multi_image": cfg.multi_image,
        "headline_judge": cfg.headline_judge,
    }
    overall = res.results[res.results["category"] == "all"]
    stage: dict[str, Any] = {"stage": cfg.stage, "preset": cfg.preset, **context}
    for name, part in overall.groupby("model"):
        flat = {f"{r.benchmark}/{r.judge}/{r.metric}": r.value for r in part.itertuples()}
        flat.update(mis_flat(res.mis, name))
        adapter = {"adapter": name if name != "base" else None}
        write_json(cfg.stage_dir / name / "metrics.json", {**adapter, **context, **flat})
        stage.update({f"{name}/{k}": v for k, v in flat.items()})
    write_json(cfg.stage_dir / "metrics.json", stage)
    return stage


def overall_table(res: EvalResult, metric: str, judge: str | None = "") -> pd.DataFrame:
    """One metric over all items: benchmarks as rows (labels), models as columns (short labels). The judge
    defaults to the headline judge (None: any, for the utility scorers)."""
    r = res.results[(res.results["category"] == "all") & (res.results["metric"] == metric)]
    if judge is not None:
        r = r[r["judge"] == (judge or res.headline)]
    table = r.pivot_table(index="benchmark", columns="model", values="value", aggfunc="first", sort=False)
    table = table[[m for m in res.judged if m in table.columns]]  # models in evaluation order, base first
    table.index = [benchmark_label(b) for b in table.index]
    table.columns = [display_label(m) for m in table.columns]
    return table.round(3)


def safety_table(res: EvalResult, judge: str = "") -> pd.DataFrame:
    """The headline: attack success rate per harmful benchmark and model (lower is safer)."""
    return overall_table(res, "asr", judge)


def over_refusal_table(res: EvalResult, judge: str = "") -> pd.DataFrame:
    """Share of benign prompts refused per benchmark and model (lower is better)."""
    return overall_table(res, "refusal_rate", judge)


def utility_table(res: EvalResult) -> pd.DataFrame:
    """Accuracy on the utility benchmarks (each scored by its own scorer)."""
    return overall_table(res, "accuracy", judge=None)


def category_table(res: EvalResult, benchmark: str = "mm_safetybench_sd_typo", min_n: int = 10) -> pd.DataFrame:
    """ASR per category of one benchmark (headline judge) with its 95 % bootstrap interval and item count;
    categories with fewer than min_n items are left out (their intervals say nothing)."""
    r = res.results
    part = r[(r["benchmark"] == benchmark) & (r["judge"] == res.headline) & (r["metric"] == "asr")]
    part = part[(part["category"] != "all") & (part["n"] >= min_n)]
    part = part.assign(model=part["model"].map(display_label))
    return part[["model", "category", "value", "ci_low", "ci_high", "n"]].round(3).reset_index(drop=True)


def agreement_table(res: EvalResult) -> pd.DataFrame:
    """Mean agreement and Cohen's kappa of every judge pair over benchmarks and models."""
    return res.agreement.groupby(["judge_a", "judge_b"])[["agreement", "kappa"]].mean().round(3)


def mis_table(res: EvalResult) -> pd.DataFrame:
    """MIS's rates per split, model and judge (fractions of every response; rsr and hr need the MIS judge)."""
    if res.mis.empty:
        return res.mis
    t = res.mis.assign(model=res.mis["model"].map(display_label))
    return t.set_index(["benchmark", "model", "judge"]).round(3)


def truth_table(res: EvalResult) -> pd.DataFrame:
    """Each string-match judge against the ground truth per benchmark: the metric under both, agreement, kappa."""
    if res.truth.empty:
        return res.truth
    t = res.truth.assign(benchmark=res.truth["benchmark"].map(benchmark_label))
    cols = ["benchmark", "metric", "judge", "n", "truth_value", "judge_value", "agreement", "kappa"]
    return t[cols].round(3)


def confusion_table(res: EvalResult, judge: str = PAPER) -> pd.DataFrame:
    """What one string-match judge called each ground-truth class (all benchmarks and models pooled)."""
    c = res.confusion[res.confusion["judge"] == judge] if not res.confusion.empty else res.confusion
    if c.empty:
        return c
    return c.pivot_table(index="truth_class", columns="label", values="count", aggfunc="sum", fill_value=0)


def what_we_saw(res: EvalResult) -> str:
    """The headline comparison in a few lines, from this run's results (the headline judge)."""
    asr = safety_table(res)
    if asr.empty:
        return "- No harmful benchmark was evaluated."
    mean = asr.mean()
    lines = [
        f"- Mean ASR over {len(asr)} harmful benchmarks ({res.headline}): "
        + ", ".join(f"{m} {v:.2f}" for m, v in mean.items())
        + "."
    ]
    over = over_refusal_table(res)
    if not over.empty:
        lines.append(
            "- Mean over-refusal on benign prompts: " + ", ".join(f"{m} {v:.2f}" for m, v in over.mean().items()) + "."
        )
    if "base" in mean.index and len(mean) > 1:
        best = mean.drop("base").idxmin()
        lines.append(
            f"- Lowest ASR: `{best}` ({mean[best]:.2f} vs base {mean['base']:.2f}); read it with its "
            "over-refusal, a model that refuses everything is 'safe' too."
        )
    if not res.truth.empty:
        asr_rows = res.truth[res.truth["metric"] == "asr"]
        for judge, part in asr_rows.groupby("judge"):
            lines.append(
                f"- `{judge}` against the ground truth on harmful items: agrees on {part['agreement'].mean():.0%} "
                f"(mean over benchmarks); ASR {part['judge_value'].mean():.2f} where the truth is "
                f"{part['truth_value'].mean():.2f}."
            )
    return "\n".join(lines + mis_lines(res))


def mis_lines(res: EvalResult) -> list[str]:
    """MIS in one line per split: each model's ASR under the MIS judge where it ran, else the headline judge."""
    if res.mis.empty:
        return []
    judge = "mis_judge" if "mis_judge" in set(res.mis["judge"]) else res.headline
    part = res.mis[res.mis["judge"] == judge]
    lines = []
    for bench, g in part.groupby("benchmark", sort=True):
        rates = ", ".join(f"{display_label(m)} {v:.2f}" for m, v in zip(g["model"], g["asr"], strict=True))
        lines.append(f"- MIS `{bench}` ASR ({judge}): {rates}.")
    return lines


def side_by_side(res: EvalResult, benchmark: str, judge: str = "", n: int = 3) -> pd.DataFrame:
    """The first n items of a benchmark: the prompt, then every model's response and its label under `judge`
    (the headline judge by default)."""
    frames = []
    for name, df in res.judged.items():
        part = df[(df["benchmark"] == benchmark) & (df["judge"] == (judge or res.headline))].set_index("id").head(n)
        if not frames:
            frames.append(part[["prompt"]])
        frames.append(part[["response", "label"]].add_prefix(f"{display_label(name)}: "))
    return pd.concat(frames, axis=1)


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 04 for a preset."""
    return stage_main(EvalConfig, run, argv, "python -m mllm_safety.evaluate", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
