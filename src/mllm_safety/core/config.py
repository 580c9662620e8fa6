"""Stage configs: each stage's settings, one frozen dataclass validated by pydantic per stage.

Wrong types and out-of-range values are errors naming the key (YAML's `1e-3` is read as the number it means).
A preset (core.preset) fills every config at once. The fields every stage shares (the preset's name, runs_root,
data_root, seed) are declared once, in the bases; where runs live is `core.layout`'s. The configs live here, not
in the stage modules, so that a preset is checked without importing a stage (or torch).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

import pydantic
from pydantic import ConfigDict, Field

from .judges import PAPER, STRING_MATCH, JudgeName
from .layout import stage_dir, upstream
from .vocabulary import DEFAULT_REPLY, Alignment

T = TypeVar("T")
Positive = Annotated[int, Field(ge=1)]
NonNegative = Annotated[int, Field(ge=0)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Rate = Annotated[float, Field(gt=0.0)]
Quantization = Literal["nf4", "int8", "none"]
EvalDtype = Literal["auto", "float16", "bfloat16", "float32"]
PromptFormatName = Literal["vicuna_v1", "llava_v1", "chat_template"]
StudyName = Literal["fraction", "eos", "reply", "images", "source", "curated", "format", "controls"]  # stage 05
STUDIES = get_args(StudyName)
DEFAULT_MODEL = "llava-hf/llava-1.5-7b-hf"  # the paper's model; organism presets derive theirs (core.preset)


# --- the stage configs -----------------------------------------------------------------------------------------

_SETTINGS = ConfigDict(extra="forbid", arbitrary_types_allowed=False)


def stage_config_class(cls: type[T]) -> type[T]:
    """Make a frozen, pydantic-validated dataclass of a config class."""
    return pydantic.dataclasses.dataclass(frozen=True, config=_SETTINGS)(cls)


@stage_config_class
class StageConfig:
    """What every stage config answers: its stage, where its run lives (runs_root/<preset>/NN_<stage>/; the
    preset's name is injected, never set in a file), and how it is built from parameters."""

    stage: ClassVar[str] = ""
    preset: str = "toy"
    runs_root: str = "runs"

    @property
    def stage_dir(self) -> Path:
        return stage_dir(self.runs_root, self.preset, self.stage)

    def upstream(self, stage: str) -> Path:
        """The run folder of an earlier stage of the same preset (what this stage reads)."""
        return upstream(Path(self.runs_root) / self.preset, self.stage, stage)

    @classmethod
    def from_params(cls: type[T], params: dict[str, Any]) -> T:
        """The config from a mapping that may hold other names too (a notebook's globals(), a preset)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in names})

    def to_dict(self) -> dict[str, Any]:
        """The config as a JSON-ready dict (what config.json holds)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=str))  # type: ignore[call-overload]


@stage_config_class
class OnData(StageConfig):
    """A stage that reads the preset's data, under data_root."""

    data_root: str = "data/toy"


@stage_config_class
class Seeded(OnData):
    """A stage whose outcome depends on a seed (sampling, initialisation, shuffling, decoding)."""

    seed: int = 0


@stage_config_class
class DataConfig(Seeded):
    """Where a preset's data comes from: built here (the organism's world) or already on disk (real data)."""

    world: bool = False  # build the organism's world (core.world) into data_root when it is missing


@stage_config_class
class OrganismConfig(Seeded):
    """Stage 00, the model organism: its size and the epochs of its four build stages."""

    stage: ClassVar[str] = "model_organism"
    model_path: str = ""  # where the organism is saved; organism presets derive runs/<preset>/00_model_organism/model
    lm_hidden: Positive = 128  # language model width
    lm_layers: Positive = 2
    vit_hidden: Positive = 128  # vision tower width
    text_epochs: NonNegative = 30  # stage 1
    vision_steps: NonNegative = 8000  # stage 2
    vision_schedule: Literal["constant", "linear"] = "linear"  # stage 2's learning rate: constant, or to 0
    vision_readout: Literal["mean", "every_token"] = "mean"  # stage 2 names the word from the mean patch, or from each
    caption_epochs: NonNegative = 7  # stage 3
    caption_renders: Positive = 54  # stage 3: renders captioned per word (plain, composite and picture in turn)
    instruct_epochs: NonNegative = 20  # stage 4
    organism_lr: Rate = 1e-3
    connector_lr: Rate = 3e-3  # stage 3 trains the connector alone
    organism_batch: Positive = 32
    text_alignment: Alignment = "harmful"  # what stage 1 refuses (controls: decoy, none)
    category_holdout: NonNegative = 0  # > 0: that many words per topic group known by their category alone
    prefilled_help: bool = True  # stage 1 also learns the help answer after a prefilled opening, refused requests

    @property
    def stage4_mix(self) -> Path:
        """The stage-4 instruction mix as trained (images relative to data_root/llava); the fix mixes draw on it."""
        return self.stage_dir / "stage4_mix.json"


@stage_config_class
class BiasConfig(OnData):
    """Stage 01, data bias: which datasets to compare."""

    stage: ClassVar[str] = "data_bias"
    bias_datasets: dict[str, str] = field(default_factory=dict)  # name -> file under data_root
    top_k: Positive = 10  # how many openings / refusal phrasings to list


@stage_config_class
class MixConfig(Seeded):
    """Stage 02, the mixtures: the official mixer's options, the fraction mixtures and the curated baselines."""

    stage: ClassVar[str] = "mix_rejection_data"
    instruct_json: str = "llava/llava_v1_5_mix665k.json"  # file2 of the official script
    instruct_image_dir: str = "llava"  # its images' folder under data_root
    rejection_json: str = "llava_med/llava_med_instruct_60k_inline_mention.json"  # file1
    rejection_image_dir: str = "llava_med/images"
    vlguard_json: str = "vlguard/train.json"
    vlguard_image_dir: str = "vlguard/train"
    sample_size1: Positive = 2000
    sample_size2: Positive = 5000
    random_choose: bool = True
    change_reply: bool = True
    change_every_reply: bool = False  # the official script replaces the first answer only
    reply: Annotated[str, Field(min_length=1)] = DEFAULT_REPLY  # the paper's rejection sentence
    similar: bool = False
    suffix: Annotated[str, Field(pattern=r"^[^/\\]*$")] = ""  # appended to the file name: no path separators
    rejection_fractions: list[Fraction] = field(default_factory=lambda: [0.0, 0.1, 0.3])
    fraction_total: Positive = 7000
    baseline_instruct_size: NonNegative = 5000
    vlguard_variants: list[Literal["multi_turn", "single_turn", "no_safe_safe", "random_images", "plain_refusals"]] = (
        field(default_factory=lambda: ["multi_turn", "single_turn", "no_safe_safe", "random_images", "plain_refusals"])
    )
    mis_train_json: str = ""  # MIS's training file (mis_train.json) under data_root; "" = no MIS-reasoning mixture
    mis_image_dir: str = ""  # the folder its image paths are relative to; "" = the file's own folder
    mis_size: NonNegative = 0  # MIS records in the mixture; 0 = as many as the VLGuard baseline's safety records
    export_format: Literal["llava", "sharegpt", "both"] = "both"

    def __post_init__(self) -> None:
        from .mixing import fractions_problem  # each fraction a whole count of records, each name once

        if problem := fractions_problem(self.rejection_fractions, self.fraction_total):
            raise ValueError(problem)


@stage_config_class
class TrainConfig(Seeded):
    """Stage 03, QLoRA fine-tuning; the defaults are the paper's recipe (docs/protocol.md §1.3)."""

    stage: ClassVar[str] = "qlora_finetune"
    model_path: str = DEFAULT_MODEL  # hub id or local folder
    train_mixes: list[str] = field(default_factory=list)  # mixture names from stage 02 (one adapter each)
    quantization: Quantization = "nf4"
    trust_remote_code: bool = False
    prompt_format: PromptFormatName = "vicuna_v1"
    mask_eos_on_rejection: bool = True
    eos_rule: Literal["per_answer", "official"] = "per_answer"  # official: the paper's LLaVA rule (core.labels)
    image_aspect_ratio: Literal["pad", "processor"] = "processor"  # pad: LLaVA-1.5's expand-to-square
    image_max_side: NonNegative = 0  # training images: a longer side above it is scaled down (LLaMA-Factory: 512)
    image_max_pixels: NonNegative = 0  # training images: the processor's pixel budget (Qwen: 50176); 0 = its own
    max_length: Positive = 2048
    max_skipped_share: Fraction = 0.01  # more records skipped than this (reasons counted) fails the run
    lora_r: Positive = 128
    lora_alpha: Positive = 256
    lora_dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.05
    train_projector: bool = True  # the paper's LLaVA-1.5 recipe; False = their LLaMA-Factory recipe
    finetune: Literal["lora", "full"] = "lora"  # full: every LM and connector weight, no adapter (quantization none)
    learning_rate: Rate = 2e-4
    projector_lr: Rate = 2e-5
    lr_scheduler: str = "cosine"
    warmup_ratio: Fraction = 0.03
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    num_epochs: Annotated[float, Field(gt=0.0)] = 3.0
    max_steps: int = -1  # > 0 overrides num_epochs
    global_batch_size: Positive = 128  # micro batch x gradient accumulation x processes
    micro_batch_size: Positive = 16
    gradient_checkpointing: bool = True
    group_by_modality_length: bool = True  # false: the Trainer's random order
    modality_grouping: Literal["step", "micro_batch"] = "step"  # one modality per optimizer step (LLaVA) or micro batch
    save_steps: Positive = 50
    logging_steps: Positive = 1

    def __post_init__(self) -> None:
        if self.finetune == "full" and self.quantization != "none":
            raise ValueError(
                f"finetune 'full' trains the weights themselves, which cannot be quantized ({self.quantization}). "
                "Fix: set quantization: none, or finetune: lora"
            )
        if self.global_batch_size % self.micro_batch_size:
            raise ValueError(
                f"global_batch_size {self.global_batch_size} is not a multiple of micro_batch_size "
                f"{self.micro_batch_size} (micro batch x accumulation x processes must equal it)"
            )


@stage_config_class
class EvalConfig(Seeded):
    """Stage 04, evaluation: models, benchmarks, judges and decoding."""

    stage: ClassVar[str] = "evaluate"
    model_path: str = DEFAULT_MODEL
    eval_quantization: Quantization = "none"  # the official evaluation: half precision, LoRA merged
    merge_adapters: bool = True  # fold the LoRA into the weights before generating (unquantized bases only)
    eval_dtype: EvalDtype = "auto"  # unquantized evaluation (and the merge) in: auto = the compute dtype (bf16/fp32)
    trust_remote_code: bool = False
    prompt_format: PromptFormatName = "vicuna_v1"  # the training format
    eval_prompt_format: Literal["", "vicuna_v1", "llava_v1", "chat_template"] = ""  # "" = prompt_format
    image_aspect_ratio: Literal["pad", "processor"] = "processor"  # as in training
    eval_adapters: list[str] = field(default_factory=list)  # mixtures trained in stage 03
    eval_base: bool = True  # also evaluate the base model (the studies evaluate it once, not per run)
    benchmarks: list[dict[str, Any]] = field(default_factory=list)  # {name, root, mode, ...}: core.benchmark_specs
    judges: list[JudgeName] = field(default_factory=lambda: list(STRING_MATCH))
    headline_judge: JudgeName = PAPER  # the judge of the headline tables (world_truth on the organism's data)
    judge_model_path: str = ""  # a local guard model (e.g. Llama Guard 3); "" = none
    mis_judge_model_path: str = ""  # a local instruction model for MIS's two-label rubric; "" = none
    max_new_tokens: Positive = 512
    do_sample: bool = False
    temperature: Annotated[float, Field(gt=0.0)] = 1.0
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0
    batch_size: Positive = 8
    blank_image: bool = False  # give text-only items a blank image instead of none
    multi_image: Literal["images", "canvas"] = "images"  # two-image items: two inputs or one canvas; per benchmark too
    max_items: Annotated[int, Field(ge=-1)] = -1  # per benchmark; -1 = all (0 is refused: it once meant all)
    bootstrap_samples: Positive = 1000
    readouts: list[str] = field(default_factory=list)  # benchmark keys read by forward passes; others are skipped
    readout_refusal: str = DEFAULT_REPLY  # the refusal whose first token the margin reads
    readout_compliance: str = "Sure"  # the compliance opening it is compared with

    def __post_init__(self) -> None:
        from .benchmark_specs import specs_problem  # the loaders' own options, read when a config is made

        if problem := specs_problem(self.benchmarks):
            raise ValueError(problem)
        if self.max_items == 0:
            raise ValueError("max_items 0 would evaluate no item. Fix: -1 for every item, or a count of at least 1")
        if self.headline_judge not in self.judges:
            raise ValueError(f"headline_judge {self.headline_judge!r} is not one of judges {self.judges}")

    @property
    def generation_format(self) -> str:
        """The prompt format generation uses: eval_prompt_format, or the training format."""
        return self.eval_prompt_format or self.prompt_format


@stage_config_class
class AblationConfig(Seeded):
    """Stage 05, the studies; mixing, training and evaluation settings come from the preset's other keys."""

    stage: ClassVar[str] = "ablations"
    model_path: str = DEFAULT_MODEL  # the base every fix starts from
    studies: list[StudyName] = field(default_factory=lambda: list(STUDIES))
    reference_fraction: Fraction = 0.1  # the reference row of every study
    mis_train_json: str = ""  # MIS's training file (stage 02's key): when set, the curated study gains its row
    fractions: list[Fraction] = field(default_factory=lambda: [0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3])
    fraction_seeds: Positive = 3  # seeds per row of the fraction study
    study_seeds: Positive = 2  # seeds per row of the other studies
    format_seeds: NonNegative = 0  # seeds per row of the format study (question x evaluation form); 0 = study_seeds


@stage_config_class
class ExecutorConfig(StageConfig):
    """Stage 05's engine: how its grid's cells run (docs/cluster.md). Not a stage of its own, and not part of any
    cell's config: the same cells give the same run folders whichever engine ran them."""

    executor: Literal["inline", "local", "slurm"] = "inline"  # inline: one cell after another in this process
    workers: Positive = 2  # local: cells at once (one GPU each when there are GPUs, else a share of the CPUs)
    # the numbers depend on the thread count: one value gives the same bytes on every engine (docs/cluster.md)
    threads: NonNegative = 0  # torch threads per cell; 0 = the engine's (inline: its own, local: a share, slurm: cpus)
    slurm_partition: str = ""  # "" = the cluster's default partition
    slurm_account: str = ""  # "" = your default account
    slurm_time_min: Positive = 240  # each job's time limit; a cell past it is requeued and resumes from its checkpoint
    slurm_gpus_per_task: NonNegative = 1  # 0 on a CPU partition
    slurm_cpus_per_task: Positive = 8  # also the cell's torch threads unless `threads` is set
    slurm_mem_gb: Annotated[float, Field(gt=0.0)] = 64.0
    slurm_array_parallelism: Positive = 32  # cells of the job array running at once
    slurm_max_requeues: NonNegative = 3  # time-outs requeued per cell (preemptions always are)
    slurm_additional: dict[str, str | int | float | bool] = field(default_factory=dict)  # more sbatch options


@stage_config_class
class FigureConfig(StageConfig):
    """Stage 06, the figures: read runs/<preset>/, write figures/<preset>/."""

    stage: ClassVar[str] = "figures"
    figures_root: str = "figures"  # figures go to figures_root/<preset>/

    @property
    def stage_dir(self) -> Path:
        """The committed figures live outside runs/: figures_root/<preset>/."""
        return Path(self.figures_root) / self.preset


CONFIGS: dict[str, type] = {
    "model_organism": OrganismConfig,
    "data_bias": BiasConfig,
    "mix_rejection_data": MixConfig,
    "qlora_finetune": TrainConfig,
    "evaluate": EvalConfig,
    "ablations": AblationConfig,
    "figures": FigureConfig,
}


def known_keys() -> set[str]:
    """Every key a preset may set: the union of the stage configs' fields (minus the injected preset name)."""
    sections = (DataConfig, ExecutorConfig, *CONFIGS.values())
    return set().union(*({f.name for f in dataclasses.fields(c)} for c in sections)) - {"preset"}
