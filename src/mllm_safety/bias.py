"""Stage 01: the distribution bias of instruction and safety datasets (refusal share, answer lengths and
openings, image share, turns). Plot functions are pure: data in, figure out. CLI: `python -m mllm_safety.bias`.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure  # figures outside pyplot: pure, never shown twice in a notebook

from .config import prepare_run_dir, stage_main
from .data import load_training_records, record_images
from .files import write_json, write_text
from .judges import FULL_REFUSAL, JUDGES, PARTIAL_REFUSAL

log = logging.getLogger(__name__)
STAGE = "01_data_bias"


@dataclass(frozen=True)
class BiasConfig:
    """Stage 01's settings; field names equal the notebook's parameters and the preset's keys."""

    preset: str = "toy"
    runs_root: str = "runs"
    data_root: str = "data/toy"
    bias_datasets: dict[str, str] = field(default_factory=dict)  # name -> file under data_root
    top_k: int = 10  # how many openings / refusal phrasings to list

    @property
    def run_dir(self) -> Path:
        return Path(self.runs_root) / self.preset / STAGE

    @property
    def stage_dir(self) -> Path:  # the name the other stages use
        return self.run_dir


def answers(records: list[dict[str, Any]]) -> list[str]:
    """Every gpt answer of every record."""
    return [t["value"] for r in records for t in r["conversations"] if t["from"] == "gpt"]


def dataset_stats(records: list[dict[str, Any]]) -> dict[str, float]:
    """Counts and shares of one dataset; refusal shares are tagged with the judge that produced them."""
    ans = answers(records)
    words = pd.Series([len(a.split()) for a in ans], dtype=float)
    stats: dict[str, float] = {
        "records": len(records),
        "answers": len(ans),
        "image_share": sum(bool(record_images(r)) for r in records) / max(len(records), 1),
        "turns_per_record": len(ans) / max(len(records), 1),
        "answer_words_mean": words.mean(),
        "answer_words_median": words.median(),
        "answer_words_p90": words.quantile(0.9),
    }
    for name, judge in JUDGES.items():
        labels = Counter(judge(a) for a in ans)
        stats[f"refusal_share/{name}"] = labels[FULL_REFUSAL] / max(len(ans), 1)
    partial = Counter(JUDGES["paper_strmatch"](a) for a in ans)[PARTIAL_REFUSAL]
    stats["partial_refusal_share/paper_strmatch"] = partial / max(len(ans), 1)
    return stats


def compare_datasets(datasets: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Side-by-side table: one row per dataset."""
    return pd.DataFrame({name: dataset_stats(recs) for name, recs in datasets.items()}).T.rename_axis("dataset")


def answer_lengths(datasets: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Long table (dataset, words) of every answer's length in words."""
    rows = [(name, len(a.split())) for name, recs in datasets.items() for a in answers(recs)]
    return pd.DataFrame(rows, columns=["dataset", "words"])


def top_openings(records: list[dict[str, Any]], k: int = 10, n_words: int = 3) -> pd.DataFrame:
    """The k most frequent answer openings (first n_words, lower-cased) with their share."""
    ans = answers(records)
    counts = Counter(" ".join(a.lower().split()[:n_words]) for a in ans)
    return pd.DataFrame([(o, c, c / len(ans)) for o, c in counts.most_common(k)], columns=["opening", "count", "share"])


def refusal_phrasings(records: list[dict[str, Any]], k: int = 10) -> pd.DataFrame:
    """The k most frequent first sentences among answers that paper_strmatch calls a full refusal."""
    refusals = [a for a in answers(records) if JUDGES["paper_strmatch"](a) == FULL_REFUSAL]
    counts = Counter(a.strip().split(". ")[0].rstrip(".") for a in refusals)
    return pd.DataFrame(counts.most_common(k), columns=["phrasing", "count"])


def plot_refusal_share(table: pd.DataFrame) -> Figure:
    """Bar chart of the refusal share per dataset and judge."""
    cols = [c for c in table.columns if c.startswith("refusal_share/")]
    long = table[cols].reset_index().melt(id_vars="dataset", var_name="judge", value_name="share")
    long["judge"] = long["judge"].str.removeprefix("refusal_share/")
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.barplot(long, x="dataset", y="share", hue="judge", palette="colorblind", ax=ax)
    n = ", ".join(f"{d}: {int(v)}" for d, v in table["answers"].items())
    ax.set(ylabel="refusal share of answers", xlabel=f"dataset (answers: {n})", ylim=(0, 1))
    fig.tight_layout()
    return fig


def plot_answer_lengths(lengths: pd.DataFrame) -> Figure:
    """Empirical CDF of answer length (words) per dataset."""
    fig = Figure(figsize=(6, 3.2))
    ax = fig.subplots()
    sns.ecdfplot(lengths, x="words", hue="dataset", palette="colorblind", ax=ax, log_scale=(True, False))
    ax.set(xlabel="answer length (words, log scale)", ylabel="share of answers ≤ length")
    fig.tight_layout()
    return fig


@dataclass
class BiasResult:
    """Everything stage 01 computes."""

    table: pd.DataFrame
    lengths: pd.DataFrame
    openings: dict[str, pd.DataFrame]
    phrasings: dict[str, pd.DataFrame]
    figures: dict[str, Figure]


def run(cfg: BiasConfig) -> BiasResult:
    """Load every dataset of the preset, compute the tables and figures, and save them under the run folder."""
    run_dir = prepare_run_dir(cfg.run_dir, cfg)
    datasets = {name: load_training_records(Path(cfg.data_root) / rel) for name, rel in cfg.bias_datasets.items()}
    table, lengths = compare_datasets(datasets), answer_lengths(datasets)
    res = BiasResult(
        table,
        lengths,
        openings={n: top_openings(r, cfg.top_k) for n, r in datasets.items()},
        phrasings={n: refusal_phrasings(r, cfg.top_k) for n, r in datasets.items()},
        figures={"refusal_share": plot_refusal_share(table), "answer_lengths": plot_answer_lengths(lengths)},
    )
    write_text(run_dir / "stats.csv", table.to_csv(float_format="%.6g"))
    write_text(run_dir / "stats.md", table.round(3).to_markdown() + "\n")
    write_text(run_dir / "answer_lengths.csv", lengths.to_csv(index=False))
    for kind, frames in (("openings", res.openings), ("refusal_phrasings", res.phrasings)):
        write_text(run_dir / f"{kind}.csv", pd.concat(frames, names=["dataset", "rank"]).to_csv())
    for name, fig in res.figures.items():
        for ext in ("png", "pdf"):
            fig.savefig(run_dir / f"{name}.{ext}", dpi=150, metadata={"CreationDate": None} if ext == "pdf" else {})
    return res


def write_metrics(cfg: BiasConfig, res: BiasResult) -> dict[str, Any]:
    """Flat metrics.json: every number keyed by dataset and tagged with its judge."""
    metrics: dict[str, Any] = {"stage": STAGE, "preset": cfg.preset}
    for dataset, row in res.table.iterrows():
        metrics.update({f"{dataset}/{k}": float(v) for k, v in row.items()})
    write_json(cfg.run_dir / "metrics.json", metrics)
    return metrics


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 01 for a preset."""
    return stage_main(BiasConfig, run, write_metrics, argv, "python -m mllm_safety.bias", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
