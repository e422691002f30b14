# One obvious entry point per job. Every target sets up the virtual environment first.
#   make test      unit tests + every notebook in the smoke profile (what CI runs)
#   make data      fetch the data sets the profile needs (PROFILE=quick by default; sizes printed first)
#   make figures   make data, then run every part notebook headlessly (PROFILE=quick by default), then make report
#   make report    export the one-page A4 report PDFs to reports/
#   make bench     the benchmarks of bench/ (loader, loop efficiency, KD overhead, precision)
#   make sweep     part 3's temperature/lambda sweep through papermill
#   make lab       JupyterLab on notebooks/
#   make architecture  redraw the import graph of ARCHITECTURE.md and docs/architecture.png
#   make rehearsal the full profile at full size with capped steps: memory, s/step, projected times (GPU check)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
TEST_OUT ?= $(CURDIR)/runs/test-output

.PHONY: venv test data figures report bench sweep lab strip clean architecture

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

# Every data set the profile's parts read, into data/ (or KD_DATA_ROOT): CIFAR-10/100, faces, food.
# Prints the total download first; fails with the list of what could not be obtained and how.
data: venv
	$(BIN)/python -m kdutils.tools.data fetch --profile $(PROFILE)

# The reports are exported also when a notebook failed; the failure still fails the target.
figures: venv data
	$(BIN)/python -m kdutils.tools.run_notebooks --profile $(PROFILE); status=$$?; \
	$(MAKE) report PROFILE=$(PROFILE) && exit $$status

report: venv
	$(BIN)/python -m kdutils.tools.report --profile $(PROFILE)

bench: venv
	$(BIN)/python bench/run_all.py

# An Optuna grid study (GridSampler); WORKERS=2 runs two workers that share it.
WORKERS ?= 1
sweep: venv
	$(BIN)/python -m kdutils.tools.sweep notebooks/part3_cifar10_resnet18_kd.ipynb --part part3 --profile $(PROFILE) \
		--name part3-sweep --grid T=2,5,10,20 lam=0.1,0.3,0.5,0.9 --workers $(WORKERS)

lab: venv
	$(BIN)/jupyter lab notebooks/

# Remove outputs, execution counts and run metadata (widgets, papermill) from every notebook with
# nbstripout (cell ids kept). `nbstripout --install` makes git do the same on every commit (README).
NBSTRIPOUT_KEYS := metadata.papermill cell.metadata.papermill
strip: venv
	$(BIN)/nbstripout --keep-id --extra-keys "$(NBSTRIPOUT_KEYS)" notebooks/*.ipynb

# The import graph in ARCHITECTURE.md and docs/architecture.png, read from the code.
architecture: venv
	$(BIN)/python -m kdutils.tools.import_graph --write

# The full profile rehearsed (kdutils.tools.rehearsal): every part notebook with the full settings, models
# and data, 2 epochs of a few steps per run; full-size data is generated where REHEARSAL_DATA lacks it.
# Prints the table of peak memory, s/step and projected full-run time; on one GPU it is the GPU check.
# Outputs in results/rehearsal/, runs/rehearsal/ (emptied first). ONLY=part1,part3 runs some notebooks.
.PHONY: rehearsal
rehearsal: venv
	$(BIN)/python -m kdutils.tools.rehearsal run $(if $(REHEARSAL_DATA),--data-root $(REHEARSAL_DATA)) \
		$(if $(ONLY),--only $(ONLY))

clean:
	rm -rf runs/ reports/*.pdf figures/*.png
