"""Stage 05: the paper's studies (REFERENCE.md §1.4) as tables of runs that change one factor at a time.

An *arm* is one way to build the fix mixture and train on it (rejection fraction, EOS masking, reply style,
image content and source of the rejection samples, or a curated VLGuard variant instead, and which text
alignment the base organism had). A *study* is a list of rows, the first being the reference arm. Each arm runs
on several seeds; each run is a stage-02 mixture, a stage-03 adapter and a stage-04 evaluation of its own under
runs/<preset>/05_ablations/runs/<arm>-s<seed>/, reused when it exists with the same config, so an interrupted
study resumes. The base models are evaluated once. Tables: results.csv (tidy, every run), runs.csv (every run,
bases included: what it is, its role in the figures, its training cost), studies.csv (which run fills which
row), summary.csv/.md (mean and spread over seeds).
CLI: `python -m mllm_safety.ablations --preset toy` (settings: `core.config.AblationConfig`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from . import evaluate, model_organism
from .core.cli import stage_main
from .core.config import AblationConfig, EvalConfig, MixConfig, OrganismConfig, TrainConfig, load_preset, stage_dir
from .core.console import inner_bars_off
from .core.files import DataFormatError, write_json, write_text
from .core.metrics import metric_judge, outcomes, seed_item_interval
from .core.mixing import Part, curated_baseline, mix_by_fraction, mix_parts, restyle_questions, restyle_replies
from .core.runs import is_finished, start_run
from .core.tables import read_table, summary_markdown
from .core.vlguard import VLGUARD_VARIANTS, vlguard_variant
from .core.vocabulary import REPLY_STYLES, record_images, strip_image_tags
from .mix_rejection_data import load_mis_reasoning, load_sources
from .qlora_finetune import train_mixture

log = logging.getLogger(__name__)
MIS_REASONING = "mis_reasoning"  # the curated study's MIS row (Ding et al.'s reasoning data)
STUDIES = ("fraction", "eos", "reply", "images", "source", "curated", "format", "controls")
IMAGE_CONTENT = ("real", "blank", "noise", "none")
SOURCES = ("domain", "in_distribution")
ALIGNMENTS = ("harmful", "decoy", "none")


@dataclass(frozen=True)
class Arm:
    """How one fix is built: the mixture's recipe, the training switch, and the base organism's text alignment."""

    fraction: float  # share of rejection records in the mixture
    eos_mask: bool = True  # mask the end of turn after rejection answers
    reply: str = "plain"  # plain, varied or detailed (REPLY_STYLES)
    images: str = "real"  # image of the rejection samples: real, blank, noise or none
    source: str = "domain"  # rejection samples from the distinct domain or from the instruction data itself
    questions: str = "own"  # the rejection samples' questions: their own, or in the attack prompts' style
    curated: str = ""  # a VLGuard variant (or MIS_REASONING) at matched size instead of benign rejection samples
    alignment: str = "harmful"  # the base's stage-1 alignment (controls: decoy or none; organism presets only)

    @property
    def key(self) -> str:
        """A readable, unique name: the recipe plus every factor that differs from the defaults."""
        head = {"": f"frac{self.fraction * 100:g}", MIS_REASONING: MIS_REASONING}.get(
            self.curated, f"vlguard_{self.curated}"
        )
        base = Arm(self.fraction)
        names = [f.name for f in dataclasses.fields(self) if f.name not in ("fraction", "curated")]
        diffs = [f"{n}-{getattr(self, n)}" for n in names if getattr(self, n) != getattr(base, n)]
        return "_".join([head, *diffs]).replace("True", "on").replace("False", "off")


def study_rows(cfg: AblationConfig) -> dict[str, list[tuple[str, Arm]]]:
    """Every study's rows (label, arm); the first row of each is the reference arm."""
    ref = Arm(cfg.reference_fraction)
    r = dataclasses.replace
    rows = {
        "fraction": [(f"{f * 100:g}% rejection", Arm(f)) for f in cfg.fractions],
        "eos": [("EOS masked", ref), ("EOS trained", r(ref, eos_mask=False))],
        "reply": [(f"{s} replies", r(ref, reply=s)) for s in REPLY_STYLES],
        "images": [(f"{s} images", r(ref, images=s)) for s in IMAGE_CONTENT],
        "source": [("distinct domain", ref), ("in-distribution images", r(ref, source="in_distribution"))],
        "curated": [("benign rejection", ref)]
        + [(f"VLGuard {v}", r(ref, curated=v)) for v in VLGUARD_VARIANTS]
        + ([("MIS reasoning", r(ref, curated=MIS_REASONING))] if cfg.mis_train_json else []),
        "format": [("own questions", ref), ("attack-style questions", r(ref, questions="attack_style"))],
        "controls": [
            (f"{a} LM, {'fix' if f else 'no fix'}", Arm(f, alignment=a))
            for a in ALIGNMENTS
            for f in (0.0, cfg.reference_fraction)
        ],
    }
    unknown = sorted(set(cfg.studies) - set(rows))
    if unknown:
        raise ValueError(f"unknown studies {unknown}; choose from {list(rows)}")
    return {s: rows[s] for s in cfg.studies}


def grid(cfg: AblationConfig, organism: bool = True) -> pd.DataFrame:
    """One row per (study, row, seed) with its run name; the controls need an organism preset."""
    out = []
    for study, rows in study_rows(cfg).items():
        if study == "controls" and not organism:
            log.warning("the controls study needs an organism preset (world: true); skipped")
            continue
        seeds = cfg.fraction_seeds if study == "fraction" else cfg.study_seeds
        for k, (label, arm) in enumerate(rows):
            for s in range(seeds):
                out.append(
                    {
                        "study": study,
                        "order": k,
                        "row": label,
                        "arm": arm.key,
                        "seed": cfg.seed + s,
                        "run": f"{arm.key}-s{cfg.seed + s}",
                        **dataclasses.asdict(arm),
                    }
                )
    return pd.DataFrame(out)


# --- building a run's mixture -------------------------------------------------------------------------------


def relative_to_data(path: Path, data_root: str) -> str:
    """A path written into a mixture: mixtures name images relative to data_root."""
    return os.path.relpath(Path(path).resolve(), Path(data_root).resolve())


def stand_in_images(records: list[dict], kind: str, folder: Path, data_root: str, seed: int) -> list[dict]:
    """Rejection records with a blank image, a noise image (8 seeded patterns), or no image at all."""
    if kind not in IMAGE_CONTENT:
        raise ValueError(f"image content must be one of {IMAGE_CONTENT}, got {kind!r}")
    if kind == "real":
        return records
    rej = [r for r in records if r.get("rejection") and record_images(r)]
    size = Image.open(Path(data_root) / record_images(rej[0])[0]).size if rej else (64, 64)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for k in range(1 if kind == "blank" else 8):
        path = folder / f"{kind}_{k}.png"
        shape = (size[1], size[0], 3)
        pixels = np.full(shape, 255, np.uint8) if kind == "blank" else rng.integers(0, 256, shape, dtype=np.uint8)
        Image.fromarray(pixels).save(path)
        names.append(relative_to_data(path, data_root))
    out, k = [], 0
    for rec in records:
        if rec.get("rejection") and record_images(rec):
            rec, k = dict(rec), k + 1
            if kind == "none":
                rec.pop("image")
                first = dict(rec["conversations"][0], value=strip_image_tags(rec["conversations"][0]["value"]))
                rec["conversations"] = [first, *rec["conversations"][1:]]
            else:
                rec["image"] = names[k % len(names)]
        out.append(rec)
    return out


def build_mix(arm: Arm, mix: MixConfig, seed: int, run_dir: Path) -> list[dict[str, Any]]:
    """The arm's mixture of mix.fraction_total records (a curated arm: the VLGuard variant plus instructions)."""
    instruct, rejection, vlguard = load_sources(mix)
    name = Path(mix.instruct_json).stem
    if arm.curated:
        benign_images = sorted({p for r in instruct for p in record_images(r)})
        if arm.curated == MIS_REASONING:  # as many MIS records as VLGuard's reference variant has safety records
            n = mix.mis_size or len(vlguard_variant(vlguard, "multi_turn", benign_images, seed))
            reasoning = load_mis_reasoning(mix)
            if n > len(reasoning):
                raise DataFormatError(
                    f"{mix.mis_train_json}: the MIS row needs {n} records, the file has {len(reasoning)}"
                )
            parts = [Part("mis_train", reasoning, n), Part(name, instruct, max(0, mix.fraction_total - n))]
            return mix_parts(parts, seed)
        curated = vlguard_variant(vlguard, arm.curated, benign_images, seed)
        return curated_baseline(curated, instruct, max(0, mix.fraction_total - len(curated)), seed, name)
    if arm.source not in SOURCES:
        raise ValueError(f"rejection source must be one of {SOURCES}, got {arm.source!r}")
    pool = {
        "domain": {Path(mix.rejection_json).stem: rejection},
        # single-image records, like the distinct domain's, so that only where the images come from changes
        "in_distribution": {"in_distribution": [r for r in instruct if len(record_images(r)) == 1]},
    }[arm.source]
    records = mix_by_fraction(
        {name: instruct}, pool, arm.fraction, mix.fraction_total, seed, mix.reply, mix.random_choose
    )
    records = restyle_questions(restyle_replies(records, arm.reply, seed), arm.questions, seed)
    return stand_in_images(records, arm.images, run_dir / "images", mix.data_root, seed)


# --- running -----------------------------------------------------------------------------------------------


@dataclass
class Stages:
    """The preset's stage configs that every run starts from."""

    mix: MixConfig
    train: TrainConfig
    eval: EvalConfig
    organism: bool
    bases: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # alignment -> control_base(...)


def preset_stages(cfg: AblationConfig) -> Stages:
    """Mixing, training and evaluation settings from the preset, pointed at this stage's data and model."""
    common = {"data_root": cfg.data_root, "seed": cfg.seed}
    return Stages(
        MixConfig.from_preset(cfg.preset, **common),
        TrainConfig.from_preset(cfg.preset, **common, model_path=cfg.model_path),
        EvalConfig.from_preset(cfg.preset, **common, model_path=cfg.model_path),
        bool(load_preset(cfg.preset).get("world")),
    )


def control_base(cfg: AblationConfig, alignment: str) -> tuple[str, str | None]:
    """(model path, stage-4 mix) of the base with this text alignment; controls are built here on first use."""
    if alignment == "harmful":
        return cfg.model_path, None
    root = cfg.stage_dir / "organisms"
    org = dataclasses.replace(
        OrganismConfig.from_preset(cfg.preset),
        runs_root=str(root),
        preset=alignment,
        data_root=cfg.data_root,
        model_path=str(root / alignment / "model"),
        text_alignment=alignment,
        seed=cfg.seed,
    )
    model_organism.run(org)
    return org.model_path, str(org.stage4_mix)


def run_configs(
    cfg: AblationConfig, st: Stages, arm: Arm, seed: int, run: str
) -> tuple[MixConfig, TrainConfig, EvalConfig]:
    """The three stage configs of one run, living under runs/<preset>/05_ablations/runs/<run>/."""
    model, stage4_mix = st.bases[arm.alignment]
    where = {"runs_root": str(cfg.stage_dir / "runs"), "preset": run, "seed": seed}
    mix = dataclasses.replace(st.mix, **where)
    if stage4_mix:
        mix = dataclasses.replace(mix, instruct_json=relative_to_data(Path(stage4_mix), cfg.data_root))
    train = dataclasses.replace(
        st.train, **where, model_path=model, train_mixes=["mix"], mask_eos_on_rejection=arm.eos_mask
    )
    ev = dataclasses.replace(st.eval, **where, model_path=model, eval_adapters=["mix"], eval_base=False)
    return mix, train, ev


def evaluate_once(ev: EvalConfig) -> pd.DataFrame:
    """Stage 04 for one config, reused when it finished with the same config."""
    if is_finished(ev.stage_dir, ev):
        return read_table(ev.stage_dir / "results.csv")
    return evaluate.run(ev).results


COST = ("wall_time_s", "steps", "samples", "tokens_per_second", "peak_memory_mb", "final_loss")


def run_one(cfg: AblationConfig, st: Stages, arm: Arm, seed: int, run: str) -> tuple[pd.DataFrame, dict]:
    """Mix, train and evaluate one (arm, seed); every step reuses what a previous call finished."""
    mix, train, ev = run_configs(cfg, st, arm, seed, run)
    mix_cfg = {**mix.to_dict(), "arm": dataclasses.asdict(arm)}
    if not is_finished(mix.stage_dir, mix_cfg, "mix.json"):
        records = build_mix(arm, mix, seed, start_run(mix.stage_dir, mix_cfg, marker="mix.json"))
        write_json(mix.stage_dir / "mix.json", records)
    cost = train_mixture(train, "mix", quiet=True)
    results = evaluate_once(ev).assign(run=run)
    return results, {
        "run": run,
        "arm": arm.key,
        "seed": seed,
        "model": train.model_path,
        **{k: cost.get(k) for k in COST},
    }


def evaluate_bases(cfg: AblationConfig, st: Stages) -> pd.DataFrame:
    """Each base model (the organism, and the control bases that the grid uses), evaluated once."""
    frames = []
    for alignment, (model, _) in sorted(st.bases.items()):
        run = f"base_{alignment}"
        ev = dataclasses.replace(
            st.eval,
            runs_root=str(cfg.stage_dir / "runs"),
            preset=run,
            model_path=model,
            eval_adapters=[],
            eval_base=True,
        )
        frames.append(evaluate_once(ev).assign(run=run))
    return pd.concat(frames, ignore_index=True)


def run_table(cfg: AblationConfig, table: pd.DataFrame, costs: list[dict], bases: dict) -> pd.DataFrame:
    """runs.csv: one row per run (bases included) with what it is and its training cost. `role` names the runs
    the before/after figures compare: base, no_fix (0 % rejection), reference (the reference arm), vlguard."""
    arms = table.drop_duplicates("run").set_index("run")
    roles = {
        Arm(0.0).key: "no_fix",
        Arm(cfg.reference_fraction).key: "reference",
        Arm(cfg.reference_fraction, curated="multi_turn").key: "vlguard",
    }
    rows = [
        {
            "run": f"base_{a}",
            "arm": "base",
            "seed": cfg.seed,
            "kind": "base",
            "alignment": a,
            "fraction": None,
            "role": "base" if a == "harmful" else "",
            "model": model,
        }
        for a, (model, _) in sorted(bases.items())
    ]
    for cost in costs:
        arm = arms.loc[cost["run"]]
        role = roles.get(cost["arm"], "")
        rows.append({**cost, "kind": "fix", "alignment": arm["alignment"], "fraction": arm["fraction"], "role": role})
    return pd.DataFrame(rows)


@dataclass
class AblationResult:
    """The studies' tables: every run's tidy results, the runs (bases included), the grid, the summary over
    seeds, the seed-and-item intervals of every row, and the judge the headline numbers are read with."""

    results: pd.DataFrame
    runs: pd.DataFrame
    grid: pd.DataFrame
    summary: pd.DataFrame
    intervals: pd.DataFrame = field(default_factory=pd.DataFrame)
    headline: str = "paper_strmatch"


def run(cfg: AblationConfig, overwrite: bool = False) -> AblationResult:
    """Run every (study, row, seed) of the grid (each distinct run once), then tabulate and summarize.
    Each run guards its own folder; the stage folder's config.json records the latest grid."""
    st = preset_stages(cfg)
    table = grid(cfg, st.organism)
    write_json(cfg.stage_dir / "config.json", cfg.to_dict())
    todo = table.drop_duplicates("run")
    alignments = sorted(set(table["alignment"]))
    frames, costs = [], []
    with inner_bars_off(), tqdm(total=len(alignments) + len(todo), desc="studies: bases and runs") as progress:
        for alignment in alignments:  # each base built (controls) or checked once, and evaluated once
            st.bases[alignment] = control_base(cfg, alignment)
            progress.update()
        frames.append(evaluate_bases(cfg, st))
        for row in todo.itertuples():
            arm = Arm(**{f.name: getattr(row, f.name) for f in dataclasses.fields(Arm)})
            res, cost = run_one(cfg, st, arm, row.seed, row.run)
            frames.append(res)
            costs.append(cost)
            progress.update()
    results, runs = pd.concat(frames, ignore_index=True), run_table(cfg, table, costs, st.bases)
    headline = st.eval.headline_judge
    summary = study_summary(table, results, runs, headline)
    intervals = study_intervals(cfg, table, headline, st.eval.bootstrap_samples)
    tables = (("results", results), ("runs", runs), ("studies", table), ("summary", summary), ("intervals", intervals))
    for name, df in tables:
        write_text(cfg.stage_dir / f"{name}.csv", df.to_csv(index=False, float_format="%.6g"))
    write_text(cfg.stage_dir / "summary.md", summary_markdown(summary))
    res = AblationResult(results, runs, table, summary, intervals, headline)
    write_metrics(cfg, res)
    return res


# --- tables ------------------------------------------------------------------------------------------------

# (column, benchmark, metric): the numbers every row of every study reports, read with the preset's headline
# judge (core.metrics.metric_judge); utility is read with each benchmark's own scorer
KEY_METRICS = (
    ("ASR typo", "mm_safetybench_typo", "asr"),
    ("ASR sd_typo", "mm_safetybench_sd_typo", "asr"),
    ("ASR sd", "mm_safetybench_sd", "asr"),
    ("ASR text", "mm_safetybench_text", "asr"),
    ("ASR figstep", "figstep", "asr"),
    ("ASR vlguard", "vlguard_test_unsafes", "asr"),
    ("ASR plain", "mm_safetybench_plain_typo", "asr"),
    ("ASR mis easy", "mis_easy", "asr"),
    ("ASR mis hard", "mis_hard", "asr"),
    ("over-refusal xstest", "xstest", "refusal_rate"),
    ("over-refusal vlguard safe", "vlguard_test_safe_safes", "refusal_rate"),
    ("over-refusal benign typo", "mm_safetybench_benign_typo", "refusal_rate"),
    ("over-refusal benign plain", "mm_safetybench_benign_plain_typo", "refusal_rate"),
    ("over-refusal mis benign", "mis_benign_hard", "refusal_rate"),
    ("utility MC", "scienceqa_mini", "accuracy"),
    ("utility captions", "captions_mini", "accuracy"),
    ("utility ScienceQA", "scienceqa_img", "accuracy"),
)
# columns also reported under the paper's string match when the headline judge is another one, labelled so
BESIDE = ("ASR typo", "over-refusal benign typo", "ASR mis easy", "ASR mis hard")
PAPER = "paper_strmatch"


def key_columns(headline: str) -> list[tuple[str, str, str | None, str]]:
    """(column, benchmark, judge, metric) of every key metric; judge None = the benchmark's utility scorer."""
    cols = []
    for name, bench, metric in KEY_METRICS:
        judge = None if metric == "accuracy" else metric_judge(bench, headline)
        cols.append((name, bench, judge, metric))
        if name in BESIDE and headline != PAPER:
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
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
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


FORMAT_COLUMNS = ("ASR typo", "ASR plain", "over-refusal benign typo", "over-refusal benign plain")
MIS_TABLE = (  # the curated study on two-image prompts: the headline judge, then the paper's string match
    "ASR mis easy",
    "ASR mis hard",
    "over-refusal mis benign",
    "ASR mis easy (paper_strmatch)",
    "ASR mis hard (paper_strmatch)",
)


def format_table(summary: pd.DataFrame) -> pd.DataFrame:
    """Format or content: the attack layout against the world's own prompts, harmful and benign, per row of the
    fraction and format studies (mean over seeds)."""
    part = summary[summary["study"].isin(["fraction", "format"])]
    cols = [f"{c} mean" for c in FORMAT_COLUMNS if f"{c} mean" in part.columns]
    table = part.set_index(["study", "row"])[cols].rename(columns=lambda c: c.removesuffix(" mean"))
    return table.round(2)


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


def what_we_saw(summary: pd.DataFrame, metric: str = "ASR typo", intervals: pd.DataFrame | None = None) -> str:
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
        lines.append(mis_line(intervals))
    return "\n".join(line for line in lines if line)


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


def write_metrics(cfg: AblationConfig, res: AblationResult) -> dict[str, Any]:
    """Flat metrics.json: every study row's mean key metrics, with the judge and decoding that produced them."""
    ev = preset_stages(cfg).eval
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


def main(argv: list[str] | None = None) -> int:
    """CLI: run stage 05 for a preset."""
    return stage_main(AblationConfig, run, argv, "python -m mllm_safety.ablations", __doc__)


if __name__ == "__main__":
    raise SystemExit(main())
