"""Stage 02, the fine-tuning mixtures: the paper's recipe (benign LLaVA-Med questions answered with one rejection
sentence, mixed into LLaVA's instruction data), one mixture per rejection fraction, and the curated-malicious
baseline (VLGuard) in its ablation variants. Mixing semantics: `core.mixing`; settings: `core.config.MixConfig`.

Two ways to call it:
- the stage: `python -m mllm_safety.mix_rejection_data --preset toy` writes every mixture of the preset;
- the official script's command line, same flags (plus `--seed`, `--overwrite`, `--format`):
  `python -m mllm_safety.mix_rejection_data --file1 MED.json --file2 mix665k.json --output DIR --change_reply
  --random_choose` writes one mixture named like the official output. Bad input exits 2 and writes nothing.
"""

from __future__ import annotations

import argparse
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from .core.cli import run_cli, stage_main
from .core.config import MixConfig
from .core.export import check_dataset_info, write_llamafactory
from .core.files import DataFormatError, remove_partial_writes, write_json, write_text
from .core.fingerprints import data_inputs
from .core.judges import FULL_REFUSAL, paper_strmatch
from .core.mis import load_mis_train
from .core.mixing import Part, curated_baseline, mix_by_fraction, mix_parts, mix_with, rejection_share
from .core.names import display_label, fraction_mix_name, official_mix_name, output_name, vlguard_mix_name
from .core.preset import Preset
from .core.records import load_llava_json, load_vlguard, prefix_images, validate_llava
from .core.results import StageResult
from .core.runs import one_writer, start_run
from .core.vlguard import vlguard_variant
from .core.vocabulary import DEFAULT_REPLY, record_images

log = logging.getLogger(__name__)


def _prefix(folder: str) -> str:
    return folder.rstrip("/") + "/" if folder else ""


def load_sources(cfg: MixConfig) -> tuple[list[dict], list[dict], list[dict]]:
    """Instruction, rejection-source and VLGuard records, image paths made relative to data_root."""
    root = Path(cfg.data_root)
    instruct = load_llava_json(root / cfg.instruct_json, allow_duplicate_ids=True)
    rejection = load_llava_json(root / cfg.rejection_json)
    vlguard = load_vlguard(root / cfg.vlguard_json)
    return (
        prefix_images(instruct, _prefix(cfg.instruct_image_dir)),
        prefix_images(rejection, _prefix(cfg.rejection_image_dir)),
        prefix_images(vlguard, _prefix(cfg.vlguard_image_dir)),
    )


def load_mis_reasoning(cfg: MixConfig) -> list[dict]:
    """MIS's training records (two images, a safety chain-of-thought answer), image paths relative to data_root;
    none when the preset names no file."""
    if not cfg.mis_train_json:
        return []
    path = Path(cfg.data_root) / cfg.mis_train_json
    image_dir = cfg.mis_image_dir or str(Path(cfg.mis_train_json).parent)
    records = load_mis_train(path, image_root=Path(cfg.data_root) / image_dir)
    return prefix_images(records, _prefix(image_dir))


def mis_mixture(cfg: MixConfig, mis: list[dict], instruct: list[dict], n_safety: int, name: str) -> list[dict]:
    """The curated-reasoning fix, mixed post hoc like VLGuard's: n MIS records (default: as many as VLGuard's
    safety records, so that the two fixes have the same size) plus baseline_instruct_size instruction records."""
    n = cfg.mis_size or n_safety
    if n > len(mis):
        wanted = f"mis_size {n}" if cfg.mis_size else f"{n} records (mis_size 0: as many as VLGuard's safety records)"
        raise DataFormatError(
            f"{cfg.mis_train_json}: the mixture needs {wanted} but the file has {len(mis)}. Fix: set a smaller mis_size"
        )
    parts = [Part("mis_train", mis, n), Part(name, instruct, cfg.baseline_instruct_size)]
    return mix_parts(parts, cfg.seed)


def build_mixtures(cfg: MixConfig) -> dict[str, list[dict]]:
    """Every mixture of the preset: the official mix, one per rejection fraction, the curated baselines."""
    instruct, rejection, vlguard = load_sources(cfg)
    s1, s2 = Path(cfg.rejection_json).stem, Path(cfg.instruct_json).stem
    mixes = {official_mix_name(cfg): mix_with(cfg, rejection, instruct, s1, s2)}
    for frac in cfg.rejection_fractions:
        mixes[fraction_mix_name(frac)] = mix_by_fraction(
            {s2: instruct}, {s1: rejection}, frac, cfg.fraction_total, cfg.seed, cfg.reply, cfg.random_choose
        )
    benign_images = sorted({p for r in instruct for p in record_images(r)})
    for variant in cfg.vlguard_variants:
        curated = vlguard_variant(vlguard, variant, benign_images, cfg.seed)
        mixes[vlguard_mix_name(variant)] = curated_baseline(curated, instruct, cfg.baseline_instruct_size, cfg.seed, s2)
    mis = load_mis_reasoning(cfg)
    if mis:
        n_safety = len(vlguard_variant(vlguard, "multi_turn", benign_images, cfg.seed))
        mixes["mis_reasoning"] = mis_mixture(cfg, mis, instruct, n_safety, s2)
    check_mixtures(mixes, Path(cfg.data_root))
    return mixes


def check_mixtures(mixes: dict[str, list[dict]], data_root: Path) -> None:
    """Every mixture as stage 03 will read it, before any is written: valid LLaVA records whose images exist under
    data_root (a record names its source, so the error says which preset folder to check)."""
    exists: dict[str, bool] = {}
    for name, recs in mixes.items():
        validate_llava(recs, f"mixture {name}", allow_duplicate_ids=True)
        for i, rec in enumerate(recs):
            for image in record_images(rec):
                if not exists.setdefault(image, (data_root / image).is_file()):
                    raise DataFormatError(
                        f"mixture {name}: record {i} (id={rec['id']!r}, from {rec.get('source')}): image "
                        f"{data_root / image} not found. Fix: check that source's image folder in the preset "
                        "(instruct_image_dir, rejection_image_dir, vlguard_image_dir, mis_image_dir)"
                    )


def has_refusal(rec: dict[str, Any]) -> bool:
    """True when any gpt answer of the record is a full refusal under the paper's string match."""
    return any(paper_strmatch(t["value"]) == FULL_REFUSAL for t in rec["conversations"] if t["from"] == "gpt")


def mixture_table(mixes: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per mixture: records, rejection share, image share, records per source."""
    rows = []
    for name, recs in mixes.items():
        sources = Counter(r.get("source", "?") for r in recs)
        rows.append(
            {
                "mixture": name,
                "records": len(recs),
                "rejection_share": rejection_share(recs),
                "refusal_record_share/paper_strmatch": sum(map(has_refusal, recs)) / max(len(recs), 1),
                "image_share": sum(bool(record_images(r)) for r in recs) / max(len(recs), 1),
                "sources": "; ".join(f"{k}={v}" for k, v in sorted(sources.items())),
            }
        )
    return pd.DataFrame(rows).set_index("mixture")


@dataclass
class MixResult(StageResult):
    """Stage 02's summary: one row per mixture (records, rejection share, refusals, images, sources)."""

    summary: pd.DataFrame
    official: str  # the official mixture's name for this run's sizes
    sizes: tuple[int, int]  # the official recipe's sample sizes (rejection source, instructions)

    def what_we_saw(self) -> str:
        return what_we_saw(self)


@one_writer("mix_rejection_data")
def run(preset: Preset, overwrite: bool = False) -> MixResult:
    """Build and write every mixture (LLaVA json and/or LLaMA-Factory sharegpt); returns the summary table."""
    cfg = preset.mix
    mixes = build_mixtures(cfg)  # every check happens here, before anything is written
    run_dir = start_run(cfg.stage_dir, cfg, overwrite, inputs=data_inputs(cfg.to_dict()))
    remove_partial_writes(run_dir)  # a killed run's half-written files
    for name, recs in mixes.items():
        if cfg.export_format != "sharegpt":
            write_json(run_dir / f"{name}.json", recs)
        if cfg.export_format != "llava":
            write_llamafactory(recs, run_dir, name, overwrite=True)
    summary = mixture_table(mixes)
    write_text(run_dir / "summary.csv", summary.to_csv(float_format="%.6g"))
    write_text(run_dir / "summary.md", summary.round(3).to_markdown() + "\n")
    sizes = (cfg.sample_size1, cfg.sample_size2)
    return MixResult(summary, official_mix_name(cfg), sizes, folder=run_dir, metrics=write_metrics(cfg, summary))


def write_metrics(cfg: MixConfig, summary: pd.DataFrame) -> dict[str, Any]:
    """Flat metrics.json: records, rejection share, refusal share (tagged with its judge), image share per mixture."""
    metrics: dict[str, Any] = {"stage": cfg.stage, "preset": cfg.preset, "seed": cfg.seed, "reply": cfg.reply}
    for name, row in summary.iterrows():
        metrics.update({f"{name}/{k}": row[k] for k in row.index if k != "sources"})
    metrics = {k: (v.item() if hasattr(v, "item") else v) for k, v in metrics.items()}
    write_json(cfg.stage_dir / "metrics.json", metrics)
    return metrics


def display_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with short labels ('rejection 28.6 % (official mix)', 'VLGuard') and rounded shares."""
    table = summary.round(3)
    table.index = [f"{display_label(m)}" for m in table.index]
    return table.rename_axis("mixture")


def what_we_saw(res: MixResult) -> str:
    """What the mixtures hold, from this run's summary."""
    summary, official = res.summary, res.summary.loc[res.official]
    lines = [
        f"- The official recipe ({res.sizes[0]} + {res.sizes[1]} records) gives {int(official['records'])} "
        f"records, {official['rejection_share']:.1%} of them rejection records (paper: 2000 + 5000, 28.6 %).",
    ]
    fractions = summary[summary.index.str.startswith("frac_")]
    if len(fractions):
        pairs = ", ".join(
            f"{display_label(m).removeprefix('rejection ')} → {r:.1%}" for m, r in fractions["rejection_share"].items()
        )
        lines.append(f"- Fraction mixtures, target → measured rejection share: {pairs}.")
    curated = summary[summary.index.str.startswith("vlguard_")]
    if len(curated):
        refusals = curated["refusal_record_share/paper_strmatch"]
        plain = [m for m in curated.index if m.endswith("plain_refusals")]
        how = (
            "each variant's own replies (VLGuard's detailed refusals; the plain sentence in the plain_refusals variant)"
        )
        lines.append(
            f"- Curated VLGuard mixtures: {refusals.min():.1%}–{refusals.max():.1%} of records hold a refusal "
            f"(paper_strmatch), in {how if plain else 'VLGuard detailed refusals, not one sentence'}."
        )
    return "\n".join(lines)


# --- the official script's command line --------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The official flags, unchanged, plus --seed, --overwrite and --format; --preset runs the whole stage."""
    p = argparse.ArgumentParser(
        prog="python -m mllm_safety.mix_rejection_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", help="run stage 02 for a preset (then the official flags are not used)")
    p.add_argument("--file1", help="rejection source, LLaVA json (paper: LLaVA-Med instruct data)")
    p.add_argument("--file2", help="instruction data, LLaVA json (paper: llava_v1_5_mix665k.json)")
    p.add_argument("--output", help="output folder; the file name follows the official pattern")
    p.add_argument("--sample_size1", type=int, default=2000)
    p.add_argument("--sample_size2", type=int, default=5000)
    p.add_argument("--similar", action="store_true", help="draw file2 only among file1's sampled ids")
    p.add_argument("--change_reply", action="store_true", help="replace file1's first answer by --reply (official)")
    p.add_argument("--change_every_reply", action="store_true", help="with --change_reply: every answer, not the first")
    p.add_argument("--reply", default=DEFAULT_REPLY)
    p.add_argument("--suffix", default="")
    p.add_argument("--random_choose", action="store_true", help="keep one random turn pair per file1 record")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (or a finished stage run)")
    p.add_argument("--format", choices=("llava", "sharegpt", "both"), default="llava")
    return p


def check_args(args: argparse.Namespace) -> None:
    """The official flags' values, checked before anything is read or written."""
    if "/" in args.suffix or "\\" in args.suffix:
        raise DataFormatError(
            f"--suffix {args.suffix!r}: a path separator would write outside --output. Fix: a plain word"
        )
    if args.change_reply and not args.reply.strip():
        raise DataFormatError("--reply is empty: rejection records would be trained on nothing. Fix: give a sentence")
    for flag in ("sample_size1", "sample_size2"):
        if getattr(args, flag) < 1:
            raise DataFormatError(f"--{flag} {getattr(args, flag)}: must be at least 1")


def mix_files(args: argparse.Namespace) -> list[Path]:
    """The official script: mix --file1 into --file2 and write one mixture under --output; returns the paths.
    Every input and every output is checked before the first file is written."""
    check_args(args)
    records1, records2 = load_llava_json(args.file1), load_llava_json(args.file2, allow_duplicate_ids=True)
    mixed = mix_with(args, records1, records2, Path(args.file1).stem, Path(args.file2).stem)
    validate_llava(mixed, "the mixture", allow_duplicate_ids=True)
    out = Path(args.output) / output_name(
        args.sample_size1, args.file1, args.sample_size2, args.file2, args.suffix, args.similar
    )
    targets = ([out] if args.format != "sharegpt" else []) + (
        [out.with_name(out.stem + "_sharegpt.json")] if args.format != "llava" else []
    )
    clash = [str(t) for t in targets if t.exists()]
    if clash and not args.overwrite:
        raise FileExistsError(f"{', '.join(clash)} exists; pass --overwrite to replace it")
    if args.format != "llava":
        check_dataset_info(out.parent, out.stem, args.overwrite)
    written = []
    if args.format in ("llava", "both"):
        written.append(write_json(out, mixed, overwrite=args.overwrite))
    if args.format in ("sharegpt", "both"):
        written += write_llamafactory(mixed, out.parent, out.stem, overwrite=args.overwrite)
    log.info("mixed %d records, rejection share %.3f", len(mixed), rejection_share(mixed))
    return written


def main(argv: list[str] | None = None) -> int:
    """CLI: the stage (--preset) or the official mixer (--file1/--file2/--output)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    files = [f"--{k}" for k in ("file1", "file2", "output") if getattr(args, k) is not None]
    if args.preset:
        if files:
            parser.error(f"--preset runs the whole stage; drop {files} (or drop --preset to mix two files)")
        stage_argv = ["--preset", args.preset, *(["--overwrite"] if args.overwrite else [])]
        return stage_main(MixConfig, run, stage_argv, parser.prog, __doc__)
    missing = [f"--{k}" for k in ("file1", "file2", "output") if getattr(args, k) is None]
    if missing:
        parser.error(f"the official mixer needs {', '.join(missing)} (or give --preset to run stage 02)")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run_cli(lambda: [print(path) for path in mix_files(args)])


if __name__ == "__main__":
    raise SystemExit(main())
