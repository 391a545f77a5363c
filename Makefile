# Quick start:  make demo   (set up, then the whole job on sample_data/: train the woodcock detector,
#                           choose its threshold on held-out clips, detect peents in the field recording)
#               make test   (set up, then run the test suite)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[dev,birdnet,onnx,indices,cams,metadata]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m soundscape.demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) model_train_results
