"""The conformance matrix: every model family this toolkit claims, checked through the toolkit's own stage-03
and stage-04 code on a replica (real tokenizer, template and processor; tiny random weights).

Columns: the processor loads; LoRA sits on the language model only; the connector is found; labels of a
single-turn, a multi-turn and a rejection record train exactly the answers and the family's end of turn (decoded
and compared); a mixture with text-only and multi-turn records loses no record; NF4 training runs with a finite,
falling loss; the adapter saves and reloads to the same outputs; batched greedy generation equals one item at a
time; two images go into one prompt; the stage-03 path matches plain transformers (ids, every processor tensor,
the loss) on replicas of varied shape settings (`tools.differential`, the number drawn in the cell). A family that
cannot pass a column says why.
CLI: `python -m mllm_safety.tools.conformance [families] --out docs/conformance.md`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.benchmarks import EvalItem
from ..core.files import DataFormatError, write_text
from ..core.modeling import UNSUPPORTED as MODEL_UNSUPPORTED
from ..core.vocabulary import DEFAULT_REPLY

# family -> the text that ends an assistant turn in its chat template (the EOS where the template writes none)
END_OF_TURN = {
    "llava-1.5": "</s>",
    "llava-next": "</s>",
    "qwen2-vl": "<|im_end|>\n",
    "qwen2.5-vl": "<|im_end|>\n",
    "internvl": "<|im_end|>\n",
    "llava-onevision": "<|im_end|>\n",
    "gemma3": "<end_of_turn>\n",
    "idefics3": "<end_of_utterance>\n",
    "smolvlm": "<end_of_utterance>\n",
    "mllama": "<|eot_id|>",
    "paligemma": "",
}
UNSUPPORTED = {"paligemma": MODEL_UNSUPPORTED["paligemma"]}  # family -> why (core.modeling refuses the model type)
COLUMNS = (
    "processor",
    "lora",
    "connector",
    "labels",
    "no_skips",
    "training",
    "adapter",
    "batched",
    "two_images",
    "differential",
)
HEADERS = {"differential": "matches plain transformers on varied configurations"}  # column -> its header
IMAGE_SIZE = (224, 224)


@dataclass
class Row:
    """One family's results: column -> "ok" or what went wrong."""

    family: str
    cells: dict[str, str] = field(default_factory=dict)
    configurations: int = 0  # shape settings the differential column drew

    def passed(self) -> bool:
        return all(self.cells.get(c) == "ok" for c in COLUMNS)


def record(rid: str, pairs: list[tuple[str, str]], images: int = 1, rejection: bool = False) -> dict[str, Any]:
    """A LLaVA json record with `images` image tags in its first question."""
    conv = []
    for k, (q, a) in enumerate(pairs):
        tags = "<image>\n" * images if k == 0 else ""
        answer = {"from": "gpt", "value": a, **({"rejection": True} if rejection else {})}
        conv += [{"from": "human", "value": tags + q}, answer]
    rec: dict[str, Any] = {"id": rid, "conversations": conv, **({"rejection": True} if rejection else {})}
    if images:
        rec["image"] = "a.png" if images == 1 else ["a.png", "b.png"][:images]
    return rec


REJECTION = DEFAULT_REPLY
RECORDS = {
    "single": (record("s", [("What is in the picture?", "A red square.")]), ["A red square."]),
    "multi": (
        record("m", [("What is in the picture?", "A red square."), ("And its colour?", "Red.")]),
        ["A red square.", "Red."],
    ),
    "rejection": (record("r", [("What is in the picture?", REJECTION)], rejection=True), []),
}


def squeeze(text: str) -> str:
    return "".join(text.split())


class Checker:
    """Runs the columns for one replica folder (the model loaded in NF4 once, shared by the checks)."""

    def __init__(self, family: str, path: Path, images: Path):
        from ..core.modeling import load_model

        self.family, self.path, self.images = family, path, images
        self.model, self.processor = load_model(path, "nf4")

    def encoder(self) -> Any:
        from ..core.labels import Encoder

        return Encoder(self.processor, "chat_template", self.images, max_length=16384)

    def processor_loads(self) -> str:
        return "ok" if self.processor.chat_template else "no chat template"

    def lora(self) -> str:
        from ..core.modeling import add_lora, find_parts

        parts = find_parts(self.model)
        self.peft = add_lora(self.model, 8, 16, 0.0, train_projector=True, gradient_checkpointing=False)
        names = [n for n, _ in self.peft.named_modules() if n.endswith("lora_A")]
        outside = [n for n in names if f".{parts.decoder}." not in f".{n}"]
        return "ok" if names and not outside else f"LoRA outside the language model: {outside[:2]}"

    def connector(self) -> str:
        from ..core.modeling import find_parts

        parts = find_parts(self.model)
        trainable = [n for n, p in self.peft.named_parameters() if p.requires_grad and "lora_" not in n]
        found = parts.connectors and all(any(c.split(".")[-1] in n for n in trainable) for c in parts.connectors)
        return "ok" if found else f"connector not found or not trained ({parts.connectors})"

    def labels(self) -> str:
        from ..core.labels import IGNORE_INDEX

        eot = END_OF_TURN[self.family]
        for kind, (rec, answers) in RECORDS.items():
            sample = self.encoder().encode(rec)
            trained = self.processor.tokenizer.decode(sample["input_ids"][sample["labels"] != IGNORE_INDEX])
            expected = "".join(a + eot for a in answers) if answers else REJECTION  # rejection: its end masked
            if squeeze(trained) != squeeze(expected):
                return f"{kind}: trained {trained!r}, expected {expected!r}"
        return "ok"

    def mixture(self) -> list[dict[str, Any]]:
        text_only = record("t", [("Say hello.", "Hello.")], images=0)
        return [rec for rec, _ in RECORDS.values()] + [text_only]

    def no_skips(self) -> str:
        from ..core.labels import SampleSkipped

        skipped = []
        for rec in self.mixture():
            try:
                self.encoder().encode(rec)
            except SampleSkipped as e:
                skipped.append(f"{rec['id']}: {e.reason}")
        return "ok" if not skipped else f"skipped {skipped}"

    def training(self, steps: int = 4) -> str:
        import torch

        from ..core.labels import Collator

        samples = [self.encoder().encode(r) for r in self.mixture()[:2]]  # two image records: one modality
        batch = Collator(self.processor.tokenizer.pad_token_id)(samples)
        trainable = [p for p in self.peft.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=5e-3)
        self.peft.train()
        losses = []
        for _ in range(steps):
            loss = self.peft(**batch).loss
            loss.backward()
            opt.step()
            opt.zero_grad()
            losses.append(float(loss.detach()))
        finite = all(torch.isfinite(torch.tensor(losses)))
        return "ok" if finite and losses[-1] < losses[0] else f"losses {[round(x, 3) for x in losses]}"

    def adapter(self) -> str:
        import torch
        from peft import PeftModel

        from ..core.labels import Collator
        from ..core.modeling import load_base

        batch = Collator(self.processor.tokenizer.pad_token_id)([self.encoder().encode(self.mixture()[0])])
        self.peft.eval()
        with torch.no_grad():
            before = self.peft(**batch).logits
        with tempfile.TemporaryDirectory() as tmp:
            self.peft.save_pretrained(tmp)
            reloaded = PeftModel.from_pretrained(load_base(self.path, "nf4"), tmp).eval()
            with torch.no_grad():
                after = reloaded(**batch).logits
        return "ok" if torch.allclose(before, after, atol=1e-4, rtol=1e-3) else "reloaded outputs differ"

    def items(self) -> list[EvalItem]:
        image = str(self.images / "a.png")
        return [
            EvalItem("a", "c", "c", "What is in the picture?", image, False),
            EvalItem("b", "c", "c", "Describe the picture in detail, please.", str(self.images / "b.png"), False),
            EvalItem("c", "c", "c", "Say hello.", None, False),
        ]

    def batched(self) -> str:
        from ..core.generation import Decoding, generate_batch

        model = self.peft if hasattr(self, "peft") else self.model
        model.eval()
        decoding = Decoding(max_new_tokens=6)
        together = generate_batch(model, self.processor, self.items(), "chat_template", decoding)
        alone = [generate_batch(model, self.processor, [it], "chat_template", decoding)[0] for it in self.items()]
        return "ok" if together == alone else f"batched {together} vs alone {alone}"

    def two_images(self) -> str:
        from ..core.generation import Decoding, generate_batch

        pair = [str(self.images / "a.png"), str(self.images / "b.png")]
        item = EvalItem("p", "c", "c", "Compare the first and the second image.", pair, False)
        model = self.peft if hasattr(self, "peft") else self.model
        generate_batch(model.eval(), self.processor, [item], "chat_template", Decoding(max_new_tokens=3))
        return "ok"

    def differential(self) -> str:
        from .differential import check_family

        outcome = check_family(self.family)
        self.configurations = len(outcome.settings)
        problems = outcome.problems
        return "ok" if not problems else f"{len(problems)} disagreement(s) with plain transformers: {problems[0]}"


CHECKS: dict[str, Callable[[Checker], str]] = {
    "processor": Checker.processor_loads,
    "lora": Checker.lora,
    "connector": Checker.connector,
    "labels": Checker.labels,
    "no_skips": Checker.no_skips,
    "training": Checker.training,
    "adapter": Checker.adapter,
    "batched": Checker.batched,
    "two_images": Checker.two_images,
    "differential": Checker.differential,
}


def write_images(folder: Path) -> Path:
    """Two small images the checks show the models."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", IMAGE_SIZE, (200, 30, 30)).save(folder / "a.png")
    Image.new("RGB", (IMAGE_SIZE[0], IMAGE_SIZE[1] // 2), (30, 30, 200)).save(folder / "b.png")
    return folder


def check_family(family: str, work: Path) -> Row:
    """Build the family's replica and run every column; an exception in a column is that column's result."""
    from .replicas import build_replica

    row = Row(family)
    path = build_replica(family, work / family)
    if family in UNSUPPORTED:
        try:
            Checker(family, path, work)
        except DataFormatError as e:  # the toolkit must refuse it before loading, naming the family
            row.cells = dict.fromkeys(COLUMNS, f"not supported (refused: {str(e)[:80]}...)")
            return row
        row.cells = dict.fromkeys(COLUMNS, "not supported, yet loaded without an error")
        return row
    checker = Checker(family, path, write_images(work / "images"))
    for column, check in CHECKS.items():
        try:
            row.cells[column] = check(checker)
        except Exception as e:  # a conformance cell reports any failure: that is its purpose
            row.cells[column] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}"
    row.configurations = getattr(checker, "configurations", 0)
    return row


def markdown(rows: list[Row]) -> str:
    """The matrix as a markdown table, with the reasons of every cell that is not ok below it."""
    from .families import FAMILIES
    from .replicas import REPLICAS

    title = (
        "# Conformance matrix\n\nEvery family's replica through stage 03 and stage 04 code (`tools.conformance`; "
        "regenerate with `python -m mllm_safety.tools.conformance --out docs/conformance.md`; `make test` fails when "
        "this page is not what a run produces). Columns: " + ", ".join(COLUMNS) + " (see docs/models.md).\n\n"
    )
    names = [HEADERS.get(c, c) for c in COLUMNS]
    head = title + "| family | stands for | " + " | ".join(names) + " |\n|---|---|" + "---|" * len(COLUMNS) + "\n"
    lines, notes = [], []
    for row in rows:
        checkpoint = REPLICAS[row.family].checkpoint if row.family in REPLICAS else FAMILIES[row.family][0]
        unsupported = row.family in UNSUPPORTED
        cells = ["n/a" if unsupported else "✓" if row.cells[c] == "ok" else "✗" for c in COLUMNS]
        if not unsupported:  # how many shape settings the differential column drew
            plural = "s" if row.configurations != 1 else ""
            cells[COLUMNS.index("differential")] += f" ({row.configurations} configuration{plural})"
        lines.append(f"| {row.family} | `{checkpoint}` | " + " | ".join(cells) + " |")
        if not unsupported:
            notes += [f"- {row.family}, {c}: {row.cells[c]}" for c in COLUMNS if row.cells[c] != "ok"]
    why = [f"- {f} (n/a): {reason}." for f, reason in UNSUPPORTED.items() if any(r.family == f for r in rows)]
    notes = notes + why
    return head + "\n".join(lines) + "\n" + ("\nWhere a cell is not ✓:\n\n" + "\n".join(notes) + "\n" if notes else "")


def main(argv: list[str] | None = None) -> int:
    """CLI: run the matrix and print (or write) the table."""
    from .families import FAMILIES
    from .replicas import REPLICAS

    p = argparse.ArgumentParser(prog="python -m mllm_safety.tools.conformance", description=__doc__)
    p.add_argument("families", nargs="*", default=[*REPLICAS, *FAMILIES])
    p.add_argument("--out", help="write the table to this file")
    args = p.parse_args(argv)
    unknown = [f for f in args.families if f not in END_OF_TURN]
    if unknown:
        raise DataFormatError(f"unknown families {unknown}; choose from {list(END_OF_TURN)}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [check_family(f, Path(tmp)) for f in args.families]
    table = markdown(rows)
    if args.out:
        write_text(args.out, table)
    print(table)
    return 0 if all(r.passed() or r.family in UNSUPPORTED for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
