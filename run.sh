#!/usr/bin/env bash
# Set up .venv on first use, then run the experiments and build outputs/index.html.
#   ./run.sh                    every experiment, quick profile
#   ./run.sh sphere_mapping     one experiment (several names allowed)
#   ./run.sh --full             article-scale constants
set -euo pipefail
cd "$(dirname "$0")"
source lab/bootstrap.sh
exec "$PYTHON" -m lab.pipeline "$@"
