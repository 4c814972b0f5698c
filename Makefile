# streamline: `make demo` and `make test` work from a fresh clone; every target is idempotent.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
KAFKA_LIBS := kafka/libs
# the suite's files run on three workers (pytest-xdist): most tests wait on the broker and on
# streamline processes, not on the CPU; each file stays on one worker, with its fixtures
PYTEST_ARGS ?= -n 3 --dist loadfile

.PHONY: registry-setup setup demo test lint broker broker-stop bench bench-setup clean

setup: $(VENV)/.installed $(KAFKA_LIBS)/.resolved registry-setup

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "streamline needs Python >= 3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

$(KAFKA_LIBS)/.resolved: kafka/pom.xml
	@command -v java >/dev/null || { echo "java not found: install a JDK 17+ (e.g. apt-get install openjdk-17-jdk-headless), or point STREAMLINE_BOOTSTRAP_SERVERS at an existing Kafka cluster, or run 'docker compose up'" >&2; exit 1; }
	@command -v mvn >/dev/null || { echo "mvn not found: install Maven (e.g. apt-get install maven) to resolve the Kafka jars, or point STREAMLINE_BOOTSTRAP_SERVERS at an existing Kafka cluster, or run 'docker compose up'" >&2; exit 1; }
	@echo "resolving the Apache Kafka jars from Maven Central into $(KAFKA_LIBS)/ ..."
	mvn -q -B -f kafka/pom.xml dependency:copy-dependencies
	@touch $@

# the dev Schema Registry (Apicurio, a Quarkus app from Maven Central) needs a Java 21+ JDK
registry-setup: $(VENV)/.installed
	@java=$$($(BIN)/python -c 'from streamline.dev.registry import find_java21; print(find_java21() or "")'); \
	if [ -z "$$java" ]; then echo "no Java 21+ JDK found: skipping the dev Schema Registry (its tests will be skipped)"; \
	elif [ -f registry/target/apicurio/quarkus-run.jar ]; then :; \
	else echo "unpacking Apicurio Registry from Maven Central into registry/target/apicurio ..."; \
	mvn -q -B -f registry/pom.xml package; fi

broker: setup
	@$(BIN)/streamline dev-broker start

broker-stop:
	@$(BIN)/streamline dev-broker stop

demo: broker
	$(BIN)/streamline demo

test: broker
	$(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# BENCH_ARGS, e.g. make bench BENCH_ARGS="--events 50000 --only streamline,quix"
# or BENCH_ARGS="--suite nexmark" (the Nexmark-style queries only; W5 is part of the classic suite).
# The default suite is the classic one (W0-W4, latency, then W5), every cell run 3 times.
BENCH_ARGS ?=

$(VENV)/.bench-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	@touch $@

# the peers' own virtual environments under bench/.venvs/ (Quix Streams, faust-streaming, Bytewax)
bench-setup: $(VENV)/.bench-installed
	$(BIN)/python -m bench.venvs

bench: broker bench-setup
	$(BIN)/python -m bench.run $(BENCH_ARGS)
	$(if $(findstring nexmark,$(BENCH_ARGS)),,$(BIN)/python -m bench.enrich $(W5_ARGS))

clean:
	-$(BIN)/streamline dev-broker stop
	-$(BIN)/streamline dev-registry stop
	rm -rf $(VENV) .streamline $(KAFKA_LIBS) kafka/target registry/target
