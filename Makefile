# Set-up and everyday commands. Every target bootstraps .venv/ from python3 alone.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-fast lint validate bench browser dicom3tools clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## make demo: make the sample case, plan on it, print where the outputs are
demo: $(STAMP)
	$(PY) -m trajplan phantom -o out/demo_case --seed 0 --fracture bilateral --position prone
	$(PY) -m trajplan plan out/demo_case/ct.nii.gz -o out/demo
	@echo "demo outputs in out/demo/: labels.nii.gz plan.json scene.png report.html (open out/demo/report.html in a browser, or run: .venv/bin/trajplan view out/demo)"

## make test: the test suite (small phantoms, coarse spacing), one worker per core (pytest-xdist, a test file per
## worker): 3.8 minutes on 2 cores (6 minutes of CPU)
test: $(STAMP) browser dicom3tools
	$(PY) -m pytest -q -n auto --dist loadfile

## make lint: ruff (lint and import order, settings in pyproject.toml); CI runs it before the tests
lint: $(STAMP)
	$(PY) -m ruff check .

## make test-fast: the test suite without the tests marked slow, for the edit loop
test-fast: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow and not validation"

## headless Chromium for the browser tests (report, viewer): installed when this machine allows it
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1; } \
	  || echo "note: chromium is not installed; the browser tests of report.html and the viewer will be skipped"

## dciodvfy (Debian package dicom3tools) for the checks of trajplan export's DICOM files: installed when this machine allows it
dicom3tools:
	@command -v dciodvfy >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
	  && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dicom3tools) >/dev/null 2>&1; } \
	  || echo "note: dciodvfy is not installed; the dciodvfy checks of trajplan export will be skipped"

## make validate: the long segmentation and planning validation over many phantoms (drawn plain, then with their
## anatomical variation), then on the real sacra of ../shared, then the tests marked validation (real sacra segmented
## at their own spacing)
validate: $(STAMP)
	$(PY) benchmarks/validate.py --out docs/validation.md
	$(PY) benchmarks/validate.py --vary-anatomy --out docs/validation_varied.md
	$(PY) benchmarks/validate_real.py --out docs/validation_real.md
	$(PY) -m pytest -q -m validation

## make bench: every benchmark, each printing its figures
bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) out .pytest_cache
