"""Stage 04's result and what notebook 04 shows of it: the headline tables (ASR, over-refusal, utility),
per-category intervals, judge agreement, the ground-truth comparison, MIS's rates, answers side by side, and
what we saw."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pandas as pd

from ..core.catalogue import benchmark_label
from ..core.judges import PAPER
from ..core.names import display_label
from ..core.results import StageResult


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
    return res.agreement.groupby(["judge_a", "judge_b"])[["agreement", "kappa"]].mean().round(3) + 0.0  # no "-0.0"


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
