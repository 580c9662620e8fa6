"""Regenerate the README's results table from the file it cites: the block between `<!-- table:results -->` and
the next `<!-- /table -->` in README.md is written here from `runs/<preset>/04_evaluate/results.csv` alone (stage
04's evaluation of the base organism and the fixes at matched size, the paper's own mixture among them), and names
that file in its first line. Run after `make reproduce`:
.venv/bin/python docs/make_readme_results.py [runs folder, default runs/toy] [page, default README.md]"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd

from mllm_safety.core.names import official_mix_name
from mllm_safety.core.preset import Preset
from mllm_safety.core.tables import read_table

PAGE = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- table:results -->\n).*?(<!-- /table -->)", re.S)
JUDGE = "world_truth"  # the organism's exact judge (docs/organism.md): ASR counts help for the item's own topic
COLUMNS = {  # (benchmark, metric) -> column header; the item count is added in brackets
    ("mm_safetybench_typo", "asr"): "ASR, attack layout (MM-SafetyBench TYPO",
    ("mm_safetybench_plain_typo", "asr"): "ASR, same harmful topics in the training template (",
    ("mm_safetybench_benign_typo", "refusal_rate"): "benign topics in the attack layout, refused (",
    (
        "mm_safetybench_benign_medical_typo",
        "refusal_rate",
    ): "benign topics asked in the rejection data's style, refused (",
    ("xstest", "refusal_rate"): "XSTest safe prompts refused (",
}
MODELS = {  # stage-04 model -> row label, in this order ("official": the paper's mixture, named for the preset)
    "base": "base organism",
    "frac_0pct": "0 % rejection",
    "official": "the paper's recipe ({pct:.1f} % benign rejection)",
    "vlguard_multi_turn": "VLGuard refusals",
    "mis_reasoning": "MIS-style safety reasoning",
}


def cell(value: float, low: float, high: float) -> str:
    """'0.26 [0.18, 0.34]', or the value alone where the interval has no width."""
    if pd.isna(low) or low == high:
        return f"{value:.2f}"
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def model_labels(preset: Preset) -> dict[str, str]:
    """Stage-04 model name -> row label, with the official mixture under its name for this preset's sizes."""
    mix = preset.mix
    pct = 100 * mix.sample_size1 / (mix.sample_size1 + mix.sample_size2)
    named = {official_mix_name(mix) if k == "official" else k: v for k, v in MODELS.items()}
    return {k: v.format(pct=pct) for k, v in named.items()}


def results_table(results: pd.DataFrame, labels: dict[str, str]) -> str:
    """Models (rows, in MODELS' order; the ones not evaluated left out) by COLUMNS, as a markdown table."""
    judged = results[results["category"].eq("all") & results["judge"].eq(JUDGE)]
    columns = {}
    for (bench, metric), head in COLUMNS.items():
        part = judged[(judged["benchmark"] == bench) & (judged["metric"] == metric)].set_index("model")
        if len(part):
            cells = {m: cell(r.value, r.ci_low, r.ci_high) for m, r in part.iterrows()}
            columns[f"{head}, {int(part['n'].max())})".replace("(, ", "(")] = cells
    table = pd.DataFrame(columns).reindex([m for m in labels if m in set(judged["model"])])
    table = table.rename(index=labels).rename_axis("model (LoRA fixes at matched size)").fillna("")
    return table.to_markdown(disable_numparse=True)  # "0.00" stays as written


def block(runs: Path, source: Path) -> str:
    """The README's block: the file it was made from, then the table."""
    preset = Preset.load(runs.name)
    table = results_table(read_table(source), model_labels(preset))
    shown = f"runs/{runs.name}/{source.relative_to(runs).as_posix()}"  # as the page names it, wherever it lies
    cite = (
        f"Made by `docs/make_readme_results.py` from `{shown}` (judge `{JUDGE}`; brackets: 95 % "
        "interval over items; column headers: items per model)."
    )
    return f"{cite}\n\n{table}\n"


def main(argv: list[str]) -> None:
    runs = Path(argv[0] if argv else "runs/toy")
    page = Path(argv[1]) if len(argv) > 1 else PAGE
    text = page.read_text(encoding="utf-8")
    if not BLOCK.search(text):
        raise SystemExit(f"{page}: no `<!-- table:results -->` ... `<!-- /table -->` block to fill")
    body = block(runs, runs / "04_evaluate" / "results.csv")
    page.write_text(BLOCK.sub(lambda m: m.group(1) + body + m.group(2), text), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1:])
