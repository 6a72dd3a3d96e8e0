#!/usr/bin/env bash
# Set up .venv on first use, then run the test suite. Extra arguments go to pytest:
#   ./test.sh                   the default suite (slow tests skipped)
#   ./test.sh -m slow           only the slow ones;  ./test.sh -m ""  everything
set -euo pipefail
cd "$(dirname "$0")"
source lab/bootstrap.sh
exec "$PYTHON" -m pytest "$@"
