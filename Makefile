# Set-up and everyday commands. Every target bootstraps .venv/ from python3 alone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test validate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## make demo: make the sample case, plan on it, print where the outputs are
demo: $(STAMP)
	$(PY) -m trajplan phantom -o out/demo/case --seed 0
	$(PY) -m trajplan plan out/demo/case/ct.nii.gz -o out/demo
	@echo "demo outputs in out/demo/: labels.nii.gz plan.json scene.png"

## make test: the test suite (small phantoms, coarse spacing)
test: $(STAMP)
	$(PY) -m pytest -q

## make validate: the long segmentation and planning validation over many phantoms
validate: $(STAMP)
	$(PY) benchmarks/validate.py --out docs/validation.md

## make bench: every benchmark, each printing its figures
bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache
