"""Stage 04's result and what notebook 04 shows of it: the headline tables (ASR, over-refusal, utility),
per-category intervals, judge agreement, the ground-truth comparison, MIS's rates, answers side by side, and
what we saw.

The tables are for reading: benchmarks and models under their display labels, rows in the catalogue's order,
every rate at DIGITS decimals with its 95 % interval where there is one, counts as integers."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from ..core.catalogue import benchmark_label, entries
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


DIGITS = 2  # one rounding for every rate in notebook 04's tables
METRICS = {"asr": "ASR", "refusal_rate": "refusal rate", "accuracy": "accuracy"}


def reader_order(keys: Iterable[str]) -> list[str]:
    """Benchmark keys in the catalogue's order (attacks, benign, utility); unknown keys after, as given."""
    known = [b.key for b in entries()]
    return sorted(dict.fromkeys(keys), key=lambda k: known.index(k) if k in known else len(known))


def rate_cell(value: float, low: float, high: float) -> str:
    """'0.25 (0.10-0.45)': a rate and its 95 % interval at DIGITS decimals (the rate alone when the interval is
    a point or missing)."""
    rate = f"{value:.{DIGITS}f}"
    if low != low or high != high or (round(low, DIGITS) == round(high, DIGITS) == round(value, DIGITS)):
        return rate
    return f"{rate} ({low:.{DIGITS}f}-{high:.{DIGITS}f})"


def models_in_order(res: EvalResult, present: Iterable[str]) -> list[str]:
    """The models of `present` in evaluation order (base first)."""
    present = set(present)
    return [m for m in res.judged if m in present]


def overall_rows(res: EvalResult, metric: str, judge: str | None = "") -> pd.DataFrame:
    """The results rows of one metric over all items, under `judge` (default: headline; None: any)."""
    r = res.results[(res.results["category"] == "all") & (res.results["metric"] == metric)]
    return r if judge is None else r[r["judge"] == (judge or res.headline)]


def rates(res: EvalResult, metric: str, judge: str | None = "") -> pd.DataFrame:
    """One metric as numbers: benchmarks (labels, reader's order) as rows, models (short labels) as columns."""
    r = overall_rows(res, metric, judge)
    table = r.pivot_table(index="benchmark", columns="model", values="value", aggfunc="first")
    table = table.reindex(reader_order(r["benchmark"]))[models_in_order(res, table.columns)]
    table.index = [benchmark_label(b) for b in table.index]
    table.columns = [display_label(m) for m in table.columns]
    return table


def cell_table(res: EvalResult, rows: pd.DataFrame, index: str, order: list[str]) -> pd.DataFrame:
    """Rows of results as a reading table: `index` values in `order` as rows, then `items` (n per model), then
    one column per model (short label) holding 'rate (95 % interval)'."""
    if rows.empty:
        return pd.DataFrame(columns=["items"], index=pd.Index([], name=index))
    cells = rows.assign(cell=[rate_cell(*v) for v in zip(rows["value"], rows["ci_low"], rows["ci_high"], strict=True)])
    table = cells.pivot_table(index=index, columns="model", values="cell", aggfunc="first")
    models = models_in_order(res, table.columns)
    items = cells.groupby(index)["n"].max().astype(int).rename("items")
    table = items.to_frame().join(table[models]).reindex(order)
    table.columns = ["items", *(display_label(m) for m in models)]
    return table


def overall_table(res: EvalResult, metric: str, judge: str | None = "") -> pd.DataFrame:
    """One metric over all items: benchmarks as rows (labels, reader's order), the items per model, then each
    model's rate with its 95 % interval. The judge defaults to the headline judge (None: any, for the utility
    scorers)."""
    r = overall_rows(res, metric, judge)
    table = cell_table(res, r, "benchmark", reader_order(r["benchmark"]))
    table.index = pd.Index([benchmark_label(b) for b in table.index], name="benchmark")
    return table


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
    """ASR per category of one benchmark (headline judge): categories as rows, the items per model, then each
    model's ASR with its 95 % bootstrap interval; categories with fewer than min_n items are left out (their
    intervals say nothing)."""
    r = res.results
    part = r[(r["benchmark"] == benchmark) & (r["judge"] == res.headline) & (r["metric"] == "asr")]
    part = part[(part["category"] != "all") & (part["n"] >= min_n)]
    table = cell_table(res, part, "category", sorted(set(part["category"])))
    table.index.name = f"{benchmark_label(benchmark)}: category"
    return table


def agreement_table(res: EvalResult) -> pd.DataFrame:
    """Mean agreement and Cohen's kappa of every judge pair over benchmarks and models."""
    table = res.agreement.groupby(["judge_a", "judge_b"])[["agreement", "kappa"]].mean()
    return table.round(DIGITS) + 0.0  # no "-0.0"


def mis_table(res: EvalResult) -> pd.DataFrame:
    """MIS's rates per split, model and judge (fractions of every response; rsr and hr need the MIS judge)."""
    if res.mis.empty:
        return res.mis
    benches, models = reader_order(res.mis["benchmark"]), list(res.judged)
    rank = res.mis["benchmark"].map(benches.index) * len(models) + res.mis["model"].map(models.index)
    t = res.mis.assign(rank=rank).sort_values(["rank", "judge"], kind="stable").drop(columns="rank")
    t = t.assign(
        benchmark=t["benchmark"].map(benchmark_label), model=t["model"].map(display_label), n=t["n"].astype(int)
    )
    return t.set_index(["benchmark", "model", "judge"]).round(DIGITS)


def truth_table(res: EvalResult) -> pd.DataFrame:
    """Each string-match judge against the ground truth per benchmark (reader's order): the metric under both,
    agreement, kappa."""
    if res.truth.empty:
        return res.truth
    order = {key: rank for rank, key in enumerate(reader_order(res.truth["benchmark"]))}
    t = res.truth.sort_values("benchmark", key=lambda s: s.map(order), kind="stable")
    t = t.assign(benchmark=t["benchmark"].map(benchmark_label), metric=t["metric"].map(lambda m: METRICS.get(m, m)))
    cols = ["benchmark", "metric", "judge", "n", "truth_value", "judge_value", "agreement", "kappa"]
    return t[cols].astype({"n": int}).round(DIGITS).reset_index(drop=True)


def confusion_table(res: EvalResult, judge: str = PAPER) -> pd.DataFrame:
    """What one string-match judge called each ground-truth class (all benchmarks and models pooled)."""
    c = res.confusion[res.confusion["judge"] == judge] if not res.confusion.empty else res.confusion
    if c.empty:
        return c
    return c.pivot_table(index="truth_class", columns="label", values="count", aggfunc="sum", fill_value=0)


def what_we_saw(res: EvalResult) -> str:
    """The headline comparison in a few lines, from this run's results (the headline judge)."""
    asr = rates(res, "asr")
    if asr.empty:
        return "- No harmful benchmark was evaluated."
    mean = asr.mean()
    lines = [
        f"- Mean ASR over {len(asr)} harmful benchmarks ({res.headline}): "
        + ", ".join(f"{m} {v:.2f}" for m, v in mean.items())
        + "."
    ]
    over = rates(res, "refusal_rate")
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
        lines.append(f"- {benchmark_label(bench)} ASR ({judge}): {rates}.")
    return lines


def side_by_side(res: EvalResult, benchmark: str, judge: str = "", n: int = 3) -> pd.DataFrame:
    """The first n items of a benchmark, one row per item and model (the prompt once per item): every model's
    whole response and its label under `judge` (the headline judge by default)."""
    frames = []
    for name, df in res.judged.items():
        part = df[(df["benchmark"] == benchmark) & (df["judge"] == (judge or res.headline))].head(n)
        frames.append(part.assign(model=display_label(name), item=range(len(part))))
    if not frames:
        return pd.DataFrame(columns=["response", "label"])
    rows = pd.concat(frames).sort_values(["item"], kind="stable")
    return rows.set_index(["prompt", "model"])[["response", "label"]]
