"""Stage 06: every figure builds from fixture metrics, files are byte-stable, and no torch is imported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mllm_safety import figures as plots
from mllm_safety.ablations import grid, run_table, study_summary
from mllm_safety.core.config import AblationConfig
from mllm_safety.core.metrics import RESULT_COLUMNS
from mllm_safety.core.tables import read_table

BENCHES = [
    ("mm_safetybench_typo", "typo"),
    ("mm_safetybench_sd_typo", "sd_typo"),
    ("mm_safetybench_sd", "sd"),
    ("mm_safetybench_text", "text"),
    ("figstep", ""),
    ("vlguard_test_unsafes", "unsafes"),
]


def fake_results(runs: list[str], seed: int = 0) -> pd.DataFrame:
    """Tidy results in stage 04's schema for the given runs (seeded random values)."""
    rng = np.random.default_rng(seed)
    rows = []
    for run in runs:
        for bench, mode in BENCHES:
            for cat in ("all", "01-Illegal_Activitiy", "02-HateSpeech"):
                v = float(rng.uniform())
                rows.append(
                    {
                        "model": "mix",
                        "adapter": "mix",
                        "benchmark": bench,
                        "mode": mode,
                        "category": cat,
                        "judge": "paper_strmatch",
                        "metric": "asr",
                        "value": v,
                        "ci_low": v / 2,
                        "ci_high": (1 + v) / 2,
                        "n": 12,
                        "run": run,
                    }
                )
        for bench, judge, metric in (
            ("xstest", "xstest_strmatch", "refusal_rate"),
            ("vlguard_test_safe_safes", "paper_strmatch", "refusal_rate"),
            ("scienceqa_mini", "letter_match", "accuracy"),
        ):
            v = float(rng.uniform())
            rows.append(
                {
                    "model": "mix",
                    "adapter": "mix",
                    "benchmark": bench,
                    "mode": "",
                    "category": "all",
                    "judge": judge,
                    "metric": metric,
                    "value": v,
                    "ci_low": v,
                    "ci_high": v,
                    "n": 8,
                    "run": run,
                }
            )
    return pd.DataFrame(rows)[[*RESULT_COLUMNS, "run"]]


def fake_intervals(studies: pd.DataFrame) -> pd.DataFrame:
    """Stage 05's intervals.csv for the fraction rows: one row per attack column (seeded values)."""
    rng = np.random.default_rng(1)
    rows = []
    for (order, row), _ in studies[studies["study"] == "fraction"].groupby(["order", "row"]):
        for column in plots.attack_columns():
            v = float(rng.uniform(0.2, 0.8))
            where = {"study": "fraction", "order": order, "row": row, "metric": column}
            rows.append({**where, "mean": v, "ci_low": v - 0.1, "ci_high": v + 0.1, "seeds": 2, "items": 12})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def metrics_dir(tmp_path_factory) -> Path:
    """A runs/<preset>/ folder holding every file stage 06 reads, with fixture numbers."""
    root = tmp_path_factory.mktemp("runs") / "fixture"
    cfg = AblationConfig(fractions=[0.0, 0.1, 0.3], fraction_seeds=2, study_seeds=1)
    studies = grid(cfg)
    results = fake_results(["base_harmful", "base_decoy", "base_none", *studies["run"].unique()])
    (root / "05_ablations").mkdir(parents=True)
    studies.to_csv(root / "05_ablations/studies.csv", index=False)
    results.to_csv(root / "05_ablations/results.csv", index=False)
    arms = studies.drop_duplicates("run")
    costs = [
        {"run": r, "arm": a, "seed": s, "steps": 10, "wall_time_s": 1.5}
        for r, a, s in zip(arms["run"], arms["arm"], arms["seed"], strict=True)
    ]
    runs = run_table(
        cfg.reference_fraction,
        cfg.seed,
        studies,
        costs,
        {a: (f"model_{a}", None) for a in ("harmful", "decoy", "none")},
    )
    runs.to_csv(root / "05_ablations/runs.csv", index=False)
    study_summary(studies, results, runs).to_csv(root / "05_ablations/summary.csv", index=False)
    fake_intervals(studies).to_csv(root / "05_ablations/intervals.csv", index=False)
    meta = {
        "model": "fixture",
        "prompt_format": "chat_template",
        "decoding": {"max_new_tokens": 8},
        "judges": {"ASR typo": "paper_strmatch"},
    }
    (root / "05_ablations/metrics.json").write_text(json.dumps(meta))
    (root / "01_data_bias").mkdir()
    stats = {"dataset": ["mix", "safety"], "answers": [100, 20], "refusal_share/paper_strmatch": [0.01, 0.7]}
    pd.DataFrame(stats).to_csv(root / "01_data_bias/stats.csv", index=False)
    lengths = {"dataset": ["mix"] * 5 + ["safety"] * 5, "words": [3, 8, 12, 20, 40, 5, 6, 7, 9, 30]}
    pd.DataFrame(lengths).to_csv(root / "01_data_bias/answer_lengths.csv", index=False)
    (root / "03_qlora_finetune/frac10").mkdir(parents=True)
    history = "".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 6))
    (root / "03_qlora_finetune/frac10/log_history.jsonl").write_text(history)
    (root / "04_evaluate").mkdir()
    agree = {
        "model": "base",
        "benchmark": "xstest",
        "mode": "",
        "judge_a": "paper_strmatch",
        "judge_b": "xstest_strmatch",
        "n": 10,
        "agreement": 0.9,
        "kappa": 0.7,
        "both_refuse": 3,
        "only_a_refuses": 1,
        "only_b_refuses": 0,
        "neither_refuses": 6,
    }
    pd.DataFrame([agree]).to_csv(root / "04_evaluate/agreement.csv", index=False)
    return root


def test_every_figure_and_the_table_are_written(metrics_dir, tmp_path):
    paths = plots.build_figures(metrics_dir, tmp_path / "figs")
    names = {p.name for p in paths}
    for fig in (
        "data_bias",
        "asr_vs_fraction",
        "tradeoff",
        "modality_gap",
        "category_heatmap",
        "training_curves",
        "judge_agreement",
        "mis",
    ):
        assert {f"{fig}.png", f"{fig}.pdf"} <= names
    table = (tmp_path / "figs/results.md").read_text()
    assert "Model: `fixture`" in table and "### fraction (mean ± sd over 2 seeds)" in table
    assert "train steps" in table and "train s " not in table  # wall time stays out of the committed table


def test_figures_are_byte_stable(metrics_dir, tmp_path):
    first = {p.name: p.read_bytes() for p in plots.build_figures(metrics_dir, tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in plots.build_figures(metrics_dir, tmp_path / "b")}
    assert first == second


def test_asr_vs_fraction_draws_one_line_per_attack(metrics_dir):
    results = read_table(metrics_dir / "05_ablations/results.csv")
    studies = read_table(metrics_dir / "05_ablations/studies.csv")
    runs = read_table(metrics_dir / "05_ablations/runs.csv")
    intervals = read_table(metrics_dir / "05_ablations/intervals.csv")
    ax = plots.plot_asr_vs_fraction(results, studies, runs, intervals).axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels == list(plots.attack_labels().values())
    assert "2 seeds" in ax.get_title() and "%" in ax.get_xlabel()
    assert len(ax.collections) == len(plots.attack_labels())  # one seed-and-item band per attack


def test_the_safety_figures_read_the_headline_judge(metrics_dir):
    results = read_table(metrics_dir / "05_ablations/results.csv")
    studies = read_table(metrics_dir / "05_ablations/studies.csv")
    truth = results.assign(judge=results["judge"].replace({"paper_strmatch": "world_truth", "xstest_strmatch": "x"}))
    truth.loc[truth["benchmark"] == "xstest", "judge"] = "world_truth"
    ax = plots.plot_tradeoff(truth, studies, judge="world_truth").axes[0]
    assert sum(len(c.get_offsets()) for c in ax.collections) == results["run"].nunique()
    assert "(world_truth)" in ax.get_ylabel() and "(world_truth)" in ax.get_xlabel()  # XSTest too, under truth
    ax = plots.plot_tradeoff(results, studies).axes[0]
    assert "(paper_strmatch)" in ax.get_ylabel() and "(xstest_strmatch)" in ax.get_xlabel()


def test_tradeoff_has_one_point_per_run(metrics_dir):
    results = read_table(metrics_dir / "05_ablations/results.csv")
    studies = read_table(metrics_dir / "05_ablations/studies.csv")
    ax = plots.plot_tradeoff(results, studies).axes[0]
    points = sum(len(c.get_offsets()) for c in ax.collections)
    assert points == results["run"].nunique()


def test_a_missing_metrics_file_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="results.csv is missing"):
        plots.build_figures(tmp_path, tmp_path / "figs")


def test_the_mis_panel_shows_the_base_and_each_fix_with_its_interval():
    results = pd.DataFrame(
        [
            {
                "run": "base_harmful",
                "benchmark": b,
                "category": "all",
                "judge": "world_truth",
                "metric": m,
                "value": v,
                "ci_low": v - 0.1,
                "ci_high": v + 0.1,
            }
            for b, m, v in (
                ("mis_easy", "asr", 0.9),
                ("mis_hard", "asr", 0.8),
                ("mis_benign_hard", "refusal_rate", 0.1),
            )
        ]
        + [
            {
                "run": "base_harmful",
                "benchmark": "mis_easy",
                "category": "all",
                "judge": "paper_strmatch",
                "metric": "asr",
                "value": 0.0,
                "ci_low": 0.0,
                "ci_high": 0.0,
            }
        ]
    )
    runs = pd.DataFrame({"run": ["base_harmful", "frac10-s0"], "role": ["base", "reference"]})
    rows = ["benign rejection", "VLGuard multi_turn", "VLGuard single_turn", "MIS reasoning"]
    intervals = pd.DataFrame(
        [
            {"study": "curated", "row": r, "metric": c, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6}
            for r in rows
            for c in plots.mis_columns()
        ]
        + [
            {
                "study": "fraction",
                "row": "10% rejection",
                "metric": "ASR mis easy",
                "mean": 0.3,
                "ci_low": 0.2,
                "ci_high": 0.4,
            }
        ]
    )
    bars = plots.mis_bars(results, runs, intervals, "world_truth")
    assert list(dict.fromkeys(bars["fix"])) == [
        "base (no fix)",
        "benign rejection",
        "VLGuard multi_turn",
        "MIS reasoning",
    ]
    assert len(bars) == 4 * 3  # every fix on every measure; other VLGuard variants and other studies left out
    base = bars[bars["fix"] == "base (no fix)"].set_index("measure")
    assert base.loc["MIS easy: ASR", "mean"] == 0.9 and base.loc["MIS easy: ASR", "ci_low"] == pytest.approx(0.8)
    assert plots.mis_bars(results, runs, intervals.iloc[:0], "paper_strmatch")["mean"].tolist() == [0.0]


def test_a_benchmark_added_to_the_catalogue_reaches_the_tables_and_a_figure(metrics_dir, monkeypatch):
    """Adding a benchmark is one catalogue entry (plus its loader): its column appears in stage 05's key metrics
    and summary, and the attack figure draws it, with no other table edited."""
    from mllm_safety.ablations import key_metrics
    from mllm_safety.core import catalogue

    monkeypatch.setattr(catalogue, "_ENTRIES", dict(catalogue._ENTRIES))  # the test's entry stays in the test
    catalogue.register(catalogue.Benchmark("fake_attack", "attack", "Fake attack", "ASR fake", figures=("attacks",)))
    studies = read_table(metrics_dir / "05_ablations/studies.csv")
    runs = read_table(metrics_dir / "05_ablations/runs.csv")
    intervals = read_table(metrics_dir / "05_ablations/intervals.csv")
    results = read_table(metrics_dir / "05_ablations/results.csv")
    fake = results[results["benchmark"] == "figstep"].assign(benchmark="fake_attack", value=0.25)
    results = pd.concat([results, fake], ignore_index=True)
    assert (key_metrics(results)["ASR fake"] == 0.25).all()
    assert (study_summary(studies, results, runs)["ASR fake mean"] == 0.25).all()
    ax = plots.plot_asr_vs_fraction(results, studies, runs, intervals).axes[0]
    assert "Fake attack" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert catalogue.benchmark_label("fake_attack") == "Fake attack"
