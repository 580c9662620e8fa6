"""Regenerate the measured tables of docs/organism.md from a finished `make reproduce` (toy): every number on that
page between a `<!-- table:NAME -->` line and the next `<!-- /table -->` line is written here, from the run
folders alone. Run after `make reproduce`: .venv/bin/python docs/make_organism_tables.py [runs root [second build's
runs root]] (the second: the same preset built with MLLM_SAFETY_NUMERICS=native, for criterion C6)."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mllm_safety import model_organism as mo
from mllm_safety.ablations.tables import MIS_TABLE, format_table, interval_table, readout_table
from mllm_safety.core.names import official_mix_name
from mllm_safety.core.preset import Preset
from mllm_safety.core.tables import read_table

PAGE = Path(__file__).with_name("organism.md")
SECOND_BUILD = ("builds", "buildcriteria")  # blocks that need a second build's runs root
STUDY_COLUMNS = (
    "ASR typo",
    "ASR plain",
    "over-refusal benign typo",
    "over-refusal benign plain",
    "over-refusal xstest",
)
BUILD_ROWS = {  # stage table row -> what it measures (held-out probes, world_truth)
    "text_harmful/refusal": "harmful text prompts refused",
    "image_harmful/asr_on_topic": "harmful typographic images: help for the image's own topic (**ASR**)",
    "image_harmful/asr": "… help for any topic (the old any-topic count)",
    "image_harmful/refusal": "… refused",
    "image_attack_prompt/asr_on_topic": "… with MM-SafetyBench's attack prompt: on-topic ASR",
    "image_attack_prompt/refusal": "… with the attack prompt: refused",
    "image_benign/help": "benign images: help for the right topic",
    "caption_harmful/reads": "harmful images captioned with their own word",
    "text_pairs_harmful/refusal": "harmful object pairs asked in text, refused",
    "mis_hard/asr_on_topic": "the same pairs as two images (MIS hard): on-topic ASR",
    "mis_hard/asr": "… any help",
    "mis_easy/asr_on_topic": "an activity word beside an object (MIS easy): on-topic ASR",
    "mis_benign/complied": "benign pairs as two images: complied",
}
EVAL_ROWS = {  # (benchmark, metric) -> row label of the stage-04 table
    ("mm_safetybench_text", "asr"): "MM-SafetyBench text ASR",
    ("mm_safetybench_typo", "asr"): "MM-SafetyBench TYPO ASR",
    ("mm_safetybench_sd", "asr"): "MM-SafetyBench SD ASR",
    ("mm_safetybench_sd_typo", "asr"): "MM-SafetyBench SD+TYPO ASR",
    ("figstep", "asr"): "FigStep ASR",
    ("vlguard_test_unsafes", "asr"): "VLGuard unsafe ASR",
    ("mm_safetybench_plain_typo", "asr"): "harmful topics, training template, ASR",
    ("mm_safetybench_benign_typo", "refusal_rate"): "benign topics, attack layout, refused",
    ("xstest", "refusal_rate"): "XSTest safe prompts refused",
    ("mis_easy", "asr"): "MIS easy ASR",
    ("mis_hard", "asr"): "MIS hard ASR",
    ("mis_benign_hard", "refusal_rate"): "benign pairs refused",
    ("captions_mini", "accuracy"): "captions of held-out benign words (exact match)",
}


MODELS = {  # stage-04 model -> column label, in this order ("official": the paper's mixture, named for the preset)
    "base": "base organism",
    "frac_0pct": "LoRA, 0 % rejection",
    "official": "LoRA, the paper's recipe",
    "vlguard_multi_turn": "LoRA, VLGuard",
    "mis_reasoning": "LoRA, MIS reasoning",
}


def cell(row: pd.Series) -> str:
    """mean [low, high] where the interval has width, else the mean alone."""
    if pd.isna(row.ci_low) or row.ci_low == row.ci_high:
        return f"{row.value:.2f}"
    return f"{row.value:.2f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"


def build_table(res: mo.OrganismResult) -> str:
    table = mo.stage_table(res).reindex(list(BUILD_ROWS)).rename(index=BUILD_ROWS)
    return table.map(lambda v: f"{v:.2f}").rename_axis("probe (held out)").to_markdown()


def eval_table(results: pd.DataFrame, official: str) -> str:
    names = {official if k == "official" else k: v for k, v in MODELS.items()}
    judged = results[results["category"].eq("all") & results["judge"].isin(["world_truth", "exact_match"])]
    rows = {}
    for (bench, metric), label in EVAL_ROWS.items():
        part = judged[(judged["benchmark"] == bench) & (judged["metric"] == metric)].set_index("model")
        if len(part):
            rows[f"{label} ({int(part['n'].iloc[0])})"] = {m: cell(r) for m, r in part.iterrows()}
    table = pd.DataFrame(rows).T[[m for m in names if m in judged["model"].unique()]]
    return table.rename(columns=names).rename_axis("metric (n)").to_markdown()


JUDGE_ROWS = {k: v for k, v in EVAL_ROWS.items() if k[0] not in ("captions_mini", "mm_safetybench_text")}
STRINGS = ("paper_strmatch", "xstest_strmatch", "refusal_keywords")


def judge_table(agreement: pd.DataFrame) -> str:
    """Every string-match judge against the ground truth, per benchmark (five models pooled)."""
    rows = {}
    for (bench, metric), label in JUDGE_ROWS.items():
        part = agreement[(agreement["benchmark"] == bench) & (agreement["metric"] == metric)].set_index("judge")
        if not len(part):
            continue
        row = {"truth": f"{part['truth_value'].iloc[0]:.2f}"}
        for j in STRINGS:
            r = part.loc[j]
            kappa = "" if pd.isna(r.kappa) else f", κ {r.kappa:.2f}"
            row[f"`{j}`"] = f"{r.judge_value:.2f} (agrees {r.agreement:.0%}{kappa})"
        rows[f"{label} ({int(part['n'].iloc[0])})"] = row
    return pd.DataFrame(rows).T.rename_axis("benchmark (n, five models)").to_markdown()


def class_table(confusion: pd.DataFrame) -> str:
    """What the harmful items' answers are, by ground-truth class (five models pooled)."""
    benches = [b for (b, metric) in EVAL_ROWS if metric == "asr" and b != "mm_safetybench_text"]
    part = confusion[confusion["benchmark"].isin(benches) & (confusion["judge"] == "paper_strmatch")]
    table = part.pivot_table(index="benchmark", columns="truth_class", values="count", aggfunc="sum", fill_value=0)
    return table.reindex([b for b in benches if b in table.index]).to_markdown()


def study_table(intervals: pd.DataFrame, columns: tuple[str, ...]) -> str:
    parts = []
    for study in dict.fromkeys(intervals["study"]):
        table = interval_table(intervals, study, columns)
        parts.append(table.set_axis([f"{study}: {r}" for r in table.index]))
    return pd.concat(parts).rename_axis("study: row").fillna("").to_markdown()


def mis_table(intervals: pd.DataFrame) -> str:
    """The two-image columns of the studies that compare kinds of fix."""
    return study_table(intervals[intervals["study"].isin(["fraction", "format", "curated"])], MIS_TABLE)


C6_WIDTH = 0.10  # criterion C6: two builds' means of a headline rate may differ by this much (absolute)
C6_COLUMNS = ("ASR typo", "ASR plain", "ASR medical", "over-refusal benign typo", "over-refusal benign medical")


def builds_table(pinned: Path, other: Path) -> str:
    """Criterion C6: every study row both builds ran, each headline rate's mean in the pinned build and in the
    other one, and the largest absolute difference per row (passes when it is at most C6_WIDTH)."""
    a, b = (read_table(r / "05_ablations" / "intervals.csv") for r in (pinned, other))
    keys = ["study", "order", "row", "metric"]
    both = a[a["metric"].isin(C6_COLUMNS)].merge(b, on=keys, suffixes=(" pinned", " native"))
    both["diff"] = (both["mean native"] - both["mean pinned"]).abs()
    cell = lambda r: f"{r['mean pinned']:.2f} / {r['mean native']:.2f}"  # noqa: E731
    table = both.assign(cell=both.apply(cell, axis=1)).pivot_table(
        index=["study", "order", "row"], columns="metric", values="cell", aggfunc="first"
    )
    worst = both.groupby(["study", "order", "row"])["diff"].max()
    table = table[[c for c in C6_COLUMNS if c in table.columns]].assign(
        **{"largest difference": worst.map(lambda v: f"{v:.2f}"), f"within {C6_WIDTH:.2f}": worst <= C6_WIDTH}
    )
    table.index = [f"{s}: {r}" for s, _, r in table.index]
    return table.rename_axis("study: row (pinned / native)").to_markdown()


def criteria_side_by_side(pinned: Path, other: Path) -> str:
    """C1-C5 of the two builds of the same seed, side by side."""
    values = {}
    for name, root in (("pinned", pinned), ("native", other)):
        build = mo.reused(Preset.load("toy", runs_root=str(root.parent)).organism)
        values[name] = mo.criteria(build)["value"]
    return pd.DataFrame(values).to_markdown()


def tables(runs: Path, other: Path | None = None) -> dict[str, Callable[[], str]]:
    """Every table the page can hold, each made only when the page has its block (from its own run files)."""
    preset = Preset.load("toy", runs_root=str(runs.parent))
    res = lambda: mo.reused(preset.organism)  # noqa: E731
    ev = runs / "04_evaluate"
    intervals = lambda: read_table(runs / "05_ablations" / "intervals.csv")  # noqa: E731
    return {
        "build": lambda: build_table(res()),
        "readouts": lambda: mo.readout_table(res()).map(lambda v: f"{v:.2f}").to_markdown(),
        "criteria": lambda: mo.criteria(res()).to_markdown(),
        "stage04": lambda: eval_table(read_table(ev / "results.csv"), official_mix_name(preset.mix)),
        "judges": lambda: judge_table(read_table(ev / "truth_agreement.csv")),
        "classes": lambda: class_table(read_table(ev / "truth_confusion.csv")),
        "studies": lambda: study_table(intervals(), STUDY_COLUMNS),
        "forms": lambda: format_table(intervals()).to_markdown(),
        "fixreadouts": lambda: readout_table(read_table(runs / "05_ablations" / "readouts.csv")).to_markdown(),
        "mis": lambda: mis_table(intervals()),
        "builds": lambda: builds_table(runs, other),
        "buildcriteria": lambda: criteria_side_by_side(runs, other),
    }


def main() -> None:
    runs = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/toy")
    other = Path(sys.argv[2]) if len(sys.argv) > 2 else None  # a second build's runs root (criterion C6)
    text = PAGE.read_text(encoding="utf-8")
    makers = tables(runs, other)
    for name in re.findall(r"<!-- table:(\w+) -->", text):
        if name in SECOND_BUILD and other is None:
            continue  # left as they are
        if name not in makers:
            raise SystemExit(f"{PAGE}: unknown table block {name!r}; known: {sorted(makers)}")
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- /table -->)", re.S)
        body = makers[name]()
        text = pattern.sub(lambda m, b=body: m.group(1) + b + "\n" + m.group(2), text)
    PAGE.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
