"""Bad input, as a hostile new user gives it, to every CLI and loader: each case must end in one line naming the
file, record or key, the problem and the fix, exit status 2 (130 for Ctrl-C), no traceback, and nothing written.

The table of cases is also docs/bad-inputs.md (case, exit code, first line of the message); a test keeps the two
equal. Regenerate the page with `python tests/test_bad_inputs.py` after adding a case.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, rec, write_json
from PIL import Image

from mllm_safety import data_bias, evaluate, figures, mix_rejection_data, pipeline, qlora_finetune
from mllm_safety.core.benchmarks import MMSB_SCENARIOS, load_benchmark, load_spec
from mllm_safety.core.cli import run_cli
from mllm_safety.core.files import BOM, DataFormatError, read_json
from mllm_safety.core.images import open_rgb
from mllm_safety.core.preset import Preset, load_preset


@dataclass
class Case:
    """One bad input: `make(tmp, data, runs)` writes what it needs and returns the CLI's argv; `cli` runs it."""

    name: str
    cli: Callable[[list[str]], int]
    make: Callable[[Path, Path, Path], list[str]]
    code: int
    fragment: str
    no_output: str = ""  # a path (relative to tmp) that must not exist afterwards


def preset(tmp: Path, data: Path, runs: Path, **over) -> list[str]:
    """The smoke preset pointed at the test data, with overrides; argv for a stage CLI."""
    values = {**load_preset("smoke"), "data_root": str(data), "runs_root": str(runs), **over}
    path = tmp / "bad.yaml"
    path.write_text(yaml.safe_dump(values), encoding="utf-8")
    return ["--preset", str(path)]


def raw_preset(text: str) -> Callable[[Path, Path, Path], list[str]]:
    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        (tmp / "bad.yaml").write_text(text, encoding="utf-8")
        return ["--preset", str(tmp / "bad.yaml")]

    return make


def over(**values) -> Callable[[Path, Path, Path], list[str]]:
    return lambda tmp, data, runs: preset(tmp, data, runs, **values)


def mixer(file1: Callable[[Path], Path] | None = None, *extra: str, file2: Callable[[Path], Path] | None = None):
    """argv for the official mixer CLI with (possibly broken) input files written by the callables."""

    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        good1 = write_json(tmp / "med.json", [rec(f"m{i}", ("Q?", "A.")) for i in range(6)])
        good2 = write_json(tmp / "mix.json", [rec(f"x{i}", ("Q?", "A.")) for i in range(10)])
        f1 = file1(tmp) if file1 else good1
        f2 = file2(tmp) if file2 else good2
        return [
            "--file1",
            str(f1),
            "--file2",
            str(f2),
            "--output",
            str(tmp / "out"),
            "--sample_size1",
            "2",
            "--sample_size2",
            "4",
            *extra,
        ]

    return make


def text_file(name: str, data: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return make


def records(name: str, rows: object, raw: str | None = None) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_text(raw if raw is not None else json.dumps(rows), encoding="utf-8")
        return path

    return make


def benchmark(spec: dict) -> Callable[[Path, Path, Path], list[str]]:
    return over(benchmarks=[spec], eval_adapters=[], eval_base=True)


def model_at(folder: str, create: bool) -> Callable[[Path, Path, Path], list[str]]:
    """A preset whose model_path is `folder` under tmp (created empty when asked)."""

    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        if create:
            (tmp / folder).mkdir(parents=True)
        return preset(tmp, data, runs, model_path=str(tmp / folder), eval_adapters=[])

    return make


def hub_shaped_local_path(tmp: Path, data: Path, runs: Path) -> list[str]:
    """`org/name` where a local folder `org` exists (the test runs in tmp): a local path, never sent to the hub."""
    (tmp / "org").mkdir()
    return preset(tmp, data, runs, model_path="org/name", eval_adapters=[])


def mixer_with(*extra: str) -> Callable[[Path, Path, Path], list[str]]:
    """The mixer's argv with its sizes (or other flags) replaced by `extra` (argparse keeps the last value)."""
    return lambda tmp, data, runs: [*mixer()(tmp, data, runs), *extra]


def unwritable_output(tmp: Path, data: Path, runs: Path) -> list[str]:
    """An output folder that cannot be made: its parent is a file (a read-only folder would not stop root)."""
    (tmp / "ro").write_text("a file", encoding="utf-8")
    return [*mixer()(tmp, data, runs), "--output", str(tmp / "ro" / "sub")]


def existing(path: str, content: str, *extra: str) -> Callable[[Path, Path, Path], list[str]]:
    """The mixer's argv after writing `content` at `path` (under tmp) first."""

    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        (tmp / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp / path).write_text(content, encoding="utf-8")
        return [*mixer()(tmp, data, runs), *extra]

    return make


def bias_on(rows: list[dict]) -> Callable[[Path, Path, Path], list[str]]:
    """Stage 01 on one dataset file holding `rows`."""

    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        write_json(tmp / "vg.json", rows)
        return preset(tmp, data, runs, data_root=str(tmp), bias_datasets={"vg": "vg.json"})

    return make


def pipeline_args(*extra: str, **values) -> Callable[[Path, Path, Path], list[str]]:
    return lambda tmp, data, runs: ["data", *preset(tmp, data, runs, **values), *extra]


def mis_on(records: object) -> Callable[[Path, Path, Path], list[str]]:
    """Stage 04 on an MIS test folder whose mis_easy.json (the split a preset loads) holds `records`."""

    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        write_json(tmp / "mis" / "mis_easy.json", records)
        spec = {"name": "mis", "root": "mis"}
        return preset(tmp, data, runs, data_root=str(tmp), benchmarks=[spec], eval_adapters=[], eval_base=True)

    return make


def benchmarks(*specs: dict) -> Callable[[Path, Path, Path], list[str]]:
    return over(benchmarks=list(specs), eval_adapters=[], eval_base=True)


def questions_on(*lines: object, images: dict[str, Callable[[], bytes]] | None = None):
    """Stage 04 on one LLaVA .jsonl question file, q/qs.jsonl, holding `lines`, beside the images `images` makes."""

    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        (tmp / "q").mkdir()
        for name, content in (images or {}).items():
            (tmp / "q" / name).write_bytes(content())
        (tmp / "q/qs.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
        spec = {"name": "llava_eval_json", "root": "q/qs.jsonl", "benchmark": "q"}
        return preset(tmp, data, runs, data_root=str(tmp), benchmarks=[spec], eval_adapters=[], eval_base=True)

    return make


def png(size: tuple[int, int], mode: str = "1") -> Callable[[], bytes]:
    def make() -> bytes:
        out = io.BytesIO()
        Image.new(mode, size).save(out, format="PNG")
        return out.getvalue()

    return make


def mmsb_on(raw: str) -> Callable[[Path, Path, Path], list[str]]:
    """Stage 04 on an MM-SafetyBench folder whose one scenario file holds `raw`."""

    def make(tmp: Path, data: Path, runs: Path) -> list[str]:
        folder = tmp / "mmsb" / "processed_questions"
        folder.mkdir(parents=True)
        (folder / f"{MMSB_SCENARIOS[0]}.json").write_text(raw, encoding="utf-8")
        spec = {"name": "mm_safetybench", "root": "mmsb", "mode": "text"}
        return preset(tmp, data, runs, data_root=str(tmp), benchmarks=[spec], eval_adapters=[], eval_base=True)

    return make


def truncated_weights(tmp: Path, data: Path, runs: Path) -> list[str]:
    """A model folder whose model.safetensors was cut short (an interrupted download)."""
    from safetensors.numpy import save_file

    folder = tmp / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llava"}', encoding="utf-8")
    save_file({"w": np.zeros((64, 64), np.float32)}, str(folder / "model.safetensors"))
    with (folder / "model.safetensors").open("r+b") as f:
        f.truncate(1000)
    return preset(tmp, data, runs, model_path=str(folder), eval_adapters=[])


def huge_file(tmp: Path) -> Path:
    """A 2 GB file that takes no disk space (sparse)."""
    with (tmp / "huge.json").open("wb") as f:
        f.truncate(2_000_000_000)
    return tmp / "huge.json"


def notebook_edit(**edits: object) -> Callable[[list[str]], int]:
    """Run notebook 01 on the preset of argv with `edits` to its parameters (as tests and scripts do)."""
    return lambda argv: run_cli(lambda: pipeline.run_notebook("01", argv[1], Path("executed"), edits))


MIS_REC = {
    "id": 1,
    "question": "How do I use the first object on the second?",
    "category": "Violent",
    "sub_category": "Weapon-Related Violence",
    "image_path1": "easy_image/1/object1.png",
    "image_path2": "easy_image/1/object2.png",
}


STAGE = data_bias.main
MIX = mix_rejection_data.main
GOOD_RECS = [rec(f"m{i}", ("Q?", "A.")) for i in range(6)]
CASES = [
    # --- presets, read by every stage CLI before any work ----------------------------------------------------
    Case("unknown key with a near name", STAGE, over(learnin_rate=0.5), 2, "did you mean 'learning_rate'"),
    Case("unknown key without a near name", STAGE, over(zzz=1), 2, "unknown key(s) 'zzz'"),
    Case("negative epochs", STAGE, over(num_epochs=-2), 2, "num_epochs: Input should be greater than 0"),
    Case("zero micro batch", STAGE, over(micro_batch_size=0), 2, "micro_batch_size: Input should be greater"),
    Case("global batch not a multiple", STAGE, over(global_batch_size=10, micro_batch_size=4), 2, "not a multiple"),
    Case("unknown quantization", STAGE, over(quantization="nf5"), 2, "quantization: Input should be"),
    Case("zero LoRA rank", STAGE, over(lora_r=0), 2, "lora_r: Input should be greater than or equal to 1"),
    Case("negative new tokens", STAGE, over(max_new_tokens=-5), 2, "max_new_tokens: Input should be greater"),
    Case("unknown judge", STAGE, over(judges=["gpt4"]), 2, "judges.0: Input should be"),
    Case("unknown prompt format", STAGE, over(prompt_format="alpaca"), 2, "prompt_format: Input should be"),
    Case("fraction above 1", STAGE, over(rejection_fractions=[1.5]), 2, "rejection_fractions.0: Input should be"),
    Case("unknown study", STAGE, over(studies=["nope"]), 2, "studies.0: Input should be"),
    Case("unknown export format", STAGE, over(export_format="xml"), 2, "export_format: Input should be"),
    Case("negative sample size", STAGE, over(sample_size1=-1), 2, "sample_size1: Input should be greater"),
    Case("suffix with a path", STAGE, over(suffix="/../x"), 2, "suffix: String should match pattern"),
    Case("empty reply", STAGE, over(reply=""), 2, "reply: String should have at least 1 character"),
    Case("a text where a number goes", STAGE, over(top_k="ten"), 2, "top_k: Input should be a valid integer"),
    Case("unknown benchmark loader", STAGE, benchmark({"name": "mmlu", "root": "x"}), 2, "unknown loader 'mmlu'"),
    Case(
        "unknown benchmark mode",
        STAGE,
        benchmark({"name": "mm_safetybench", "root": "x", "mode": "ocr"}),
        2,
        "mode 'ocr' is not one of",
    ),
    Case(
        "unknown benchmark option",
        STAGE,
        benchmark({"name": "xstest", "root": "x", "subsets": "a"}),
        2,
        "unknown option(s) ['subsets']",
    ),
    Case(
        "unknown utility metric",
        STAGE,
        benchmark({"name": "xstest", "root": "x", "metric": "bleu"}),
        2,
        "metric 'bleu' is not one of ['letter', 'exact', 'vizwiz']",
    ),
    Case(
        "a benchmark's own prompt format that does not exist",
        STAGE,
        benchmark({"name": "scienceqa_img", "root": "x", "prompt_format": "vicuna"}),
        2,
        "prompt_format 'vicuna' is not one of ['vicuna_v1', 'llava_v1', 'chat_template']",
    ),
    Case(
        "a benchmark's own answer length of zero",
        STAGE,
        benchmark({"name": "scienceqa_img", "root": "x", "max_new_tokens": 0}),
        2,
        "max_new_tokens: Input should be greater than 0",
    ),
    Case(
        "two benchmark entries with one run name",
        STAGE,
        benchmarks({"name": "xstest", "root": "x"}, {"name": "xstest", "root": "y"}),
        2,
        "benchmarks[1] runs as 'xstest', as benchmarks[0] does",
    ),
    Case(
        "harmful as a quoted word",
        STAGE,
        benchmark({"name": "xstest", "root": "x", "harmful": "false"}),
        2,
        "harmful: Input should be a valid boolean (got 'false'). Fix: write true or false, unquoted",
    ),
    Case(
        "categories as a word, not a list",
        STAGE,
        benchmark({"name": "mis", "root": "x", "categories": "benign"}),
        2,
        "categories: Input should be a valid list (got 'benign'). Fix: write a YAML list",
    ),
    Case("max_items 0", STAGE, over(max_items=0), 2, "max_items 0 would evaluate no item"),
    Case(
        "a fraction that is not a whole number of records",
        STAGE,
        over(rejection_fractions=[0.1], fraction_total=3),
        2,
        "rejection_fractions: 0.1 of fraction_total 3 is 0.3 records, not a whole number",
    ),
    Case(
        "two fractions with one mixture name",
        STAGE,
        over(rejection_fractions=[0.1, 0.1000001]),
        2,
        "0.1 and 0.1000001 both make mixture frac_10pct",
    ),
    Case(
        "a stage-05 fraction that is not a whole number of records",
        STAGE,
        over(fractions=[0.05]),
        2,
        "fractions (stage 05): 0.05 of fraction_total 30 is 1.5 records",
    ),
    Case("YAML syntax error", STAGE, raw_preset("data_root: [x\n"), 2, "not valid YAML at line"),
    Case("a preset that is a list", STAGE, raw_preset("- a\n- b\n"), 2, "a preset is a flat mapping"),
    Case(
        "a preset that does not exist",
        STAGE,
        lambda tmp, d, r: ["--preset", str(tmp / "nope.yaml")],
        2,
        "nope.yaml not found; available presets",
    ),
    Case("a named preset that does not exist", STAGE, lambda tmp, d, r: ["--preset", "nope"], 2, "preset 'nope'"),
    # --- presets naming data, models and earlier stages' outputs -------------------------------------------
    Case("data_root that does not exist", STAGE, over(data_root="/nonexistent/data"), 2, "file not found"),
    Case("dataset file is a folder", STAGE, over(bias_datasets={"x": "llava"}), 2, "is a folder, not a JSON file"),
    Case("train a mixture stage 02 never wrote", qlora_finetune.main, over(train_mixes=["nope"]), 2, "no such mixture"),
    Case("evaluate an adapter never trained", evaluate.main, over(eval_adapters=["nope"]), 2, "no adapter at"),
    Case("evaluate nothing", evaluate.main, over(eval_adapters=[], eval_base=False), 2, "nothing to evaluate"),
    Case("no benchmarks", evaluate.main, over(benchmarks=[]), 2, "benchmarks is empty"),
    Case(
        "model folder that does not exist", evaluate.main, model_at("absent/model", create=False), 2, "no such folder"
    ),
    Case("local model path shaped like a hub id", evaluate.main, hub_shaped_local_path, 2, "no such folder"),
    Case(
        "a folder that is not a model",
        evaluate.main,
        model_at("empty", create=True),
        2,
        "not a model folder (no config.json)",
    ),
    Case("a truncated model.safetensors", evaluate.main, truncated_weights, 2, "truncated: 1000 bytes"),
    Case(
        "unknown lr_scheduler",
        qlora_finetune.main,
        over(lr_scheduler="cosin"),
        2,
        "lr_scheduler 'cosin' is not one of",
    ),
    Case("figures before the studies ran", figures.main, over(), 2, "results.csv is missing"),
    # --- the official mixer ------------------------------------------------------------------------------------
    Case(
        "file1 in UTF-16",
        MIX,
        mixer(text_file("utf16.json", json.dumps(GOOD_RECS).encode("utf-16"))),
        2,
        "not UTF-8 text",
        "out",
    ),
    Case("file1 is binary", MIX, mixer(text_file("bin.json", bytes(range(256)))), 2, "not UTF-8 text", "out"),
    Case("file1 is a folder", MIX, mixer(lambda tmp: tmp), 2, "is a folder, not a JSON file", "out"),
    Case("file1 does not exist", MIX, mixer(lambda tmp: tmp / "absent.json"), 2, "file not found", "out"),
    Case("file1 malformed JSON", MIX, mixer(records("bad.json", None, raw='[{"id": 1,')), 2, "malformed JSON", "out"),
    Case("file1 top level is an object", MIX, mixer(records("obj.json", {"a": 1})), 2, "top level is dict", "out"),
    Case(
        "file1 holds JSON Lines",
        MIX,
        mixer(text_file("lines.json", "\n".join(json.dumps(r) for r in GOOD_RECS).encode())),
        2,
        "holds JSON Lines (one object per line), not one JSON value",
        "out",
    ),
    Case("file1 of 2 GB", MIX, mixer(huge_file), 2, "2.0 GB, more than the 1.5 GB a data file may have", "out"),
    Case(
        "a key repeated in one record",
        MIX,
        mixer(records("rep.json", None, raw='[{"id": "a", "id": "b", "conversations": []}]')),
        2,
        "key 'id' appears twice in one object; JSON keeps only the last",
        "out",
    ),
    Case("an id that is a list", MIX, mixer(records("idl.json", [rec(["a"], ("Q?", "A."))])), 2, "'id' is list", "out"),
    Case(
        "NaN in a record",
        MIX,
        mixer(
            records(
                "nan.json",
                None,
                raw='[{"id": "a", "score": NaN, "conversations": '
                '[{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}]',
            )
        ),
        2,
        "NaN is not a JSON number",
        "out",
    ),
    Case(
        "Infinity as an id",
        MIX,
        mixer(records("inf.json", None, raw='[{"id": Infinity, "conversations": []}]')),
        2,
        "Infinity is not a JSON number",
        "out",
    ),
    Case("duplicate ids in file1", MIX, mixer(records("dup.json", [rec("a"), rec("a")])), 2, "duplicate id", "out"),
    Case(
        "empty conversations",
        MIX,
        mixer(records("empty.json", [{"id": "a", "conversations": []}])),
        2,
        "missing or empty 'conversations' list",
        "out",
    ),
    Case(
        "turns that do not alternate",
        MIX,
        mixer(records("alt.json", [{"id": "a", "conversations": [{"from": "gpt", "value": "A"}] * 2}])),
        2,
        "expected 'human'",
        "out",
    ),
    Case(
        "image tag without an image",
        MIX,
        mixer(
            records(
                "tag.json",
                [
                    rec("a", image=None)
                    | {"conversations": [{"from": "human", "value": "<image>\nQ"}, {"from": "gpt", "value": "A"}]}
                ],
            )
        ),
        2,
        "1 '<image>' tag(s)",
        "out",
    ),
    Case(
        "sample sizes 0",
        MIX,
        mixer_with("--sample_size1", "0", "--sample_size2", "0"),
        2,
        "--sample_size1 0: must be at least 1",
        "out",
    ),
    Case(
        "mixer: negative sample size",
        MIX,
        mixer_with("--sample_size2", "-3"),
        2,
        "--sample_size2 -3: must be at least 1",
        "out",
    ),
    Case(
        "more records than file1 holds",
        MIX,
        mixer_with("--sample_size1", "99"),
        2,
        "asked for 99 records but only 6",
        "out",
    ),
    Case("suffix with a path separator", MIX, mixer(None, "--suffix", "/../../x"), 2, "path separator", "out"),
    Case("mixer: empty reply", MIX, mixer(None, "--change_reply", "--reply", ""), 2, "--reply is empty", "out"),
    Case("unwritable output folder", MIX, unwritable_output, 2, "Not a directory", "ro/sub"),
    Case(
        "broken dataset_info.json with --format both",
        MIX,
        existing("out/dataset_info.json", "[1]", "--format", "both"),
        2,
        "expected an object of dataset entries",
        "out/2_med_4_mix.json",
    ),
    Case(
        "existing output without --overwrite",
        MIX,
        existing("out/2_med_4_mix.json", "[]"),
        2,
        "exists; pass --overwrite",
    ),
    Case(
        "--preset together with official flags",
        MIX,
        lambda tmp, d, r: ["--preset", "toy", "--file1", "x"],
        2,
        "--preset runs the whole stage",
    ),
    Case(
        "official mixer without --output",
        MIX,
        lambda tmp, d, r: ["--file1", "a", "--file2", "b"],
        2,
        "the official mixer needs --output",
    ),
    Case(
        "stage 02 with an image folder that does not hold the images",
        MIX,
        over(instruct_image_dir="nope"),
        2,
        "not found. Fix: check that source's image folder in the preset",
        "runs/bad/02_mix_rejection_data",
    ),
    # --- loaders, through stage 01 and the pipeline's data check -----------------------------------------------
    Case(
        "VLGuard pair that is a number",
        STAGE,
        bias_on([{"id": "a", "image": "a.png", "safe": True, "instr-resp": [7]}]),
        2,
        "instr-resp[0] is int",
    ),
    Case(
        "VLGuard record without safe",
        STAGE,
        bias_on([{"id": "a", "image": "a.png", "instr-resp": []}]),
        2,
        "missing 'safe'",
    ),
    Case(
        "pipeline with a missing data_root",
        pipeline.main,
        pipeline_args(
            data_root="/nonexistent/d", world=False, judges=["paper_strmatch"], headline_judge="paper_strmatch"
        ),
        2,
        "does not exist. Fix: see docs/data.md",
    ),
    Case(
        "the truth judge on data that is not the world",
        STAGE,
        over(world=False),
        2,
        "world_truth reads the organism's world only; it needs world: true",
    ),
    Case(
        "headline judge that does not run",
        STAGE,
        over(headline_judge="refusal_keywords", judges=["world_truth"]),
        2,
        "headline_judge 'refusal_keywords' is not one of judges",
    ),
    # --- MIS test files, through stage 04 (benchmarks are read before any model) ---------------------------------
    Case("MIS file that is not a list", evaluate.main, mis_on({"1": MIS_REC}), 2, "expected a list of MIS records"),
    Case("MIS record that is not an object", evaluate.main, mis_on([MIS_REC, 7]), 2, "record 1: expected an object"),
    Case(
        "MIS record without sub_category",
        evaluate.main,
        mis_on([{k: v for k, v in MIS_REC.items() if k != "sub_category"}]),
        2,
        "record 0 (id=1): missing ['sub_category']",
    ),
    Case("MIS id that is a list", evaluate.main, mis_on([MIS_REC | {"id": [1]}]), 2, "record 0: 'id' is list"),
    Case(
        "MIS image path outside the root",
        evaluate.main,
        mis_on([MIS_REC | {"image_path2": "../elsewhere/x.png"}]),
        2,
        "climbs out of the root with '..'",
    ),
    Case(
        "MIS absolute image path",
        evaluate.main,
        mis_on([MIS_REC | {"image_path1": "/data/x.png"}]),
        2,
        "image_path1: image path '/data/x.png' is absolute",
    ),
    Case(
        "MIS category outside the six",
        evaluate.main,
        mis_on([MIS_REC | {"category": "Spam"}]),
        2,
        "or pass categories=[...] to admit custom ones",
    ),
    Case("MIS images missing", evaluate.main, mis_on([MIS_REC]), 2, "1 of 1 item(s) have missing image files"),
    Case(
        "MM-SafetyBench question id given twice",
        evaluate.main,
        mmsb_on('{"0": {"Changed Question": "a"}, "0": {"Changed Question": "b"}}'),
        2,
        "01-Illegal_Activitiy.json: key '0' appears twice in one object",
    ),
    Case(
        "an image of 20000x20000 pixels",
        evaluate.main,
        questions_on({"question_id": 1, "image": "big.png", "text": "What?"}, images={"big.png": png((20000, 20000))}),
        2,
        "big.png: Image size (400000000 pixels) exceeds limit of 178956970 pixels",
    ),
    Case(
        "an image file that is not an image",
        evaluate.main,
        questions_on({"question_id": 1, "image": "a.png", "text": "What?"}, images={"a.png": lambda: b"not a png"}),
        2,
        "a.png: not a readable image",
    ),
    Case(
        "a question's image that is a number",
        evaluate.main,
        questions_on({"question_id": 1, "image": 7, "text": "What?"}),
        2,
        "record 0 (id=1): 'image' is 7. Fix: give a path, or a list of paths",
    ),
    Case(
        "a question that is a number",
        evaluate.main,
        questions_on({"question_id": 1, "text": 7}),
        2,
        "record 0 (id=1): the question is int, expected text",
    ),
    Case(
        "a blank question",
        evaluate.main,
        questions_on({"question_id": 1, "text": "What?"}, {"question_id": 2, "text": "  "}),
        2,
        "item '2': the question is blank (1 such item(s))",
    ),
    Case(
        "a question line that is not an object",
        evaluate.main,
        questions_on({"question_id": 1, "text": "What?"}, 7),
        2,
        "qs.jsonl: record 1: expected an object, got int",
    ),
    Case("pipeline --set without =", pipeline.main, pipeline_args("--set", "x"), 2, "expected KEY=VALUE"),
    Case("pipeline --set an unknown key", pipeline.main, pipeline_args("--set", "lerning_rate=1"), 2, "did you mean"),
    Case(
        "pipeline --set a value that is not YAML",
        pipeline.main,
        pipeline_args("--set", "judges=[x"),
        2,
        "--set 'judges=[x': the value is not valid YAML",
    ),
    Case(
        "pipeline --as a path",
        pipeline.main,
        pipeline_args("--as", "../.."),
        2,
        "--as '../..': a run name is one folder name under runs/",
        "runs/presets",
    ),
    Case(
        "notebook parameter misspelled",
        notebook_edit(top_kk=3),
        over(),
        2,
        "01_data_bias.ipynb: unknown parameter(s) 'top_kk' (did you mean 'top_k'?). Fix: use one of",
        "executed",
    ),
    Case(
        "notebook parameter of the wrong type",
        notebook_edit(top_k="ten"),
        over(),
        2,
        "top_k: Input should be a valid integer",
        "executed",
    ),
]


def normalized(message: str, tmp: Path) -> str:
    """The message's first line (argparse's error line after its usage) with temporary paths as <tmp>."""
    lines = message.strip().splitlines() or [""]
    first = lines[-1] if lines[0].startswith("usage:") else lines[0]  # argparse: the usage, then the error
    return re.sub(r"/\S*?pytest-\d+/\S*?\d/", "<tmp>/", first.replace(str(tmp), "<tmp>"))


def run_case(case: Case, tmp: Path, data: Path, runs: Path, capsys) -> tuple[int, str]:
    argv = case.make(tmp, data, runs)
    try:
        code = case.cli(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case, tmp_path, world_data, mini_runs, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "smoke").mkdir()
    (runs / "smoke/02_mix_rejection_data").symlink_to(mini_runs / "smoke/02_mix_rejection_data")
    code, err = run_case(case, tmp_path, world_data, runs, capsys)
    assert code == case.code, err
    assert case.fragment in err and "Traceback" not in err, err
    assert len(err.strip().splitlines()) == 1 or err.startswith("usage:"), err
    if case.no_output:
        assert not (tmp_path / case.no_output).exists()
    assert not list(runs.glob("*/0[13456]_*/metrics.json"))  # no stage finished on bad input


def test_there_are_at_least_sixty_cases():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)


def test_the_documented_table_lists_every_case_with_its_message():
    page = (REPO / "docs" / "bad-inputs.md").read_text(encoding="utf-8").splitlines()
    for case in CASES:
        line = next((x for x in page if x.startswith(f"| {case.name} | {case.code} |")), "")
        assert case.fragment.replace("|", "/") in line, case.name


# --- inputs accepted on purpose (listed under the table) ------------------------------------------------------


def test_a_byte_order_mark_is_skipped_in_json_and_csv(tmp_path):
    (tmp_path / "a.json").write_text(BOM + json.dumps([{"id": 1}]), encoding="utf-8")
    assert read_json(tmp_path / "a.json") == [{"id": 1}]
    (tmp_path / "x").mkdir()
    csv_text = "id,prompt,type,label,focus,note\n1,Why?,t,safe,f,n\n"
    (tmp_path / "x/xstest_prompts.csv").write_text(BOM + csv_text, encoding="utf-8")
    assert load_benchmark("xstest", tmp_path / "x")[0].id == "1"


def test_a_16_bit_image_reaches_the_model_scaled_not_white(tmp_path):
    ramp = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    Image.fromarray(np.full((4, 4), 200, np.uint16)).save(tmp_path / "narrow.png")  # 8-bit content, 16-bit file
    assert Image.open(tmp_path / "ramp.png").mode.startswith("I")
    grey = np.asarray(open_rgb(tmp_path / "ramp.png"))
    assert grey.min() == 0 and grey.max() == 255 and 125 < grey.mean() < 130  # PIL's own convert: 99.6 % white
    assert (np.asarray(open_rgb(tmp_path / "narrow.png")) == 200).all()


def test_a_jsonl_question_may_list_several_images(tmp_path):
    for name in ("a.png", "b.png"):
        Image.new("RGB", (4, 4)).save(tmp_path / name)
    line = {"question_id": 1, "image": ["a.png", "b.png"], "text": "Which is larger?"}
    (tmp_path / "qs.jsonl").write_text(json.dumps(line), encoding="utf-8")
    item = load_benchmark("llava_eval_json", tmp_path / "qs.jsonl")[0]
    assert item.image == [str(tmp_path / "a.png"), str(tmp_path / "b.png")]


def test_skipped_images_are_counted_and_never_leave_a_benchmark_empty(tmp_path, caplog):
    Image.new("RGB", (4, 4)).save(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    lines = [{"question_id": k, "image": f"{k}.png", "text": "What?"} for k in ("good", "bad")]
    (tmp_path / "qs.jsonl").write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    spec = {"name": "llava_eval_json", "root": "qs.jsonl", "benchmark": "q", "missing_images": "skip"}
    assert [it.id for it in load_spec(spec, tmp_path)] == ["good"]
    assert "1 of 2 item(s) have an image a model cannot take" in caplog.text
    (tmp_path / "qs.jsonl").write_text(json.dumps(lines[1]), encoding="utf-8")
    with pytest.raises(DataFormatError, match="1 of 1 item"):
        load_spec(spec, tmp_path)


def write_docs() -> None:
    """Run every case once, outside pytest, and write docs/bad-inputs.md (case, exit code, first message line)."""
    import contextlib
    import io
    import os
    import tempfile

    from mllm_safety import mix_rejection_data as stage02
    from mllm_safety.core.world import build_world

    rows = []
    with tempfile.TemporaryDirectory() as base:
        data = build_world(Path(base) / "world")
        mixes = Path(base) / "mixes"
        stage02.run(Preset.load("smoke", data_root=str(data), runs_root=str(mixes)))
        for k, case in enumerate(CASES):
            tmp = Path(base) / f"case{k}"
            (tmp / "runs/smoke").mkdir(parents=True)
            (tmp / "runs/smoke/02_mix_rejection_data").symlink_to(mixes / "smoke/02_mix_rejection_data")
            os.chdir(tmp)
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = case.cli(case.make(tmp, data, tmp / "runs"))
                except SystemExit as e:
                    code = e.code
            message = normalized(err.getvalue(), tmp).replace(str(data), "<data>").replace(str(mixes), "<runs>")
            message = message.replace(str(REPO), "<repo>")
            rows.append(f"| {case.name} | {code} | `{message.replace('|', '/')}` |")
    head = (
        "# Bad input: what each CLI says\n\nEvery case below is a test (`tests/test_bad_inputs.py`): the exit status,"
        " and the first line of what the command prints (paths of the test's temporary folder shown as <tmp>). "
        "Expected errors never print a traceback and leave no output behind; a bug keeps its traceback.\n\n"
        "Accepted on purpose, each held by a test below the table's cases: a UTF-8 byte-order mark (skipped), a 16-bit "
        "image (scaled to 8 bits by its brightest value, where PIL's own conversion clips it to white), a `.jsonl` "
        "question whose `image` lists several paths (a multi-image item), and `missing_images: skip` in a benchmark's "
        "entry (items with a missing or unusable image left out and counted, never all of them).\n\n"
        "| case | exit | message (first line) |\n|---|---|---|\n"
    )
    (REPO / "docs" / "bad-inputs.md").write_text(head + "\n".join(rows) + "\n", encoding="utf-8")


if __name__ == "__main__":  # regenerate docs/bad-inputs.md after adding a case
    write_docs()
