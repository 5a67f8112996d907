#!/bin/sh
# The runs of docs/resnet20-fmnist/README.md, one process, one thread (from /work/main).
set -e
# --bias-init zeros --prune-counting ticketlab: these results were made before the ResNet preset drew OpenLTH's
# uniform biases and counted its levels as OpenLTH does (ceil(0.2 x all remaining) + 1)
T="ticketlab"
PY=.venv/bin/python
CFG=docs/resnet20-fmnist/resnet20_fmnist.toml
ROOT=bench/runs
$PY -m ticketlab.cli lottery --config $CFG --levels 2 --bias-init zeros --prune-counting ticketlab --workers 1 --quiet --out $ROOT --json > docs/resnet20-fmnist/imp_warmup.json
$PY -m ticketlab.cli lottery --config $CFG --levels 2 --bias-init zeros --prune-counting ticketlab --rewind-step 100 --workers 1 --quiet --out $ROOT --json > docs/resnet20-fmnist/imp_rewind100.json
