# Quick start:  make demo   (set up, then the whole job on sample_data/: train the woodcock detector,
#                           choose its threshold on held-out clips, detect peents in the field recording)
#               make test   (set up, then run the test suite)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
# Extra package index to look for the CPU build of PyTorch in (optional; pip's own
# configuration is always used): make setup TORCH_INDEX=<index URL>
TORCH_INDEX ?=

# PyTorch: on a machine without an NVIDIA GPU, the CPU build (torch==X+cpu: ~220 MiB resident
# after import instead of ~700 MiB for the CUDA build, and a far smaller download) when the
# configured package sources have it; otherwise, silently, the plain torch==X wheel.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	@if ! nvidia-smi -L >/dev/null 2>&1 && $(PY) -m pip install -q \
	    $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX)) \
	    "torch==$(TORCH_VERSION)+cpu" "torchvision==$(TORCHVISION_VERSION)+cpu" >/dev/null 2>&1; then \
	  echo "installed the CPU build of torch $(TORCH_VERSION) (no GPU found)"; \
	else \
	  $(PY) -m pip install torch==$(TORCH_VERSION) torchvision==$(TORCHVISION_VERSION); \
	fi
	$(PY) -m pip install -e ".[dev,birdnet,onnx,indices,cams,metadata,review,ray]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m soundscape.demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) model_train_results
