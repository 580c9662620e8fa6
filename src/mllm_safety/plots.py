"""Stage 06: figures and tables from saved metrics alone (no torch import, seconds on a CPU).

Reads runs/<preset>/: 01_data_bias/{stats.csv, answer_lengths.csv}, 04_eval/{results.csv, agreement.csv},
03_finetune/*/log_history.jsonl, 05_ablations/{results.csv, studies.csv, runs.csv, summary.md}; writes PNG + PDF
per figure and results.md into figures/<preset>/. Plot functions are pure (tables in, Figure out); one style for
all (seaborn, colour-blind-safe palette, paper size); files are byte-stable for the same metrics.
CLI: `python -m mllm_safety.plots --preset toy`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import matplotlib as mpl
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

log = logging.getLogger(__name__)
STAGE = "06_figures"
PALETTE = "colorblind"
ATTACKS = {  # benchmark key -> label, for the safety figures
    "mm_safetybench_typo": "MM-SafetyBench TYPO",
    "mm_safetybench_sd_typo": "MM-SafetyBench SD+TYPO",
    "mm_safetybench_sd": "MM-SafetyBench SD",
    "mm_safetybench_text": "MM-SafetyBench text",
    "figstep": "FigStep",
    "vlguard_test_unsafes": "VLGuard unsafe",
}
MODES = {"text": "text only", "typo": "TYPO image", "sd": "SD image", "sd_typo": "SD+TYPO image"}
JUDGE = "paper_strmatch"


@dataclass(frozen=True)
class FigureConfig:
    """Stage 06's settings; field names equal the notebook's parameters and the preset's keys."""

    preset: str = "toy"
    runs_root: str = "runs"
    figures_root: str = "figures"  # figures go to figures_root/<preset>/


def style() -> None:
    """The one style of every figure: paper-size fonts, white grid, colour-blind-safe colours, fixed metadata."""
    sns.set_theme(context="paper", style="whitegrid", palette=PALETTE, font="DejaVu Sans")
    mpl.rcParams.update({"figure.dpi": 150, "savefig.dpi": 200, "pdf.fonttype": 42, "svg.hashsalt": "mllm-safety"})


def save(fig: Figure, out_dir: Path, name: str) -> list[Path]:
    """PNG and PDF, with no timestamps or version strings, so reruns on the same metrics give the same bytes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.pdf"]
    fig.savefig(paths[0], metadata={"Software": None})
    fig.savefig(paths[1], metadata={"CreationDate": None, "Creator": None, "Producer": None})
    return paths


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
        left.annotate(f"n={int(n)}", (patch.get_x() + patch.get_width() / 2, patch.get_height()), ha="center",
                      va="bottom", fontsize=7)  # fmt: skip
    left.set(xlabel="dataset", ylabel="share of answers that refuse", ylim=(0, 1.05), title="refusal share")
    left.tick_params(axis="x", labelrotation=15)
    sns.ecdfplot(lengths, x="words", hue="dataset", palette=PALETTE, ax=right, log_scale=(True, False))
    right.set(xlabel="answer length (words, log scale)", ylabel="share of answers ≤ length", title="answer length")
    fig.tight_layout()
    return fig


# --- 05: the studies ----------------------------------------------------------------------------------------


def study_table(results: pd.DataFrame, studies: pd.DataFrame, study: str, judge: str = JUDGE) -> pd.DataFrame:
    """The study's rows joined with every overall metric of their runs."""
    rows = studies[studies["study"] == study][["study", "order", "row", "arm", "run", "seed", "fraction"]]
    return rows.merge(overall(results, judge), on="run")


def plot_asr_vs_fraction(results: pd.DataFrame, studies: pd.DataFrame) -> Figure:
    """ASR per attack benchmark vs rejection fraction: mean over seeds (bars: sd over seeds), mean bootstrap band,
    the base model (dashed) and the curated VLGuard baseline (dotted) as references."""
    t = study_table(results, studies, "fraction")
    t = t[(t["metric"] == "asr") & t["benchmark"].isin(list(ATTACKS))].assign(
        pct=lambda d: 100 * d["fraction"], attack=lambda d: d["benchmark"].map(ATTACKS)
    )
    fig = Figure(figsize=(6.5, 3.6))
    ax = fig.subplots()
    colors = dict(zip(ATTACKS.values(), sns.color_palette(PALETTE, len(ATTACKS)), strict=True))
    for attack, part in t.groupby("attack", sort=False):
        mean = part.groupby("pct")[["value", "ci_low", "ci_high"]].mean()
        sd = part.groupby("pct")["value"].std().fillna(0)
        ax.errorbar(mean.index, mean["value"], yerr=sd, marker="o", ms=3, capsize=2, color=colors[attack],
                    label=attack)  # fmt: skip
        ax.fill_between(mean.index, mean["ci_low"], mean["ci_high"], color=colors[attack], alpha=0.12, lw=0)
    refs = overall(results)
    for run, ls in (("base_harmful", "--"), ("vlguard_multi_turn", ":")):
        part = refs[refs["run"].str.startswith(run) & (refs["metric"] == "asr") & refs["benchmark"].isin(list(ATTACKS))]
        for bench, value in part.groupby("benchmark")["value"].mean().items():
            ax.axhline(value, ls=ls, lw=0.8, color=colors[ATTACKS[bench]])
    n = t.groupby("pct")["seed"].nunique().max() if len(t) else 0
    ax.set(xlabel="rejection samples in the fix mixture (% of records)", ylabel=f"attack success rate ({JUDGE})",
           ylim=(-0.02, 1.02), title=f"ASR vs rejection fraction (mean ± sd over {n} seeds; dashed: base, "
           "dotted: VLGuard)")  # fmt: skip
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7, ncols=2, loc="upper right")
    fig.tight_layout()
    return fig


def plot_tradeoff(results: pd.DataFrame, studies: pd.DataFrame) -> Figure:
    """Safety vs over-refusal: one point per run (mean ASR over the image attacks vs XSTest safe-prompt refusal)."""
    o = overall(results)
    asr = o[(o["metric"] == "asr") & o["benchmark"].isin([b for b in ATTACKS if b != "mm_safetybench_text"])]
    over = results[(results["benchmark"] == "xstest") & (results["judge"] == "xstest_strmatch")
                   & (results["metric"] == "refusal_rate") & (results["category"] == "all")]  # fmt: skip
    points = pd.DataFrame({"asr": asr.groupby("run")["value"].mean(), "over": over.set_index("run")["value"]})
    first = studies.drop_duplicates("run").set_index("run")["study"]
    points = points.join(first).fillna({"study": "base"}).reset_index()
    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    sns.scatterplot(points, x="over", y="asr", hue="study", style="study", palette=PALETTE, ax=ax, s=28)
    ax.set(xlabel="over-refusal: XSTest safe prompts refused (xstest_strmatch)",
           ylabel="mean ASR over image attacks (paper_strmatch)", xlim=(-0.03, 1.03), ylim=(-0.03, 1.03),
           title=f"safety vs over-refusal ({len(points)} runs)")  # fmt: skip
    ax.legend(fontsize=7, title="study (first)", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_modality_gap(results: pd.DataFrame, runs: dict[str, str]) -> Figure:
    """ASR per input mode (MM-SafetyBench text, TYPO, SD, SD+TYPO) for the named runs (label -> run prefix)."""
    o = overall(results)
    o = o[(o["metric"] == "asr") & o["benchmark"].str.startswith("mm_safetybench")]
    frames = [o[o["run"].str.startswith(prefix)].assign(model=label) for label, prefix in runs.items()]
    t = pd.concat(frames).assign(mode=lambda d: d["mode"].map(MODES))
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.barplot(t, x="mode", y="value", hue="model", order=list(MODES.values()), palette=PALETTE, errorbar="sd",
                capsize=0.1, err_kws={"linewidth": 0.8}, ax=ax)  # fmt: skip
    n = int(t["n"].max()) if len(t) else 0
    ax.set(xlabel=f"MM-SafetyBench input mode (n={n} items each)", ylabel=f"attack success rate ({JUDGE})",
           ylim=(0, 1.05), title="the vision-vs-text alignment gap, before and after the fix")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_category_heatmap(
    results: pd.DataFrame, runs: dict[str, str], benchmark: str = "mm_safetybench_sd_typo"
) -> Figure:
    """Per-category ASR (mean over seeds) for the named runs on one benchmark."""
    r = results[(results["benchmark"] == benchmark) & (results["judge"] == JUDGE) & (results["metric"] == "asr")
                & (results["category"] != "all")]  # fmt: skip
    frames = [r[r["run"].str.startswith(prefix)].assign(model=label) for label, prefix in runs.items()]
    t = pd.concat(frames).pivot_table(index="category", columns="model", values="value", aggfunc="mean")
    t = t[[c for c in runs if c in t.columns]]
    fig = Figure(figsize=(5.5, max(2.8, 0.25 * len(t) + 1.4)))
    ax = fig.subplots()
    sns.heatmap(t, vmin=0, vmax=1, cmap="viridis", annot=True, fmt=".2f", annot_kws={"fontsize": 6}, ax=ax,
                cbar_kws={"label": f"ASR ({JUDGE})"})  # fmt: skip
    n = int(r["n"].max()) if len(r) else 0
    ax.set(xlabel="model", ylabel=f"scenario (n={n} items each)", title=f"{ATTACKS.get(benchmark, benchmark)}: ASR")
    fig.tight_layout()
    return fig


def plot_loss_curves(histories: dict[str, pd.DataFrame]) -> Figure:
    """Training loss per optimizer step, one line per run."""
    frames = [h.dropna(subset=["loss"]).assign(run=name) for name, h in histories.items() if "loss" in h]
    data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame({"step": [], "loss": [], "run": []})
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.lineplot(data, x="step", y="loss", hue="run", palette=PALETTE, ax=ax)
    ax.set(xlabel="optimizer step", ylabel="training loss (mean token cross-entropy)")
    ax.legend(fontsize=6)
    fig.tight_layout()
    return fig


def plot_judge_agreement(agreement: pd.DataFrame) -> Figure:
    """Cohen's kappa between every pair of refusal judges, per benchmark (all models pooled, n responses)."""
    a = agreement.assign(pair=lambda d: d["judge_a"] + " vs " + d["judge_b"],
                         bench=lambda d: (d["benchmark"] + " " + d["mode"].fillna("")).str.strip())  # fmt: skip
    weighted = a.assign(k=a["kappa"] * a["n"]).groupby(["bench", "pair"])[["k", "n"]].sum()
    kappa = (weighted["k"] / weighted["n"]).unstack("pair")
    agree = a.assign(x=a["agreement"] * a["n"]).groupby(["bench", "pair"])[["x", "n"]].sum()
    share = (agree["x"] / agree["n"]).unstack("pair")
    fig = Figure(figsize=(6.5, max(2.8, 0.3 * len(kappa) + 1.6)))
    ax = fig.subplots()
    labels = share.map(lambda v: f"{v:.0%}")
    sns.heatmap(kappa, vmin=-1, vmax=1, cmap="vlag", annot=labels, fmt="", annot_kws={"fontsize": 6}, ax=ax,
                cbar_kws={"label": "Cohen's kappa (nan: a judge gave one label)"})  # fmt: skip
    ax.set(xlabel="judge pair (cell text: % agreement)", ylabel="benchmark", title="judge agreement (refusal or not)")
    fig.tight_layout()
    return fig


# --- reading the saved metrics and writing everything --------------------------------------------------------


def read_csv(path: Path) -> pd.DataFrame:
    """A metrics table written by a stage (empty strings stay empty, not NaN, for the mode column)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the stage that writes it first (see the README)")
    return pd.read_csv(path, dtype={"mode": str, "adapter": str}).fillna({"mode": "", "adapter": ""})


def read_log_history(path: str | Path) -> pd.DataFrame:
    """A run's log_history.jsonl as a table (one row per logged step)."""
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return pd.DataFrame(rows)


def reference_runs(studies: pd.DataFrame) -> dict[str, str]:
    """Label -> run prefix of the models the before/after figures compare (the first seed of each arm)."""
    ref = studies[(studies["study"] == "eos") & (studies["order"] == 0)]["arm"]
    refs = {"base (no fix)": "base_harmful", "LoRA, 0% rejection": "frac0-"}
    if len(ref):
        refs[f"LoRA, {ref.iloc[0].removeprefix('frac')}% rejection"] = f"{ref.iloc[0]}-"
    if (studies["arm"] == "vlguard_multi_turn").any():
        refs["LoRA, VLGuard"] = "vlguard_multi_turn-"
    return refs


def summary_markdown(summary: pd.DataFrame, skip: tuple[str, ...] = ()) -> str:
    """One markdown table per study: mean ± sd over seeds (n seeds in the header); `skip` drops metrics."""
    out = []
    for study, part in summary.groupby("study", sort=False):
        metrics = [c[: -len(" mean")] for c in part.columns if c.endswith(" mean") and c[: -len(" mean")] not in skip]
        n = int(part[f"{metrics[0]} count"].max()) if metrics else 0
        table = part[["row"]].copy()
        for m in metrics:
            pairs = zip(part[f"{m} mean"], part[f"{m} std"], strict=True)
            table[m] = [f"{a:.2f} ± {b:.2f}" if b == b else f"{a:.2f}" for a, b in pairs]
        out.append(f"### {study} (mean ± sd over {n} seeds)\n\n{table.to_markdown(index=False)}\n")
    return "\n".join(out)


def results_markdown(runs_dir: Path) -> str:
    """The README's results: the studies' summary, with the judge and decoding that produced the numbers."""
    ablations = runs_dir / "05_ablations"
    meta = json.loads((ablations / "metrics.json").read_text(encoding="utf-8"))
    head = (f"Model: `{meta['model']}`, prompt format `{meta['prompt_format']}`, decoding "
            f"`{json.dumps(meta['decoding'], sort_keys=True)}`; judges per column: "
            + ", ".join(f"{k} = `{v}`" for k, v in meta["judges"].items()) + ".\n\n")  # fmt: skip
    summary = read_csv(ablations / "summary.csv")
    # wall time varies from machine to machine; steps do not: the committed table must regenerate byte for byte
    foot = "\nTraining wall time per run: `runs/<preset>/05_ablations/runs.csv` and `summary.csv`.\n"
    return head + summary_markdown(summary, skip=("train s",)) + foot


def build_figures(runs_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Every figure and the results table from a preset's saved metrics; returns the written paths."""
    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    style()
    abl = runs_dir / "05_ablations"
    results, studies = read_csv(abl / "results.csv"), read_csv(abl / "studies.csv")
    refs = reference_runs(studies)
    logs = sorted((runs_dir / "03_finetune").glob("*/log_history.jsonl"))
    histories = {p.parent.name: read_log_history(p) for p in logs}
    figures: dict[str, Callable[[], Figure]] = {
        "data_bias": lambda: plot_data_bias(
            read_csv(runs_dir / "01_data_bias/stats.csv").set_index("dataset"),
            read_csv(runs_dir / "01_data_bias/answer_lengths.csv"),
        ),  # fmt: skip
        "asr_vs_fraction": lambda: plot_asr_vs_fraction(results, studies),
        "tradeoff": lambda: plot_tradeoff(results, studies),
        "modality_gap": lambda: plot_modality_gap(results, refs),
        "category_heatmap": lambda: plot_category_heatmap(results, refs),
        "training_curves": lambda: plot_loss_curves(histories),
        "judge_agreement": lambda: plot_judge_agreement(read_csv(runs_dir / "04_eval/agreement.csv")),
    }
    paths = []
    for name, make in figures.items():
        paths += save(make(), out_dir, name)
    (out_dir / "results.md").write_text(results_markdown(runs_dir), encoding="utf-8")
    return [*paths, out_dir / "results.md"]


def main(argv: list[str] | None = None) -> int:
    """CLI: regenerate figures/<preset>/ from runs/<preset>/."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="python -m mllm_safety.plots", description=__doc__)
    p.add_argument("--preset", default="toy")
    p.add_argument("--runs-root", default="runs")
    p.add_argument("--figures-root", default="figures", help="figures go to <figures-root>/<preset>/")
    args = p.parse_args(argv)
    try:
        paths = build_figures(Path(args.runs_root) / args.preset, Path(args.figures_root) / args.preset)
    except (FileNotFoundError, KeyError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(map(str, paths)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
