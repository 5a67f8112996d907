#!/bin/sh
# The runs of docs/resnet20-fmnist/README.md, one process, one thread (from /work/main).
set -e
T="ticketlab"
PY=.venv/bin/python
CFG=docs/resnet20-fmnist/resnet20_fmnist.toml
ROOT=bench/runs
$PY -m ticketlab.cli lottery --config $CFG --levels 2 --workers 1 --quiet --out $ROOT --json > docs/resnet20-fmnist/imp_warmup.json
$PY -m ticketlab.cli lottery --config $CFG --levels 2 --rewind-step 100 --workers 1 --quiet --out $ROOT --json > docs/resnet20-fmnist/imp_rewind100.json
