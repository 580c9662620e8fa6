"""Stage 06: every figure builds from fixture metrics, files are byte-stable, and no torch is imported."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO

from mllm_safety import figures as plots
from mllm_safety.ablations import grid, run_table, study_summary
from mllm_safety.core.config import AblationConfig
from mllm_safety.core.metrics import RESULT_COLUMNS
from mllm_safety.core.plots import plot_loss_curves, style
from mllm_safety.core.tables import read_table
from mllm_safety.figures.draw import REFERENCES, plot_category_heatmap

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
    assert labels[: len(plots.attack_labels())] == list(plots.attack_labels().values())
    assert labels[len(plots.attack_labels()) :] == [label for *_, label in REFERENCES]  # the reference lines
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


# --- what a reader sees: legends beside the data, every line visible, axes fitted, labels not ids -------------


def drawn(fig):
    """The figure drawn on an Agg canvas (display coordinates become final), and its renderer."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def data_boxes(ax, renderer) -> list:
    """Display-space boxes of the axes' data: every plotted point (lines, scatter points) and every bar."""
    from matplotlib.collections import PathCollection
    from matplotlib.transforms import Bbox

    boxes = []
    for line in ax.get_lines():
        xy = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
        boxes += [Bbox.from_bounds(x - 1, y - 1, 2, 2) for x, y in xy if np.isfinite([x, y]).all()]
    for c in ax.collections:
        if isinstance(c, PathCollection) and len(c.get_offsets()):
            xy = c.get_offset_transform().transform(c.get_offsets())
            boxes += [Bbox.from_bounds(x - 1, y - 1, 2, 2) for x, y in xy]
    boxes += [p.get_window_extent(renderer) for p in ax.patches if p.get_height() != 0 or p.get_width() != 0]
    return [b for b in boxes if b.overlaps(ax.get_window_extent(renderer))]  # what is clipped is not drawn


def legend_overlaps(fig) -> list[str]:
    """'axes k: n data points under the legend' for every legend that covers data (empty: none does)."""
    renderer = drawn(fig)
    found = []
    for k, ax in enumerate(fig.axes):
        legend = ax.get_legend()
        if legend is None:
            continue
        box = legend.get_window_extent(renderer)
        covered = [b for b in data_boxes(ax, renderer) if b.overlaps(box)]
        if covered:
            found.append(f"axes {k}: {len(covered)} data points under the legend")
    return found


def test_no_legend_covers_data(metrics_dir):
    style()
    for name, make in plots.figure_makers(metrics_dir).items():
        assert legend_overlaps(make()) == [], name


def test_the_overlap_check_sees_a_legend_over_data():
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    for k in range(4):
        ax.plot(np.linspace(0, 1, 40), np.full(40, 0.9 - 0.02 * k), label=f"line {k}")
    ax.legend(loc="upper right")
    assert legend_overlaps(fig)


def test_lines_with_equal_values_all_show(metrics_dir):
    """FigStep and MM-SafetyBench text both at 0 (and VLGuard and TYPO both at 1): each line still shows."""
    results = read_table(metrics_dir / "05_ablations/results.csv")
    results.loc[results["benchmark"].isin(["figstep", "mm_safetybench_text"]), "value"] = 0.0
    results.loc[results["benchmark"].isin(["vlguard_test_unsafes", "mm_safetybench_typo"]), "value"] = 1.0
    studies = read_table(metrics_dir / "05_ablations/studies.csv")
    runs = read_table(metrics_dir / "05_ablations/runs.csv")
    intervals = read_table(metrics_dir / "05_ablations/intervals.csv")
    fig = plots.plot_asr_vs_fraction(results, studies, runs, intervals)
    drawn(fig)
    lines = [ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")]
    xy = [ln.get_transform().transform(np.asarray(ln.get_xydata(), dtype=float)) for ln in lines]
    assert len({ln.get_marker() for ln in lines}) == len(lines)  # a marker each
    for i in range(len(xy)):
        for j in range(i + 1, len(xy)):
            assert np.abs(xy[i] - xy[j]).max() >= 2, (lines[i].get_label(), lines[j].get_label())  # pixels
    assert legend_overlaps(fig) == []


def test_the_tradeoff_axes_stop_near_the_data(metrics_dir):
    results = read_table(metrics_dir / "05_ablations/results.csv")
    results["value"] *= 0.37  # over-refusal and ASR both below 0.37
    studies = read_table(metrics_dir / "05_ablations/studies.csv")
    ax = plots.plot_tradeoff(results, studies).axes[0]
    assert ax.get_xlim()[1] < 0.45 and ax.get_ylim()[1] < 0.45
    assert ax.get_xlim()[0] <= 0 and ax.get_ylim()[0] <= 0


def test_training_curves_use_display_labels_and_an_axis_each():
    steps = list(range(1, 11))
    histories = {
        "frac_10pct": pd.DataFrame({"step": steps, "loss": [2.0 / s for s in steps]}),
        "vlguard_multi_turn": pd.DataFrame({"step": steps, "loss": [1e-3 / s for s in steps]}),
        "8_llava_med_instruct_60k_inline_mention_20_llava_v1_5_mix665k": pd.DataFrame({"step": steps, "loss": steps}),
    }
    fig = plot_loss_curves(histories)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["rejection 10 %", "VLGuard", "rejection 28.6 % (official mix)"]
    flat = fig.axes[1]
    assert flat.get_ylim()[1] < 0.01  # the curve near 0 fills its own panel
    assert not any("_" in t for t in titles)


def test_the_category_heatmap_says_what_a_cell_holds(metrics_dir):
    results = read_table(metrics_dir / "05_ablations/results.csv")
    runs = read_table(metrics_dir / "05_ablations/runs.csv")
    refs = plots.reference_runs(runs)
    ax = plot_category_heatmap(results, refs, min_n=10).axes[0]
    assert "mean over" in ax.get_xlabel() and "runs" in ax.get_xlabel()
    assert "12 items per run" in ax.get_ylabel()
    assert "n=10 items each" not in ax.get_ylabel()
    empty = plot_category_heatmap(results, refs, min_n=100).axes[0]
    assert "no scenario" in empty.texts[0].get_text()


def test_the_readme_results_table_is_made_from_the_file_it_cites(tmp_path):
    """docs/make_readme_results.py fills the README's block from runs/<preset>/04_evaluate/results.csv, names that
    file, and keeps the models in the README's order with the paper's own mixture among them."""
    import importlib.util

    from mllm_safety.core.names import official_mix_name
    from mllm_safety.core.preset import Preset

    spec = importlib.util.spec_from_file_location("make_readme_results", REPO / "docs/make_readme_results.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    official = official_mix_name(Preset.load("toy").mix)
    rows = [
        {"model": m, "benchmark": b, "category": "all", "judge": "world_truth", "metric": k, "value": v, "n": 130}
        | {"ci_low": v / 2, "ci_high": (1 + v) / 2, "mode": "", "adapter": ""}
        for m, v in (("vlguard_multi_turn", 0.03), (official, 0.26), ("base", 0.28))
        for (b, k) in gen.COLUMNS
    ]
    runs = tmp_path / "runs/toy"
    (runs / "04_evaluate").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(runs / "04_evaluate/results.csv", index=False)
    page = tmp_path / "README.md"
    page.write_text("intro\n<!-- table:results -->\nold table\n<!-- /table -->\nafter\n", encoding="utf-8")
    gen.main([str(runs), str(page)])
    text = page.read_text(encoding="utf-8")
    assert "old table" not in text and text.startswith("intro\n<!-- table:results -->\n") and text.endswith("after\n")
    assert "from `runs/toy/04_evaluate/results.csv`" in text  # named as the page names it, wherever it lies
    order = [line.split("|")[1].strip() for line in text.splitlines() if line.startswith("| ") and "[" in line]
    assert order == ["base organism", "the paper's recipe (28.6 % benign rejection)", "VLGuard refusals"]
    assert "0.26 [0.13, 0.63]" in text and "(MM-SafetyBench TYPO, 130)" in text
