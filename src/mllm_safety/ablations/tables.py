"""Stage 05's tables: the key metrics every study row reports, the summary over seeds, the seed-and-item
intervals, the small tables notebook 05 shows, its "what we saw" and metrics.json. They read run folders only."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import evaluate
from ..core import catalogue
from ..core.config import AblationConfig
from ..core.files import read_jsonl, write_json
from ..core.judges import PAPER
from ..core.layout import stage_dir
from ..core.metrics import metric_judge, outcomes, seed_item_interval
from ..core.preset import Preset
from ..core.results import StageResult
from ..core.tables import read_table
from ..evaluate import readouts


@dataclass
class AblationResult(StageResult):
    """The studies' tables: every run's tidy results, the runs (bases included), the grid, the summary over
    seeds, the seed-and-item intervals of every row, and the judge the headline numbers are read with."""

    results: pd.DataFrame
    runs: pd.DataFrame
    grid: pd.DataFrame
    summary: pd.DataFrame
    intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    headline: str = PAPER
    readouts: pd.DataFrame = field(default_factory=pd.DataFrame)  # beneath the answers, per row (readout_table)

    def what_we_saw(self) -> str:
        return what_we_saw(self)


def key_columns(headline: str) -> list[tuple[str, str, str | None, str]]:
    """(column, benchmark, judge, metric) of every key metric; judge None = the benchmark's utility scorer."""
    cols = []
    beside = catalogue.paper_beside()
    for name, bench, metric in catalogue.key_metrics():
        judge = None if metric == "accuracy" else metric_judge(bench, headline)
        cols.append((name, bench, judge, metric))
        if name in beside and headline != PAPER:
            cols.append((f"{name} ({PAPER})", bench, PAPER, metric))
    return cols


def key_metrics(results: pd.DataFrame, headline: str = PAPER) -> pd.DataFrame:
    """One row per run, one column per key metric (overall category); missing benchmarks are left out."""
    overall = results[results["category"] == "all"]
    cols = {}
    for name, bench, judge, metric in key_columns(headline):
        part = overall[(overall["benchmark"] == bench) & (overall["metric"] == metric)]
        part = part if judge is None else part[part["judge"] == judge]
        if not part.empty:
            cols[name] = part.set_index("run")["value"]
    return pd.DataFrame(cols)


def study_summary(
    table: pd.DataFrame, results: pd.DataFrame, runs: pd.DataFrame, headline: str = PAPER
) -> pd.DataFrame:
    """Per study and row: mean and standard deviation over seeds of every key metric and of training time."""
    cost = (
        runs[runs["kind"] == "fix"]
        .set_index("run")[["steps", "wall_time_s"]]
        .rename(columns={"steps": "train steps", "wall_time_s": "train s"})
    )
    wide = key_metrics(results, headline).join(cost)
    merged = table[["study", "order", "row", "arm", "run"]].join(wide, on="run")
    metrics = [c for c in wide.columns]
    agg = merged.groupby(["study", "order", "row", "arm"], sort=False)[metrics].agg(["mean", "std", "count"])
    agg.columns = [f"{m} {s}" for m, s in agg.columns]
    return agg.reset_index()


def run_outcomes(cfg: AblationConfig, run: str) -> pd.DataFrame:
    """One run's item-level outcomes (benchmark, judge, metric, hit), read from its stage-04 judgements."""
    path = stage_dir(cfg.stage_dir / "runs", run, "evaluate") / "mix" / "judgements.jsonl"
    rows = read_jsonl(path, "judgements file", "rerun stage 05 (the run's evaluation is redone)")
    df = pd.DataFrame(rows).rename(columns={"benchmark": "loader", "benchmark_key": "benchmark"})
    return outcomes(df)[["benchmark", "judge", "metric", "hit"]]


def study_intervals(cfg: AblationConfig, table: pd.DataFrame, headline: str, samples: int) -> pd.DataFrame:
    """Per study row and key metric: the mean over seeds and its 95 % interval over seeds AND items (two-level
    bootstrap), so that rows can be compared with both sources of noise counted."""
    items = {run: run_outcomes(cfg, run) for run in table["run"].unique()}
    rows = []
    for (study, order, row), part in table.groupby(["study", "order", "row"], sort=False):
        for name, bench, judge, metric in key_columns(headline):
            hits = []
            for run in part["run"]:
                d = items[run]
                keep = (d["benchmark"] == bench) & (d["metric"] == metric)
                keep &= d["judge"] == judge if judge else True
                if keep.any():
                    hits.append(d.loc[keep, "hit"].to_numpy(dtype=float))
            if hits:
                low, high = seed_item_interval(hits, samples, cfg.seed)
                mean = float(np.mean([h.mean() for h in hits]))
                where = {"study": study, "order": order, "row": row, "metric": name}
                rows.append(
                    {**where, "mean": mean, "ci_low": low, "ci_high": high, "seeds": len(hits), "items": len(hits[0])}
                )
    return pd.DataFrame(rows)


def run_readouts(cfg: AblationConfig, run: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One run's readouts (stage 04 with `readouts` set): per-item margins and the per-benchmark summary; empty
    tables when its evaluation read none."""
    folder = stage_dir(cfg.stage_dir / "runs", run, "evaluate") / "mix"
    if not (folder / readouts.PER_ITEM).is_file():
        return pd.DataFrame(), pd.DataFrame()
    return read_table(folder / readouts.PER_ITEM), read_table(folder / readouts.SUMMARY)


def study_readouts(cfg: AblationConfig, table: pd.DataFrame, samples: int) -> pd.DataFrame:
    """Per study row and readout benchmark: the mean refusal margin over seeds with its 95 % interval over seeds
    and items; per row the harm probe's AUROC, mean over seeds with the lowest and highest seed (n seeds is
    small: a range, not an interval). Empty when the runs read none."""
    read = {run: run_readouts(cfg, run) for run in table["run"].unique()}
    rows = []
    for (study, order, row), part in table.groupby(["study", "order", "row"], sort=False):
        found = [read[run] for run in part["run"] if not read[run][0].empty]
        if not found:
            continue
        where = {"study": study, "order": order, "row": row, "seeds": len(found)}
        for bench in dict.fromkeys(found[0][0]["benchmark"]):
            margins = [items.loc[items["benchmark"] == bench, "margin"].to_numpy() for items, _ in found]
            low, high = seed_item_interval(margins, samples, cfg.seed)
            mean = float(np.mean([m.mean() for m in margins]))
            rows.append({**where, "readout": f"margin {bench}", "mean": mean, "ci_low": low, "ci_high": high})
        aurocs = [float(s.loc[s["readout"] == "harm_probe_auroc", "value"].iloc[0]) for _, s in found]
        rows.append(
            {
                **where,
                "readout": "harm probe AUROC",
                "mean": float(np.mean(aurocs)),
                "ci_low": min(aurocs),
                "ci_high": max(aurocs),
            }
        )
    return pd.DataFrame(rows)


def readout_table(readouts_: pd.DataFrame, study: str = "format") -> pd.DataFrame:
    """One study's readouts as `mean [low, high]` per row (margins in nats: 95 % over seeds and items; the probe:
    the range over seeds)."""
    part = readouts_[readouts_["study"] == study] if not readouts_.empty else readouts_
    if part.empty:
        return pd.DataFrame()
    cells = part.assign(
        cell=[f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in part[["mean", "ci_low", "ci_high"]].values]
    )
    table = cells.pivot_table(index=["order", "row"], columns="readout", values="cell", aggfunc="first")
    table = table.droplevel("order")[list(dict.fromkeys(part["readout"]))]
    return table.rename(columns=readout_label)


def readout_label(readout: str) -> str:
    """'margin mm_safetybench_typo' -> 'margin: MM-SafetyBench TYPO' (the catalogue's label)."""
    head, _, bench = readout.partition(" ")
    return f"margin: {catalogue.benchmark_label(bench)}" if head == "margin" else readout


def controls_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The mechanism controls' rows: mean ASR columns per base alignment, with and without the fix."""
    part = summary[summary["study"] == "controls"]
    cols = [c for c in part.columns if c.startswith("ASR") and c.endswith(" mean")]
    return part.set_index("row")[cols].rename(columns=lambda c: c.removesuffix(" mean")).round(2)


def interval_table(intervals: pd.DataFrame, study: str, metrics: tuple[str, ...] = ("ASR typo",)) -> pd.DataFrame:
    """One study's rows with each metric as `mean [low, high]` (95 % over seeds and items)."""
    part = intervals[(intervals["study"] == study) & intervals["metric"].isin(metrics)]
    cells = part.assign(
        cell=[f"{m:.2f} [{lo:.2f}, {hi:.2f}]" for m, lo, hi in part[["mean", "ci_low", "ci_high"]].values]
    )
    table = cells.pivot_table(index=["order", "row"], columns="metric", values="cell", aggfunc="first")
    return table.droplevel("order")[[m for m in metrics if m in table.columns]]


EVAL_FORMS = {  # the format study's evaluation forms: harmful images' on-topic ASR, benign images refused
    "attack layout": ("ASR typo", "over-refusal benign typo"),
    "training template": ("ASR plain", "over-refusal benign plain"),
    "medical-style question": ("ASR medical", "over-refusal benign medical"),
}
FORMAT_COLUMNS = tuple(c for pair in EVAL_FORMS.values() for c in pair)
MIS_TABLE = (  # the curated study on two-image prompts: the headline judge, then the paper's string match
    "ASR mis easy",
    "ASR mis hard",
    "over-refusal mis benign",
    "ASR mis easy (paper_strmatch)",
    "ASR mis hard (paper_strmatch)",
)


def format_table(intervals: pd.DataFrame) -> pd.DataFrame:
    """The format study as question form x evaluation form: per row (the rejection samples' question form) and
    evaluation form, on-topic ASR of the harmful images and the share of benign images refused, each
    `mean [low, high]` (95 % over seeds and items)."""
    table = interval_table(intervals, "format", FORMAT_COLUMNS)
    names = {
        c: f"{form}: {'ASR' if c == pair[0] else 'benign refused'}" for form, pair in EVAL_FORMS.items() for c in pair
    }
    return table.rename(columns=names)


def separated(intervals: pd.DataFrame, rows: list[str], metric: str = "ASR typo") -> str:
    """Whether the 95 % intervals of the named fraction rows overlap, in words."""
    part = intervals[(intervals["study"] == "fraction") & (intervals["metric"] == metric)].set_index("row")
    found = [r for r in rows if r in part.index]
    if len(found) < 2:
        return ""
    spans = [(r, part.loc[r, "ci_low"], part.loc[r, "ci_high"]) for r in found]
    cells = ", ".join(f"{r} [{lo:.2f}, {hi:.2f}]" for r, lo, hi in spans)
    apart = all(a[1] > b[2] or b[1] > a[2] for k, a in enumerate(spans) for b in spans[k + 1 :])
    return f"- {metric}, 95 % over seeds and items: {cells}: the intervals {'separate' if apart else 'overlap'}."


def cost_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Training cost per arm (mean over seeds): wall time, steps, peak memory."""
    fixes = runs[runs["kind"] == "fix"]
    return fixes.groupby("arm")[["wall_time_s", "steps", "peak_memory_mb"]].mean().round(1)


def what_we_saw(res: AblationResult, metric: str = "ASR typo") -> str:
    """Stage 05's "what we saw": one line per study on one metric, with the seed-and-item intervals."""
    return study_lines(res.summary, metric, res.intervals)


def study_lines(summary: pd.DataFrame, metric: str = "ASR typo", intervals: pd.DataFrame | None = None) -> str:
    """One line per study: its reference row against the other rows on one metric (mean over seeds); with the
    intervals, whether the 0 %, 10 % and 30 % rows of the fraction study separate."""
    col = f"{metric} mean"
    if col not in summary.columns:
        return f"- `{metric}` was not measured in this preset."
    lines = []
    for study, part in summary.groupby("study", sort=False):
        cells = ", ".join(f"{row} {value:.2f}" for row, value in zip(part["row"], part[col], strict=True))
        lines.append(f"- **{study}** ({metric}, mean over seeds): {cells}.")
    if intervals is not None and not intervals.empty:
        lines.append(separated(intervals, ["0% rejection", "10% rejection", "30% rejection"], metric))
        lines.append(format_line(intervals))
        lines.append(mis_line(intervals))
    return "\n".join(line for line in lines if line)


def format_line(intervals: pd.DataFrame) -> str:
    """The format study in one line: per question form, each evaluation form's ASR and benign refusals (means over
    seeds); "" when the study did not run."""
    part = intervals[intervals["study"] == "format"].set_index(["row", "metric"])["mean"]
    if part.empty:
        return ""
    cells = []
    for row in dict.fromkeys(part.index.get_level_values("row")):
        forms = [
            f"{form} {part[(row, asr)]:.2f} / {part[(row, refused)]:.2f}"
            for form, (asr, refused) in EVAL_FORMS.items()
            if (row, asr) in part.index and (row, refused) in part.index
        ]
        cells.append(f"{row}: {', '.join(forms)}")
    return f"- **Question form × evaluation form** (ASR / benign refused, mean over seeds): {'; '.join(cells)}."


def mis_line(intervals: pd.DataFrame) -> str:
    """The curated study on two-image prompts in one line: each fix's MIS easy and hard ASR with its interval
    ("" when MIS was not in the studies)."""
    part = intervals[(intervals["study"] == "curated") & intervals["metric"].isin(["ASR mis easy", "ASR mis hard"])]
    if part.empty:
        return ""
    cells = [
        f"{row} {' / '.join(f'{r.mean:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}]' for r in g.itertuples())}"
        for row, g in part.sort_values(["order", "metric"]).groupby("row", sort=False)
    ]
    return f"- **Two images** (MIS easy / hard ASR, 95 % over seeds and items): {'; '.join(cells)}."


def write_metrics(preset: Preset, res: AblationResult) -> dict[str, Any]:
    """Flat metrics.json: every study row's mean key metrics, with the judge and decoding that produced them."""
    cfg, ev = preset.studies, preset.eval
    flat: dict[str, Any] = {
        "stage": cfg.stage,
        "preset": cfg.preset,
        "model": cfg.model_path,
        "prompt_format": ev.generation_format,
        "decoding": evaluate.decoding(ev).to_dict(),
        "headline_judge": res.headline,
        "judges": {name: judge or "the benchmark's scorer" for name, _, judge, _ in key_columns(res.headline)},
        "runs": int(res.grid["run"].nunique()),
    }
    for row in res.summary.itertuples(index=False):
        d = row._asdict()
        flat.update({f"{d['study']}/{d['row']}/{k[:-5]}": v for k, v in d.items() if k.endswith(" mean")})
    write_json(
        cfg.stage_dir / "metrics.json", {k: (None if isinstance(v, float) and v != v else v) for k, v in flat.items()}
    )
    return flat
