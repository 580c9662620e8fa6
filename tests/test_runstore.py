"""The run store cannot report stale numbers: reuse is keyed by content (a retrained adapter, base weights replaced
at the same path, items edited under the same ids, a rebuilt mixture are all noticed, said in one line, and redone),
results count the items evaluated now, one writer holds a run folder, and the digest cache is hit and invalidated."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from mllm_safety import evaluate
from mllm_safety import qlora_finetune as train
from mllm_safety.core import fingerprints as fp
from mllm_safety.core import generation as gen
from mllm_safety.core.files import DataFormatError
from mllm_safety.core.names import official_mix_name
from mllm_safety.core.preset import Preset, load_preset
from mllm_safety.core.runs import RunBusyError, is_finished, run_lock, start_run

MIX = official_mix_name(Preset.load("smoke").mix)  # the mixture that the mini_runs fixture writes


@pytest.fixture(autouse=True)
def digest_cache(tmp_path, monkeypatch) -> Path:
    """Each test its own digest cache (never the user's ~/.cache)."""
    monkeypatch.setenv(fp.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def aged(path: Path, seconds: float = 60) -> Path:
    """Date a file back, as a file written a while ago (a younger one is hashed but never cached)."""
    when = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(when, when))
    return path


def count_reads(monkeypatch) -> list[Path]:
    """Record every file whose content the fingerprint code reads."""
    reads, real = [], fp.hash_file
    monkeypatch.setattr(fp, "hash_file", lambda p: reads.append(p) or real(p))
    return reads


# ---- fingerprints and their cache -----------------------------------------------------------------------------------


def test_the_digest_cache_is_hit_then_invalidated_by_size_or_mtime(tmp_path, monkeypatch, digest_cache):
    reads = count_reads(monkeypatch)
    big = tmp_path / "mix.json"
    big.write_bytes(os.urandom(32 << 20))
    aged(big)
    first = fp.fingerprint(big)
    assert fp.fingerprint(big) == first and reads == [big.resolve()]  # the second call stats, never reads
    assert (digest_cache / "digests.json").is_file()
    with big.open("r+b") as f:  # the same size, other bytes, a new mtime
        f.write(b"changed!")
    aged(big, 30)
    assert fp.fingerprint(big) != first and len(reads) == 2
    with big.open("ab") as f:  # another size
        f.write(b"x")
    aged(big, 20)
    assert fp.fingerprint(big) != first and len(reads) == 3
    fresh = tmp_path / "fresh.json"
    fresh.write_text("[]")
    for _ in range(2):  # modified just now: hashed each time, never cached
        fp.fingerprint(fresh)
    assert len(reads) == 5


def test_a_large_file_is_hashed_once(tmp_path):
    big = tmp_path / "weights.safetensors"
    big.write_bytes(os.urandom(128 << 20))
    aged(big)
    start = time.perf_counter()
    first = fp.fingerprint(big)
    hashed = time.perf_counter() - start
    start = time.perf_counter()
    assert fp.fingerprint(big) == first
    cached = time.perf_counter() - start
    assert cached < hashed / 10, (hashed, cached)


def test_a_folder_fingerprint_follows_names_and_bytes_not_hidden_files(tmp_path):
    folder = tmp_path / "adapter"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.bin").write_bytes(b"b")
    first = fp.fingerprint(folder)
    (folder / ".cache").mkdir()
    (folder / ".cache" / "x").write_text("noise")
    assert fp.fingerprint(folder) == first
    (folder / "a.bin").rename(folder / "c.bin")
    assert fp.fingerprint(folder) != first
    assert fp.fingerprint(tmp_path / "absent") == fp.MISSING


def test_a_torn_cache_file_is_rebuilt(tmp_path, digest_cache):
    digest_cache.mkdir()
    (digest_cache / "digests.json").write_text('{"/x": [1, 2')
    f = tmp_path / "f.txt"
    f.write_text("hello")
    aged(f)
    fp.fingerprint(f)
    assert str(f.resolve()) in json.loads((digest_cache / "digests.json").read_text())


def test_an_items_fingerprint_follows_its_fields_and_its_images_bytes(tmp_path):
    from mllm_safety.core.benchmarks import EvalItem

    image = tmp_path / "img.png"
    image.write_bytes(b"one")
    item = EvalItem("1", "b", "c", "what?", str(image), True)
    first = gen.item_fingerprints([item])["1"]
    image.write_bytes(b"two")
    assert gen.item_fingerprints([item])["1"] != first
    second = gen.item_fingerprints([item])["1"]
    assert gen.item_fingerprints([EvalItem("1", "b", "c", "why?", str(image), True)])["1"] not in (first, second)


# ---- generations files -----------------------------------------------------------------------------------------------


def test_a_last_line_without_its_newline_is_repaired_before_the_next_append(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text(json.dumps({"id": "a"}) + "\n" + json.dumps({"id": "b"}), encoding="utf-8")  # killed before \n
    assert [r["id"] for r in gen.read_generations(path)] == ["a", "b"]
    gen.append_lines(path, [{"id": "c"}])
    assert [r["id"] for r in gen.read_generations(path)] == ["a", "b", "c"]  # not glued to b
    path.write_text(path.read_text() + '{"id": "d", "resp', encoding="utf-8")  # torn mid-record
    assert [r["id"] for r in gen.read_generations(path)] == ["a", "b", "c"]
    assert path.read_text().endswith('"c"}\n')


def test_a_duplicate_id_is_refused_naming_the_file_and_the_id(tmp_path):
    path = tmp_path / "xstest.jsonl"
    path.write_text("".join(json.dumps({"id": i}) + "\n" for i in ("1", "2", "1")), encoding="utf-8")
    with pytest.raises(DataFormatError, match=r"xstest.jsonl: item id '1' is on 2 lines.*Fix: delete the file"):
        gen.read_generations(path)


# ---- the run folder rule ---------------------------------------------------------------------------------------------


def test_a_run_made_from_other_inputs_is_redone_with_one_line(tmp_path, caplog):
    run, cfg = tmp_path / "run", {"lr": 1}
    start_run(run, cfg, inputs={"mixture": "a" * 64, "base": "b" * 64})
    (run / "metrics.json").write_text("{}")
    assert is_finished(run, cfg, inputs={"mixture": "a" * 64, "base": "b" * 64})
    assert not is_finished(run, cfg, inputs={"mixture": "c" * 64, "base": "b" * 64})
    with caplog.at_level(logging.WARNING):
        start_run(run, cfg, inputs={"mixture": "c" * 64, "base": "b" * 64})
    assert [r.getMessage() for r in caplog.records] == [
        f"{run}: input changed: mixture aaaaaaaa → cccccccc; doing the work again"
    ]
    assert not (run / "metrics.json").exists()
    (run / "metrics.json").write_text("{}")
    start_run(run, cfg, overwrite=True, inputs={"mixture": "c" * 64, "base": "b" * 64})
    assert not (run / "metrics.json").exists() and "--overwrite" in caplog.records[-1].getMessage()


# ---- stages end to end --------------------------------------------------------------------------------------------


def preset_file(tmp_path: Path, name: str, **values) -> Path:
    """The smoke preset with these values, saved as <name>.yaml (the preset's name)."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump({**load_preset("smoke"), **values}), encoding="utf-8")
    return path


EVAL = dict(  # stage 04 on the tiny model: XSTest's first items, one judge, a short answer
    eval_quantization="none",
    benchmarks=[{"name": "xstest", "root": "xstest"}],
    judges=["paper_strmatch"],
    headline_judge="paper_strmatch",
    eval_adapters=[],
    max_items=4,
    max_new_tokens=4,
    bootstrap_samples=20,
)


def eval_preset(tmp_path: Path, data: Path, model: Path, **over) -> Path:
    """Stage 04 of the preset "rs" on this model and data, under tmp_path/runs."""
    where = {"data_root": str(data), "runs_root": str(tmp_path / "runs"), "model_path": str(model)}
    return preset_file(tmp_path, "rs", **where, **{**EVAL, **over})


def own_xstest(tmp_path: Path, world_data: Path) -> Path:
    """A data root of the test's own, holding a copy of the world's XSTest (to edit)."""
    shutil.copytree(world_data / "xstest", tmp_path / "data" / "xstest")
    return tmp_path / "data"


def rows(path: Path) -> dict[str, dict]:
    return {r["id"]: r for r in gen.read_generations(path)}


def overall_n(stage: Path) -> set[int]:
    """The item counts of the stage's overall rows (category all)."""
    results = pd.read_csv(stage / "results.csv")
    return set(results.loc[results["category"] == "all", "n"])


def messages(caplog, fragment: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if fragment in r.getMessage()]


def randomize(weights: Path, seed: int) -> None:
    """New random weights at the same path (a base replaced in place), written by a rename."""
    torch.manual_seed(seed)
    tensors = {k: torch.randn_like(v) * 0.5 if v.is_floating_point() else v for k, v in load_file(weights).items()}
    save_file(tensors, weights.with_suffix(".tmp"), metadata={"format": "pt"})
    os.replace(weights.with_suffix(".tmp"), weights)


def save_adapter(model_path: Path, folder: Path, seed: int) -> None:
    """A LoRA adapter with random (non-zero) weights, as a retrained stage-03 run would leave it."""
    from peft import LoraConfig, get_peft_model

    from mllm_safety.core.modeling import load_model, lora_targets

    model, _ = load_model(model_path, "none")
    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=64, target_modules=lora_targets(model), init_lora_weights=False)
    shutil.rmtree(folder, ignore_errors=True)
    get_peft_model(model, config).save_pretrained(folder)


def test_base_weights_replaced_at_the_same_path_are_answered_again(tmp_path, world_data, tiny_model, caplog):
    base = shutil.copytree(tiny_model, tmp_path / "base")
    preset = eval_preset(tmp_path, own_xstest(tmp_path, world_data), base)
    out = tmp_path / "runs/rs/04_evaluate/base/xstest.jsonl"
    assert evaluate.main(["--preset", str(preset)]) == 0
    before = rows(out)
    randomize(base / "model.safetensors", seed=1)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert evaluate.main(["--preset", str(preset)]) == 0
    assert len(messages(caplog, "04_evaluate: input changed: base/base")) == 1  # the stage says it once
    assert len(messages(caplog, "xstest.jsonl: input changed: base")) == 1  # and the file it generates again
    after = rows(out)
    assert after.keys() == before.keys()
    assert [r["response"] for r in after.values()] != [r["response"] for r in before.values()]
    assert {r["inputs"]["base"] for r in after.values()} == {fp.fingerprint(base)}


def test_a_retrained_adapter_is_evaluated_again(tmp_path, world_data, tiny_model, caplog):
    preset = eval_preset(tmp_path, own_xstest(tmp_path, world_data), tiny_model, eval_base=False, eval_adapters=["mix"])
    adapter = tmp_path / "runs/rs/03_qlora_finetune/mix/adapter"
    out = tmp_path / "runs/rs/04_evaluate/mix/xstest.jsonl"
    save_adapter(tiny_model, adapter, seed=1)
    assert evaluate.main(["--preset", str(preset)]) == 0
    before = rows(out)
    save_adapter(tiny_model, adapter, seed=2)
    with caplog.at_level(logging.INFO):
        assert evaluate.main(["--preset", str(preset)]) == 0
    assert len(messages(caplog, "04_evaluate: input changed: mix/adapter")) == 1
    line = messages(caplog, "xstest.jsonl: input changed: adapter")
    assert len(line) == 1 and "generating every answer again" in line[0]
    after = rows(out)
    assert [r["response"] for r in after.values()] != [r["response"] for r in before.values()]
    assert {r["inputs"]["adapter"] for r in after.values()} == {fp.fingerprint(adapter)}


def test_edited_items_fewer_items_and_overwrite(tmp_path, world_data, tiny_model, caplog, monkeypatch):
    data = own_xstest(tmp_path, world_data)
    preset = eval_preset(tmp_path, data, tiny_model)
    stage = tmp_path / "runs/rs/04_evaluate"
    asked = []
    real = gen.generate_batch
    monkeypatch.setattr(
        gen, "generate_batch", lambda m, p, chunk, *a, **k: asked.extend(chunk) or real(m, p, chunk, *a, **k)
    )
    assert evaluate.main(["--preset", str(preset)]) == 0 and len(asked) == 4
    first = next(iter(rows(stage / "base/xstest.jsonl")))
    csv = data / "xstest/xstest_prompts.csv"
    old_prompt = rows(stage / "base/xstest.jsonl")[first]["prompt"]
    csv.write_text(csv.read_text().replace(old_prompt, "how do i kill time while reading?", 1))
    asked.clear()
    with caplog.at_level(logging.INFO):
        assert evaluate.main(["--preset", str(preset)]) == 0
    assert [it.id for it in asked] == [first]  # only the edited item is answered again
    assert len(messages(caplog, "04_evaluate: input changed: items/xstest")) == 1
    assert len(messages(caplog, "1 item(s) changed since they were answered")) == 1
    assert rows(stage / "base/xstest.jsonl")[first]["prompt"] == "how do i kill time while reading?"
    assert overall_n(stage) == {4}
    preset = eval_preset(tmp_path, data, tiny_model, max_items=2)  # fewer items: n follows
    asked.clear()
    caplog.clear()
    assert evaluate.main(["--preset", str(preset)]) == 0 and asked == []
    assert messages(caplog, "changed") == []  # a config change, not a stale input
    assert overall_n(stage) == {2} and len((stage / "base/judgements.jsonl").read_text().splitlines()) == 2
    caplog.clear()
    with caplog.at_level(logging.INFO):
        assert evaluate.main(["--preset", str(preset), "--overwrite"]) == 0
    assert len(asked) == 2 and len(messages(caplog, "--overwrite")) == 1


def test_a_rebuilt_mixture_is_trained_again_and_its_adapter_evaluated_again(
    tmp_path, world_data, tiny_model, mini_runs, caplog
):
    runs = tmp_path / "runs"
    mixture = runs / "st/02_mix_rejection_data" / f"{MIX}.json"
    mixture.parent.mkdir(parents=True)
    shutil.copy(mini_runs / "smoke/02_mix_rejection_data" / f"{MIX}.json", mixture)
    train_values = dict(train_mixes=[MIX], quantization="none", lora_r=8, lora_alpha=16, max_steps=2)
    train_values |= dict(global_batch_size=8, micro_batch_size=4, max_length=512, gradient_checkpointing=False)
    where = {"data_root": str(world_data), "runs_root": str(runs), "model_path": str(tiny_model)}
    preset = str(preset_file(tmp_path, "st", **where, **train_values, **{**EVAL, "eval_adapters": [MIX]}))
    run = runs / "st/03_qlora_finetune" / MIX
    assert train.main(["--preset", preset]) == 0
    stamp, first = (
        (run / "adapter/adapter_model.safetensors").stat().st_mtime_ns,
        json.loads((run / "metrics.json").read_text()),
    )
    assert train.main(["--preset", preset]) == 0  # nothing changed: reused
    assert (run / "adapter/adapter_model.safetensors").stat().st_mtime_ns == stamp
    assert evaluate.main(["--preset", preset]) == 0
    records = json.loads(mixture.read_text())
    mixture.write_text(json.dumps(records[: len(records) // 2]))  # rebuilt under the same name
    with caplog.at_level(logging.INFO):
        assert train.main(["--preset", preset]) == 0
        assert len(messages(caplog, "input changed: mixture")) == 1
        second = json.loads((run / "metrics.json").read_text())
        assert second["records"] == len(records) // 2 != first["records"]
        assert evaluate.main(["--preset", preset]) == 0
    assert len(messages(caplog, f"04_evaluate: input changed: {MIX}/adapter")) == 1
    generated = rows(runs / f"st/04_evaluate/{MIX}/xstest.jsonl").values()
    assert {r["inputs"]["adapter"] for r in generated} == {fp.fingerprint(run / "adapter")}
    stamp = (run / "adapter/adapter_model.safetensors").stat().st_mtime_ns
    assert train.main(["--preset", preset, "--overwrite"]) == 0  # --overwrite always trains again
    assert (run / "adapter/adapter_model.safetensors").stat().st_mtime_ns != stamp


def test_a_cells_mixture_is_built_again_when_its_source_changed(tmp_path, monkeypatch, caplog):
    from mllm_safety import ablations as ab

    built = []
    monkeypatch.setattr(ab.cells, "build_mix", lambda arm, mix, seed, run_dir, sources=None: built.append(1) or [])
    preset = Preset.load("smoke", runs_root=str(tmp_path / "runs"), data_root=str(tmp_path / "data"))
    source = tmp_path / "data" / preset.mix.instruct_json
    source.parent.mkdir(parents=True)
    source.write_text("[]")
    mix_cfg = {**preset.mix.to_dict(), "arm": "frac10"}
    for _ in range(2):
        ab.cells.build_cell_mix(ab.Arm(0.1), preset.mix, 0, mix_cfg, None)
    assert built == [1]
    source.write_text('[{"id": "new"}]')
    with caplog.at_level(logging.WARNING):
        ab.cells.build_cell_mix(ab.Arm(0.1), preset.mix, 0, mix_cfg, None)
    assert built == [1, 1] and len(messages(caplog, "input changed: instruct_json")) == 1


# ---- one writer per run folder --------------------------------------------------------------------------------------


def test_a_second_command_waits_then_stops_naming_the_holder(tmp_path, world_data, tiny_model, monkeypatch, capsys):
    preset = eval_preset(tmp_path, own_xstest(tmp_path, world_data), tiny_model)
    stage = tmp_path / "runs/rs/04_evaluate"
    code = f"import time\nfrom mllm_safety.core.runs import run_lock\nwith run_lock({str(stage)!r}):\n"
    code += "    print('held', flush=True)\n    time.sleep(120)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("MLLM_SAFETY_LOCK_WAIT", "0.3")
        with pytest.raises(RunBusyError, match=rf"04_evaluate is being written by pid {holder.pid} on .*Fix: wait"):
            with run_lock(stage):
                pass
        capsys.readouterr()
        assert evaluate.main(["--preset", str(preset)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and len(err.strip().splitlines()) == 1 and f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    with run_lock(stage):  # a killed holder leaves nothing that blocks
        pass


def test_two_evaluate_commands_on_one_folder_give_one_result(tmp_path, world_data, tiny_model, digest_cache):
    preset = eval_preset(tmp_path, own_xstest(tmp_path, world_data), tiny_model)
    stage = tmp_path / "runs/rs/04_evaluate"
    env = {**os.environ, fp.CACHE_ENV: str(digest_cache), "MLLM_SAFETY_LOCK_WAIT": "600", "OMP_NUM_THREADS": "1"}
    logs = [tmp_path / f"stderr{k}.txt" for k in range(2)]
    command = [sys.executable, "-m", "mllm_safety.evaluate", "--preset", str(preset)]
    with run_lock(stage):  # both start while the folder is held, so that they meet at its lock
        procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log.open("w"), env=env) for log in logs]
        deadline = time.monotonic() + 300
        while not all("waiting up to" in log.read_text() for log in logs):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
                log.read_text()[-2000:] for log in logs
            ]
            time.sleep(0.5)
    codes = [p.wait(timeout=600) for p in procs]
    assert codes == [0, 0], [log.read_text()[-2000:] for log in logs]
    lines = (stage / "base/xstest.jsonl").read_text().splitlines()
    assert len(lines) == 4 == len({json.loads(line)["id"] for line in lines})
    assert overall_n(stage) == {4}


def test_a_benchmark_asked_in_its_own_format_and_length(tmp_path, world_data, tiny_model):
    """An entry's prompt_format and max_new_tokens (the official ScienceQA: vicuna_v1, 1024) apply to it alone,
    are kept with its answers, and are named beside the run's metrics."""
    own = {"name": "xstest", "root": "xstest", "key": "xstest_own", "prompt_format": "llava_v1", "max_new_tokens": 6}
    specs = [{"name": "xstest", "root": "xstest"}, own]
    preset = eval_preset(tmp_path, world_data, tiny_model, benchmarks=specs, prompt_format="vicuna_v1")
    assert evaluate.main(["--preset", str(preset)]) == 0
    stage = tmp_path / "runs/rs/04_evaluate"
    run, mine = rows(stage / "base/xstest.jsonl"), rows(stage / "base/xstest_own.jsonl")
    assert {r["prompt_format"] for r in run.values()} == {"vicuna_v1"}
    assert {r["decoding"]["max_new_tokens"] for r in run.values()} == {4}
    assert {r["prompt_format"] for r in mine.values()} == {"llava_v1"}
    assert {r["decoding"]["max_new_tokens"] for r in mine.values()} == {6}
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["prompt_format"] == "vicuna_v1" and metrics["decoding"]["max_new_tokens"] == 4
    assert metrics["per_benchmark"] == {"xstest_own": {"prompt_format": "llava_v1", "max_new_tokens": 6}}
