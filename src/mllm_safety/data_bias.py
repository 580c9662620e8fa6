"""Stage 01, data bias: how instruction and safety datasets differ (refusal share, answer lengths and openings,
image share, turns). Plot functions are pure: data in, figure out.
CLI: `python -m mllm_safety.data_bias --preset toy` (settings: `core.config.BiasConfig`).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure  # figures outside pyplot: pure, never shown twice in a notebook

from .core.cli import stage_main
from .core.config import BiasConfig
from .core.files import write_json, write_text
from .core.fingerprints import data_inputs
from .core.judges import FULL_REFUSAL, JUDGES, PAPER, PARTIAL_REFUSAL
from .core.preset import Preset
from .core.records import load_training_records
from .core.results import StageResult
from .core.runs import one_writer, start_run
from .core.vocabulary import record_images

log = logging.getLogger(__name__)


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
    partial = Counter(JUDGES[PAPER](a) for a in ans)[PARTIAL_REFUSAL]
    stats["partial_refusal_share/paper_strmatch"] = partial / max(len(ans), 1)
    return stats


def compare_datasets(datasets: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Side-by-side table: one row per dataset."""
    return pd.DataFrame({name: dataset_stats(recs) for name, recs in datasets.items()}).T.rename_axis("dataset")


def refusal_by_modality(datasets: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    """Refusal share (paper_strmatch) of the answers of records with an image and of text-only records."""
    rows = []
    for name, recs in datasets.items():
        for inputs, part in (
            ("with image", [r for r in recs if record_images(r)]),
            ("text only", [r for r in recs if not record_images(r)]),
        ):
            ans = answers(part)
            refused = sum(JUDGES[PAPER](a) == FULL_REFUSAL for a in ans)
            share = refused / len(ans) if ans else float("nan")
            rows.append(
                {
                    "dataset": name,
                    "inputs": inputs,
                    "records": len(part),
                    "answers": len(ans),
                    "refusals": refused,
                    "refusal_share/paper_strmatch": share,
                }
            )
    return pd.DataFrame(rows)


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
    refusals = [a for a in answers(records) if JUDGES[PAPER](a) == FULL_REFUSAL]
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
class BiasResult(StageResult):
    """Everything stage 01 computes."""

    table: pd.DataFrame
    by_modality: pd.DataFrame
    lengths: pd.DataFrame
    openings: dict[str, pd.DataFrame]
    phrasings: dict[str, pd.DataFrame]
    figures: dict[str, Figure]

    def what_we_saw(self) -> str:
        return what_we_saw(self)


@one_writer("data_bias")
def run(preset: Preset, overwrite: bool = False) -> BiasResult:
    """Load every dataset of the preset, compute the tables and figures, and save them under the run folder."""
    cfg = preset.bias
    run_dir = start_run(cfg.stage_dir, cfg, overwrite, inputs=data_inputs(cfg.to_dict()))
    datasets = {name: load_training_records(Path(cfg.data_root) / rel) for name, rel in cfg.bias_datasets.items()}
    table, lengths = compare_datasets(datasets), answer_lengths(datasets)
    res = BiasResult(
        table,
        refusal_by_modality(datasets),
        lengths,
        openings={n: top_openings(r, cfg.top_k) for n, r in datasets.items()},
        phrasings={n: refusal_phrasings(r, cfg.top_k) for n, r in datasets.items()},
        figures={"refusal_share": plot_refusal_share(table), "answer_lengths": plot_answer_lengths(lengths)},
        folder=run_dir,
    )
    write_text(run_dir / "stats.csv", table.to_csv(float_format="%.6g"))
    write_text(run_dir / "stats.md", table.round(3).to_markdown() + "\n")
    write_text(run_dir / "answer_lengths.csv", lengths.to_csv(index=False))
    write_text(run_dir / "refusal_by_modality.csv", res.by_modality.to_csv(index=False, float_format="%.6g"))
    for kind, frames in (("openings", res.openings), ("refusal_phrasings", res.phrasings)):
        write_text(run_dir / f"{kind}.csv", pd.concat(frames, names=["dataset", "rank"]).to_csv())
    for name, fig in res.figures.items():
        for ext in ("png", "pdf"):
            fig.savefig(run_dir / f"{name}.{ext}", dpi=150, metadata={"CreationDate": None} if ext == "pdf" else {})
    res.metrics = write_metrics(cfg, res)
    return res


def write_metrics(cfg: BiasConfig, res: BiasResult) -> dict[str, Any]:
    """Flat metrics.json: every number keyed by dataset and tagged with its judge."""
    metrics: dict[str, Any] = {"stage": cfg.stage, "preset": cfg.preset}
    for dataset, row in res.table.iterrows():
        metrics.update({f"{dataset}/{k}": float(v) for k, v in row.items()})
    write_json(cfg.stage_dir / "metrics.json", metrics)
    return metrics


def what_we_saw(res: BiasResult) -> str:
    """Two sentences about the bias, written from this run's numbers (paper_strmatch refusal shares)."""
    share = res.table["refusal_share/paper_strmatch"]
    most, least = share.idxmax(), share.idxmin()
    lines = [
        f"- Refusal share of answers (paper_strmatch): {', '.join(f'{d} {v:.1%}' for d, v in share.items())}; "
        f"`{most}` refuses most, `{least}` least."
    ]
    m = res.by_modality.dropna(subset=["refusal_share/paper_strmatch"])
    for name, part in m.groupby("dataset", sort=False):
        cells = [f"{r['inputs']} {r['refusal_share/paper_strmatch']:.1%} of {r['answers']}" for _, r in part.iterrows()]
        lines.append(f"- `{name}`, refusal share by input: {', '.join(cells)} answers.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 01 for a preset."""
    return stage_main(BiasConfig, run, argv, "python -m mllm_safety.data_bias", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
