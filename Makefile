# One obvious entry point per job. Every target sets up the virtual environment first.
#   make test      unit tests + every notebook in the smoke profile (what CI runs)
#   make figures   run every part notebook headlessly (PROFILE=quick by default), then make report
#   make report    export the one-page A4 report PDFs to reports/
#   make bench     the benchmarks of bench/ (loader, loop efficiency, KD overhead, precision)
#   make sweep     part 3's temperature/lambda sweep through papermill
#   make lab       JupyterLab on notebooks/
#   make architecture  redraw the import graph of ARCHITECTURE.md and docs/architecture.png
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
TEST_OUT ?= $(CURDIR)/runs/test-output

.PHONY: venv test figures report bench sweep lab strip clean architecture

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

# Notebooks run in the smoke profile on generated data; their outputs go to runs/test-output.
test: venv
	rm -rf $(TEST_OUT)
	KD_PROFILE=smoke KD_HEADLESS=1 KD_OUTPUT_ROOT=$(TEST_OUT) KD_CACHE_DIR=$(TEST_OUT)/cache \
	MPLBACKEND=Agg $(BIN)/python -m pytest --nbmake --nbmake-timeout=900 tests notebooks

# The reports are exported also when a notebook failed; the failure still fails the target.
figures: venv
	$(BIN)/python -m kdutils.tools.run_notebooks --profile $(PROFILE); status=$$?; \
	$(MAKE) report PROFILE=$(PROFILE) && exit $$status

report: venv
	$(BIN)/python -m kdutils.tools.report --profile $(PROFILE)

bench: venv
	$(BIN)/python bench/run_all.py

sweep: venv
	$(BIN)/python -m kdutils.tools.sweep notebooks/part3_cifar10_resnet18_kd.ipynb --part part3 --profile $(PROFILE) \
		--name part3-sweep --grid T=2,5,10,20 lam=0.1,0.3,0.5,0.9

lab: venv
	$(BIN)/jupyter lab notebooks/

# Remove outputs and execution counts from every notebook (git keeps them clean).
strip: venv
	$(BIN)/python -m kdutils.tools.nbclean notebooks/*.ipynb

# The import graph in ARCHITECTURE.md and docs/architecture.png, read from the code.
architecture: venv
	$(BIN)/python -m kdutils.tools.import_graph --write

clean:
	rm -rf runs/ reports/*.pdf figures/*.png
