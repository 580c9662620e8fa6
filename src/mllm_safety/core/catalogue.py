"""The benchmark catalogue: one entry per benchmark key (the name results.csv carries), saying what it measures,
how it is labelled, which of stage 05's key-metric columns it fills and which figures draw it. The tables and
figures read their lists of benchmarks from here, so adding a benchmark is one `register(Benchmark(...))` plus
its loader (core.benchmarks.LOADERS); docs/extending.md walks through it. Pure data: no torch, no stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Benchmark:
    """One benchmark key and everything the tables and figures need to know about it."""

    key: str  # e.g. mm_safetybench_typo: the loader's key, plus the mode/subset/split (core.benchmarks)
    kind: Literal["attack", "benign", "utility"]  # harmful prompts (ASR), benign prompts (over-refusal), utility
    label: str = ""  # for tables and figures; "" = the key itself
    column: str = ""  # stage 05's key-metric column ("ASR typo"); "" = not a key metric
    paper_beside: bool = False  # the column is also reported under the paper's string match
    figures: tuple[str, ...] = ()  # "attacks": the safety figures; "mis": the two-image panel
    figure_label: str = ""  # the label in a figure panel, where it differs from `label`

    @property
    def metric(self) -> str:
        """What the key metric counts: attack success, refusals of benign prompts, or accuracy."""
        return {"attack": "asr", "benign": "refusal_rate", "utility": "accuracy"}[self.kind]


_ENTRIES: dict[str, Benchmark] = {}


def register(benchmark: Benchmark) -> Benchmark:
    """Add (or replace) a catalogue entry; the order of registration is the order of columns and legends."""
    _ENTRIES[benchmark.key] = benchmark
    return benchmark


def entries() -> list[Benchmark]:
    """Every entry, in registration order."""
    return list(_ENTRIES.values())


def benchmark_label(key: str) -> str:
    """A benchmark key's label ('MM-SafetyBench SD+TYPO'); unknown keys stay as they are."""
    entry = _ENTRIES.get(key)
    return entry.label if entry and entry.label else key


def key_metrics() -> list[tuple[str, str, str]]:
    """(column, benchmark key, metric) of every key metric that stage 05 reports per study row."""
    return [(b.column, b.key, b.metric) for b in entries() if b.column]


def paper_beside() -> list[str]:
    """The key-metric columns that are also reported under the paper's string match."""
    return [b.column for b in entries() if b.column and b.paper_beside]


def in_figure(figure: str) -> list[Benchmark]:
    """The entries a figure draws, in catalogue order."""
    return [b for b in entries() if figure in b.figures]


MMSB = "MM-SafetyBench"
for _entry in (  # the order of stage 05's columns and of the figures' legends
    Benchmark("mm_safetybench_typo", "attack", f"{MMSB} TYPO", "ASR typo", True, ("attacks",)),
    Benchmark("mm_safetybench_sd_typo", "attack", f"{MMSB} SD+TYPO", "ASR sd_typo", figures=("attacks",)),
    Benchmark("mm_safetybench_sd", "attack", f"{MMSB} SD", "ASR sd", figures=("attacks",)),
    Benchmark("mm_safetybench_text", "attack", f"{MMSB} text", "ASR text", figures=("attacks",)),
    Benchmark("figstep", "attack", "FigStep", "ASR figstep", figures=("attacks",)),
    Benchmark("vlguard_test_unsafes", "attack", "VLGuard unsafe", "ASR vlguard", figures=("attacks",)),
    Benchmark("mm_safetybench_plain_typo", "attack", "harmful topics, training template", "ASR plain"),
    Benchmark("mm_safetybench_medical_typo", "attack", "harmful topics, medical-style question", "ASR medical"),
    Benchmark("mis_easy", "attack", "MIS easy", "ASR mis easy", True, ("mis",), "MIS easy: ASR"),
    Benchmark("mis_hard", "attack", "MIS hard", "ASR mis hard", True, ("mis",), "MIS hard: ASR"),
    Benchmark("xstest", "benign", "XSTest", "over-refusal xstest"),
    Benchmark("vlguard_test_safe_safes", "benign", "VLGuard safe", "over-refusal vlguard safe"),
    Benchmark("mm_safetybench_benign_typo", "benign", "benign topics, attack layout", "over-refusal benign typo", True),
    Benchmark(
        "mm_safetybench_benign_plain_typo", "benign", "benign topics, training template", "over-refusal benign plain"
    ),
    Benchmark(
        "mm_safetybench_benign_medical_typo",
        "benign",
        "benign topics, medical-style question",
        "over-refusal benign medical",
    ),
    Benchmark(
        "mis_benign_hard",
        "benign",
        "MIS benign pairs (hard layout)",
        "over-refusal mis benign",
        figures=("mis",),
        figure_label="benign pairs: refused",
    ),
    Benchmark("scienceqa_mini", "utility", "multiple choice (utility)", "utility MC"),
    Benchmark("captions_mini", "utility", "captions (utility)", "utility captions"),
    Benchmark("scienceqa_img", "utility", "ScienceQA (images)", "utility ScienceQA"),
    Benchmark("vizwiz", "utility", "VizWiz"),  # stage 04's utility table; no stage-05 column yet
    Benchmark("vlguard_test_safe_unsafes", "attack", "VLGuard safe image, unsafe ask"),
):
    register(_entry)
