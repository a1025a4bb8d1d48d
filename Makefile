# The two commands of the README are `make run` and `make test`; everything they need is
# installed or built by the targets below (idempotent, cached under ~/.cache/acme-gateway).
SHELL := /bin/bash
PYTEST_ARGS ?=

.PHONY: run serve test lint deps python-deps system-deps go-deps image cluster format bench bench-deps bench-operator

## run: the whole local stack (control plane, operator, ACME server) on embedded defaults
run: deps
	.venv/bin/python tools/devstack.py

## serve: only the ACME server, standalone, on its embedded defaults
serve: python-deps
	.venv/bin/acme-gateway serve

## cluster: control plane + a real node (root) + the chart from the freshly built image
cluster: deps
	.venv/bin/python tools/cluster.py

## test: lint, then every test (unit, protocol, certbot, lego, Kubernetes, cert-manager, Helm)
test: deps lint
	.venv/bin/pytest -ra -p no:cacheprovider $(PYTEST_ARGS)

lint: python-deps
	.venv/bin/ruff check .
	.venv/bin/ruff format --check acme_server operator tests tools bench helm
	.venv/bin/mypy

deps: python-deps system-deps go-deps image

python-deps:
	tools/bootstrap-python.sh

system-deps:
	tools/install-system-deps.sh

go-deps:
	tools/k8s/build.sh node >/dev/null
	tools/go-tools/build.sh all loadgen >/dev/null

# The app image from our Dockerfile (buildah, base made by mmdebstrap), for the node tests.
image: system-deps
	tools/image/build.sh >/dev/null

format: python-deps
	.venv/bin/ruff format acme_server operator tests tools bench helm
	.venv/bin/ruff check --fix .

## bench: full ACME flows against Pebble, step-ca and ours (SQLite, PostgreSQL) side by side;
## BENCH_ARGS=--quick for one level of 50 certificates (see bench/README.md)
BENCH_ARGS ?=
bench: python-deps system-deps bench-deps
	.venv/bin/python bench/compare.py $(BENCH_ARGS)

## bench-deps: step-ca and the load generator, built from the Go module proxy and cached
bench-deps:
	tools/go-tools/build.sh stepca loadgen >/dev/null

## bench-operator: the operator at 1,000 and 10,000 objects (control plane + operator, loopback)
BENCH_OPERATOR_ARGS ?=
bench-operator: python-deps
	tools/k8s/build.sh >/dev/null
	.venv/bin/python bench/operator_scale.py --count 1000 $(BENCH_OPERATOR_ARGS)
	.venv/bin/python bench/operator_scale.py --count 10000 --concurrency 32 $(BENCH_OPERATOR_ARGS)
