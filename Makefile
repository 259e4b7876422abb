# posekit: `make demo` and `make test` work from a fresh clone (they create .venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test demo clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "posekit needs Python 3.11 (torch==2.13.0 wheel); run: make PYTHON=python3.11 ..."; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# Until a shipped model exists: a short poster-recipe training on LSP and its evaluation on the
# LSP test split, on the data at $POSEKIT_DATA. Outputs go to demo_out/.
demo: $(STAMP)
	@if [ -z "$$POSEKIT_DATA" ] || [ ! -f "$$POSEKIT_DATA/lsp/joints.mat" ]; then \
	  echo "make demo: no LSP data found. Set POSEKIT_DATA to a folder holding lsp/ (and lspet/), e.g."; \
	  echo "  make demo POSEKIT_DATA=../shared/data"; exit 2; fi
	$(VENV)/bin/posekit data check --data "$$POSEKIT_DATA" --sets lsp
	$(VENV)/bin/posekit train --config configs/poster.yaml --data "$$POSEKIT_DATA" --out demo_out/run --force \
	  --epochs 5 data.sets=[lsp]
	$(VENV)/bin/posekit evaluate --model demo_out/run --data "$$POSEKIT_DATA" --split lsp-test --out demo_out/eval
	@echo "demo: see demo_out/eval/predictions.png, demo_out/eval/loss_curve.png and demo_out/eval/metrics.md;"
	@echo "      TensorBoard curves: $(VENV)/bin/tensorboard --logdir demo_out/run/tb"

clean:
	rm -rf demo_out .pytest_cache
