#!/bin/sh
# The runs of docs/resnet20-fmnist/README.md, one process, one thread (from /work/main).
set -e
# --bias-init zeros: these results were made with zero biases, before the ResNet preset drew OpenLTH's uniform ones
T="ticketlab"
PY=.venv/bin/python
CFG=docs/resnet20-fmnist/resnet20_fmnist.toml
ROOT=bench/runs
$PY -m ticketlab.cli lottery --config $CFG --levels 2 --bias-init zeros --workers 1 --quiet --out $ROOT --json > docs/resnet20-fmnist/imp_warmup.json
$PY -m ticketlab.cli lottery --config $CFG --levels 2 --bias-init zeros --rewind-step 100 --workers 1 --quiet --out $ROOT --json > docs/resnet20-fmnist/imp_rewind100.json
