# posekit: `make demo` and `make test` work from a fresh clone (they create .venv).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install test test-fast demo demo-train clean hog-venv mp-venv

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || \
	  { echo "posekit needs Python 3.11 (torch==2.13.0 wheel); run: make PYTHON=python3.11 ..."; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

# The quick loop: everything but the tests marked slow (real data, training runs, subprocesses)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

# The shipped model on the example images: annotated images + one JSON per image in demo_out/.
# No dataset needed. (`make demo-train` trains and evaluates the poster recipe on $POSEKIT_DATA.)
demo: $(STAMP)
	$(VENV)/bin/posekit predict examples/ --model posekit-lsp --out demo_out/predict --draw --json
	@echo "demo: annotated images and JSON in demo_out/predict/ (model card: posekit/weights/posekit-lsp.md)"

demo-train: $(STAMP)
	@if [ -z "$$POSEKIT_DATA" ] || [ ! -f "$$POSEKIT_DATA/lsp/joints.mat" ]; then \
	  echo "make demo-train: no LSP data found. Set POSEKIT_DATA to a folder holding lsp/ (and lspet/), e.g."; \
	  echo "  make demo-train POSEKIT_DATA=/path/to/data"; exit 2; fi
	$(VENV)/bin/posekit data check --data "$$POSEKIT_DATA" --sets lsp
	$(VENV)/bin/posekit train --config configs/poster.yaml --data "$$POSEKIT_DATA" --out demo_out/run --force \
	  --epochs 5 data.sets=[lsp]
	$(VENV)/bin/posekit evaluate --model demo_out/run --data "$$POSEKIT_DATA" --split lsp-test --out demo_out/eval
	@echo "demo-train: see demo_out/eval/predictions.png, demo_out/eval/loss_curve.png and demo_out/eval/metrics.md;"
	@echo "      TensorBoard curves: $(VENV)/bin/tensorboard --logdir demo_out/run/tb"

clean:
	rm -rf demo_out .pytest_cache

# OpenCV 4's HOG people detector, for benchmarks/detection.py's baseline only (OpenCV 5 dropped it)
hog-venv:
	test -x .venv-hog/bin/python || $(PYTHON) -m venv .venv-hog
	.venv-hog/bin/python -m pip install --quiet --disable-pip-version-check "opencv-python-headless==4.10.0.84" "numpy<2.3"

# MediaPipe Pose, for benchmarks/peer_mediapipe.py only (0.10.14: the last release with its pose models inside)
mp-venv:
	test -x .venv-mp/bin/python || $(PYTHON) -m venv .venv-mp
	.venv-mp/bin/python -m pip install --quiet --disable-pip-version-check "mediapipe==0.10.14"
