"""Stage 06's plots: pure functions from saved tables to a matplotlib Figure (no file is read or written here,
and no torch is imported), each in the one style of core.plots."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import get_args

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.transforms import offset_copy

from ..core import catalogue
from ..core.catalogue import benchmark_label
from ..core.judges import PAPER, JudgeName
from ..core.metrics import metric_judge
from ..core.plots import PALETTE, fit_limits, legend_outside

log = logging.getLogger(__name__)

MODES = {"text": "text only", "typo": "TYPO image", "sd": "SD image", "sd_typo": "SD+TYPO image"}
MIS_FIXES = ("benign rejection", "VLGuard multi_turn", "MIS reasoning")  # the curated study's rows it shows
JUDGE = PAPER  # the data-bias figure's judge (dataset answers), and the default headline judge
MARKERS = "osD^vPX*"  # one per line, so lines that share values stay told apart
NUDGE_PT = 1.5  # lines drawn this many points apart per rank, so equal values (two lines at 0) both show
REFERENCES = (("base", "--", "base model (dashed)"), ("vlguard", ":", "LoRA on VLGuard (dotted)"))


def attack_labels() -> dict[str, str]:
    """Benchmark key -> label of the attacks the safety figures draw (core.catalogue, in its order)."""
    return {b.key: b.label for b in catalogue.in_figure("attacks")}


def attack_columns() -> dict[str, str]:
    """Stage 05's column name -> benchmark key, for the attacks the safety figures draw."""
    return {b.column: b.key for b in catalogue.in_figure("attacks")}


def mis_columns() -> dict[str, tuple[str, str, str]]:
    """Stage 05's column -> (benchmark key, metric, label) of the multi-image panel."""
    return {b.column: (b.key, b.metric, b.figure_label) for b in catalogue.in_figure("mis")}


def overall(results: pd.DataFrame, judge: str = JUDGE) -> pd.DataFrame:
    """The 'all' category rows of one judge (utility rows kept: their judge is the scorer)."""
    keep = (results["category"] == "all") & ((results["judge"] == judge) | (results["metric"] == "accuracy"))
    return results[keep]


# --- 01: data bias ------------------------------------------------------------------------------------------


def plot_data_bias(stats: pd.DataFrame, lengths: pd.DataFrame) -> Figure:
    """Refusal share (paper's string match) and answer-length distribution per dataset, side by side."""
    fig = Figure(figsize=(7.5, 3.0))
    left, right = fig.subplots(1, 2)
    share = stats.reset_index()
    col = f"refusal_share/{JUDGE}"
    sns.barplot(share, x="dataset", y=col, hue="dataset", palette=PALETTE, legend=False, ax=left)
    for patch, n in zip(left.patches, share["answers"], strict=False):
        left.annotate(
            f"n={int(n)}",
            (patch.get_x() + patch.get_width() / 2, patch.get_height()),
            ha="center",
            va="bottom",
            fontsize=7,
        )
    left.set(xlabel="dataset", ylabel="share of answers that refuse", ylim=(0, 1.05), title="refusal share")
    left.tick_params(axis="x", labelrotation=15)
    sns.ecdfplot(lengths, x="words", hue="dataset", palette=PALETTE, ax=right, log_scale=(True, False))
    right.set(xlabel="answer length (words, log scale)", ylabel="share of answers ≤ length", title="answer length")
    if right.get_legend() is not None:
        sns.move_legend(right, "upper left", bbox_to_anchor=(1.02, 1.0), fontsize=7, title_fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


# --- 05: the studies ----------------------------------------------------------------------------------------


def study_table(results: pd.DataFrame, studies: pd.DataFrame, study: str, judge: str) -> pd.DataFrame:
    """The study's rows joined with every overall metric of their runs."""
    rows = studies[studies["study"] == study][["study", "order", "row", "arm", "run", "seed", "fraction"]]
    return rows.merge(overall(results, judge), on="run")


def plot_asr_vs_fraction(
    results: pd.DataFrame, studies: pd.DataFrame, runs: pd.DataFrame, intervals: pd.DataFrame, judge: str = JUDGE
) -> Figure:
    """ASR per attack benchmark vs rejection fraction: mean over seeds, with the 95 % interval over seeds and
    items (band), the base model (dashed) and the curated VLGuard baseline (dotted) as references. Each line has
    its own marker and is nudged by NUDGE_PT points per rank, so lines with equal values all show."""
    attacks = attack_labels()
    t = study_table(results, studies, "fraction", judge)
    t = t[(t["metric"] == "asr") & t["benchmark"].isin(list(attacks))].assign(
        pct=lambda d: 100 * d["fraction"], attack=lambda d: d["benchmark"].map(attacks)
    )
    band = intervals_by_fraction(intervals, studies)
    fig = Figure(figsize=(7.5, 3.6))
    ax = fig.subplots()
    colors = dict(zip(attacks.values(), sns.color_palette(PALETTE, len(attacks)), strict=True))
    drawn = [a for a in attacks.values() if a in set(t["attack"])]
    for rank, attack in enumerate(drawn):
        mean = t[t["attack"] == attack].groupby("pct")["value"].mean()
        nudge = NUDGE_PT * (rank - (len(drawn) - 1) / 2)
        shifted = offset_copy(ax.transData, fig=fig, x=nudge, y=nudge, units="points")
        style = {"marker": MARKERS[rank % len(MARKERS)], "ms": 3.5, "color": colors[attack]}
        ax.plot(mean.index, mean.to_numpy(), transform=shifted, label=attack, **style)
        b = band[band["attack"] == attack].sort_values("pct")
        ax.fill_between(b["pct"], b["ci_low"], b["ci_high"], color=colors[attack], alpha=0.12, lw=0)
    refs = overall(results, judge)
    values = [*t["value"], *band["ci_high"]]
    for role, ls, _label in REFERENCES:
        runs_of_role = list(runs.loc[runs["role"] == role, "run"])
        part = refs[refs["run"].isin(runs_of_role) & (refs["metric"] == "asr") & refs["benchmark"].isin(list(attacks))]
        for bench, value in part.groupby("benchmark")["value"].mean().items():
            ax.axhline(value, ls=ls, lw=0.8, color=colors[attacks[bench]])
            values.append(value)
    n = t.groupby("pct")["seed"].nunique().max() if len(t) else 0
    ax.set(
        xlabel="rejection samples in the fix mixture (% of records)",
        ylabel=f"attack success rate ({judge})",
        ylim=fit_limits(values),
        title=f"ASR vs rejection fraction (mean of {n} seed{'' if n == 1 else 's'}; band: 95 % interval over seeds "
        "and items)",
    )
    ax.title.set_fontsize(8)
    handles = ax.get_legend_handles_labels()[0]
    refs_drawn = [Line2D([], [], color="grey", ls=ls, lw=0.8, label=label) for _role, ls, label in REFERENCES]
    legend_outside(ax, handles=[*handles, *refs_drawn], title="attack (same colour: its references)")
    fig.tight_layout()
    return fig


def intervals_by_fraction(intervals: pd.DataFrame, studies: pd.DataFrame) -> pd.DataFrame:
    """The fraction study's seed-and-item intervals of the attack benchmarks' ASR, keyed by percent and attack."""
    columns = {column: attack_labels()[bench] for column, bench in attack_columns().items()}
    part = intervals[(intervals["study"] == "fraction") & intervals["metric"].isin(list(columns))]
    pct = studies[studies["study"] == "fraction"].drop_duplicates("row").set_index("row")["fraction"] * 100
    return part.assign(attack=part["metric"].map(columns), pct=part["row"].map(pct))


def plot_tradeoff(results: pd.DataFrame, studies: pd.DataFrame, judge: str = JUDGE) -> Figure:
    """Safety vs over-refusal: one point per run (mean ASR over the image attacks vs XSTest safe-prompt refusal)."""
    o = overall(results, judge)
    asr = o[(o["metric"] == "asr") & o["benchmark"].isin([b for b in attack_labels() if b != "mm_safetybench_text"])]
    xstest_judge = metric_judge("xstest", judge)
    over = results[
        (results["benchmark"] == "xstest")
        & (results["judge"] == xstest_judge)
        & (results["metric"] == "refusal_rate")
        & (results["category"] == "all")
    ]
    points = pd.DataFrame({"asr": asr.groupby("run")["value"].mean(), "over": over.set_index("run")["value"]})
    first = studies.drop_duplicates("run").set_index("run")["study"]
    points = points.join(first).fillna({"study": "base"}).reset_index()
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    sns.scatterplot(points, x="over", y="asr", hue="study", style="study", palette=PALETTE, ax=ax, s=28)
    ax.set(
        xlabel=f"over-refusal: XSTest safe prompts refused ({xstest_judge})",
        ylabel=f"mean ASR over image attacks ({judge})",
        xlim=fit_limits(points["over"]),
        ylim=fit_limits(points["asr"]),
        title=f"safety vs over-refusal ({len(points)} runs)",
    )
    legend_outside(ax, title="study (first)")
    fig.tight_layout()
    return fig


def plot_modality_gap(results: pd.DataFrame, runs: dict[str, list[str]], judge: str = JUDGE) -> Figure:
    """ASR per input mode (MM-SafetyBench text, TYPO, SD, SD+TYPO) for the named runs (label -> runs)."""
    o = overall(results, judge)
    o = o[o["benchmark"].isin([f"mm_safetybench_{m}" for m in MODES])]
    o = o[(o["metric"] == "asr") & o["benchmark"].str.startswith("mm_safetybench")]
    frames = [o[o["run"].isin(names)].assign(model=label) for label, names in runs.items()]
    t = pd.concat(frames).assign(mode=lambda d: d["mode"].map(MODES))
    fig = Figure(figsize=(7.5, 3.2))
    ax = fig.subplots()
    sns.barplot(
        t,
        x="mode",
        y="value",
        hue="model",
        order=list(MODES.values()),
        palette=PALETTE,
        errorbar="sd",
        capsize=0.1,
        err_kws={"linewidth": 0.8},
        ax=ax,
    )
    n = int(t["n"].max()) if len(t) else 0
    ax.set(
        xlabel=f"MM-SafetyBench input mode (n={n} items each)",
        ylabel=f"attack success rate ({judge})",
        ylim=(0, fit_limits(t["value"])[1]),
        title="the vision-vs-text alignment gap, before and after the fix (bars: mean, whiskers: sd over runs)",
    )
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.2f", fontsize=5.5, padding=1)  # a bar at 0 still says so
    ax.title.set_fontsize(8)
    legend_outside(ax, title="model")
    fig.tight_layout()
    return fig


def mis_bars(results: pd.DataFrame, runs: pd.DataFrame, intervals: pd.DataFrame, judge: str) -> pd.DataFrame:
    """(fix, measure, mean, ci_low, ci_high) of the multi-image panel: the base model from its own run (item
    interval), each fix from the curated study (mean over seeds, seed-and-item interval)."""
    o = overall(results, judge)
    base = o[o["run"].isin(runs.loc[runs["role"] == "base", "run"])]
    rows = []
    for column, (bench, metric, label) in mis_columns().items():
        b = base[(base["benchmark"] == bench) & (base["metric"] == metric)]
        if len(b):
            cells = {"mean": b["value"].mean(), "ci_low": b["ci_low"].mean(), "ci_high": b["ci_high"].mean()}
            rows.append({"fix": "base (no fix)", "measure": label, **cells})
        part = intervals[(intervals["study"] == "curated") & (intervals["metric"] == column)]
        for r in part[part["row"].isin(MIS_FIXES)].itertuples():
            rows.append({"fix": r.row, "measure": label, "mean": r.mean, "ci_low": r.ci_low, "ci_high": r.ci_high})
    return pd.DataFrame(rows, columns=["fix", "measure", "mean", "ci_low", "ci_high"])


def plot_mis(results: pd.DataFrame, runs: pd.DataFrame, intervals: pd.DataFrame, judge: str = JUDGE) -> Figure:
    """Multi-image safety (MIS's format): easy and hard ASR and benign pairs refused, for the base model and
    each kind of fix at matched size, with 95 % intervals (seeds and items for the fixes, items for the base)."""
    t = mis_bars(results, runs, intervals, judge)
    fig = Figure(figsize=(7.5, 3.4))
    ax = fig.subplots()
    if t.empty:
        ax.text(0.5, 0.5, "MIS was not evaluated in this preset's studies", ha="center", va="center")
        ax.set_axis_off()
        return fig
    fixes = list(dict.fromkeys(t["fix"]))
    measures = list(dict.fromkeys(t["measure"]))
    width = 0.8 / len(fixes)
    colors = sns.color_palette(PALETTE, len(fixes))
    for k, fix in enumerate(fixes):
        part = t[t["fix"] == fix].set_index("measure").reindex(measures)
        x = np.arange(len(measures)) + (k - (len(fixes) - 1) / 2) * width
        err = np.vstack([part["mean"] - part["ci_low"], part["ci_high"] - part["mean"]])
        bars = ax.bar(x, part["mean"], width, yerr=err, capsize=2, color=colors[k], label=fix, error_kw={"lw": 0.8})
        ax.bar_label(bars, fmt="%.2f", fontsize=5.5, padding=1)  # a bar at 0 still says so
    ax.set_xticks(np.arange(len(measures)), measures)
    ax.set(
        ylabel=f"share of items ({judge})",
        ylim=(0, fit_limits(t["ci_high"])[1]),
        title="two images per prompt: does the fix transfer? (95 % intervals)",
    )
    legend_outside(ax, title="fix")
    fig.tight_layout()
    return fig


def plot_category_heatmap(
    results: pd.DataFrame,
    runs: dict[str, list[str]],
    benchmark: str = "mm_safetybench_sd_typo",
    judge: str = JUDGE,
    min_n: int = 10,
) -> Figure:
    """Per-category ASR (mean over each model's runs, i.e. its seeds) for the named runs on one benchmark;
    categories with fewer than min_n items per run are left out; the axes say how many runs and items a cell holds."""
    r = results[
        (results["benchmark"] == benchmark)
        & (results["judge"] == judge)
        & (results["metric"] == "asr")
        & (results["category"] != "all")
        & (results["n"] >= min_n)
    ]
    frames = [r[r["run"].isin(names)].assign(model=label) for label, names in runs.items()]
    t = pd.concat(frames).pivot_table(index="category", columns="model", values="value", aggfunc="mean")
    t = t[[c for c in runs if c in t.columns]]
    fig = Figure(figsize=(5.5, max(2.8, 0.25 * len(t) + 1.4)))
    ax = fig.subplots()
    if t.empty:
        ax.text(0.5, 0.5, f"no scenario has {min_n} or more items per run", ha="center", va="center")
        ax.set_axis_off()
        return fig
    sns.heatmap(
        t,
        vmin=0,
        vmax=1,
        cmap="viridis",
        annot=True,
        fmt=".2f",
        annot_kws={"fontsize": 6},
        ax=ax,
        cbar_kws={"label": f"ASR ({judge})"},
    )
    runs_per_model = {label: r.loc[r["run"].isin(names), "run"].nunique() for label, names in runs.items()}
    ax.set(
        xlabel=f"model (cell: mean over {span(runs_per_model.values())} runs of the model)",
        ylabel=f"scenario ({span(r['n'])} items per run)",
        title=f"{attack_labels().get(benchmark, benchmark)}: ASR per scenario",
    )
    ax.xaxis.label.set_fontsize(7)
    fig.tight_layout()
    return fig


def span(values: Iterable[float]) -> str:
    """'3' when every value is 3, '2-3' when they differ ('0' for none): how many runs or items a cell holds."""
    numbers = sorted({int(v) for v in values})
    if not numbers:
        return "0"
    return str(numbers[0]) if len(numbers) == 1 else f"{numbers[0]}-{numbers[-1]}"


SHORT_JUDGES = dict(zip(get_args(JudgeName), ("paper", "xstest", "keywords", "truth"), strict=True))


def pooled_agreement(agreement: pd.DataFrame) -> pd.DataFrame:
    """Agreement and Cohen's kappa per (benchmark, judge pair), from the 2x2 counts pooled over models."""
    counts = ["both_refuse", "only_a_refuses", "only_b_refuses", "neither_refuses"]
    g = agreement.groupby(["benchmark", "judge_a", "judge_b"], sort=False)[counts].sum().reset_index()
    n = g[counts].sum(axis=1)
    a_refuses, b_refuses = (g["both_refuse"] + g["only_a_refuses"]) / n, (g["both_refuse"] + g["only_b_refuses"]) / n
    observed = (g["both_refuse"] + g["neither_refuses"]) / n
    expected = a_refuses * b_refuses + (1 - a_refuses) * (1 - b_refuses)
    kappa = ((observed - expected) / (1 - expected)).where(expected < 1)
    pair = (
        g["judge_a"].map(lambda j: SHORT_JUDGES.get(j, j))
        + " vs\n"
        + g["judge_b"].map(lambda j: SHORT_JUDGES.get(j, j))
    )
    return g.assign(n=n, agreement=observed, kappa=kappa, pair=pair, bench=g["benchmark"].map(benchmark_label))


def plot_judge_agreement(agreement: pd.DataFrame) -> Figure:
    """Cohen's kappa between every pair of refusal judges, per benchmark (models pooled); cells: % agreement."""
    pooled = pooled_agreement(agreement)
    kappa = pooled.pivot(index="bench", columns="pair", values="kappa")
    share = pooled.pivot(index="bench", columns="pair", values="agreement")
    fig = Figure(figsize=(3.0 + 0.85 * len(kappa.columns), max(2.8, 0.3 * len(kappa) + 1.8)))
    ax = fig.subplots()
    labels = share.map(lambda v: f"{v:.0%}") + kappa.map(lambda k: "\nκ n/a" if k != k else "")
    sns.heatmap(
        kappa.fillna(0.0),
        vmin=-1,
        vmax=1,
        cmap="vlag",
        annot=labels,
        fmt="",
        annot_kws={"fontsize": 6},
        ax=ax,
        cbar_kws={"label": "Cohen's kappa"},
    )
    ax.grid(False)
    ax.tick_params(axis="x", labelrotation=0, labelsize=7)
    ax.set(
        xlabel="judge pair (cell text: % agreement; κ n/a: a judge gave a single label, so kappa is undefined)",
        ylabel="",
        title=f"judge agreement, refusal or not ({int(pooled['n'].max())} responses per benchmark at most)",
    )
    ax.title.set_fontsize(8)
    ax.xaxis.label.set_fontsize(7)
    fig.tight_layout()
    return fig
