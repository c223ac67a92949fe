# Lifeline: `make demo` runs the demo city, `make test` runs the whole suite.
# Both set up everything on a fresh Debian/Ubuntu machine (system packages through apt).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_INSTALL := $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends

.PHONY: demo test install system-packages test-system-packages lint bench clean

demo: install system-packages
	@echo "Starting the demo city; the dashboard URL (with a demo operator token) is printed below."
	$(BIN)/lifeline up --simulate

test: install system-packages test-system-packages
	$(BIN)/ruff check .
	$(BIN)/pytest -q

install: $(VENV)/.installed

# The C kernels are built by the install: a changed kernel source reinstalls.
$(VENV)/.installed: pyproject.toml $(wildcard detectors/*.c detectors/*.h ingest/*.c)
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { $(SUDO) apt-get update -q && $(APT_INSTALL) python3-venv; }
	@{ command -v gcc >/dev/null && $(PYTHON) -c 'import os, sys, sysconfig; \
	  sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; } || \
	  { $(SUDO) apt-get update -q && $(APT_INSTALL) gcc python3-dev; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Mosquitto is the broker the service starts privately when no mqtt.url is configured.
system-packages:
	@command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || \
	  { $(SUDO) apt-get update -q && $(APT_INSTALL) mosquitto mosquitto-clients; }

# Browser tests drive Debian's Chromium through Playwright (never a downloaded browser).
test-system-packages:
	@{ [ -x /usr/bin/chromium ] && dpkg -s fonts-noto-cjk >/dev/null 2>&1; } || \
	  { $(SUDO) apt-get update -q && $(APT_INSTALL) chromium fonts-noto-cjk; }
# The InfluxDB sink's tests write to Debian's VictoriaMetrics, which speaks the InfluxDB v2 write API.
	@[ -x /usr/bin/victoria-metrics ] || \
	  { $(SUDO) apt-get update -q && $(APT_INSTALL) victoria-metrics; }

lint: install
	$(BIN)/ruff check .

bench: install system-packages
	$(BIN)/lifeline bench

clean:
	rm -rf $(VENV) data *.egg-info .pytest_cache .ruff_cache .hypothesis
