# Sourced by run.sh and test.sh: make sure .venv holds requirements.txt, then set $PYTHON.
#
# The environment is several GB (torch's CUDA build), so it is built once per version of
# requirements.txt in a cache outside the clone - ${GENLAB_VENV_CACHE:-~/.cache/generative-lab}
# - keyed by the file's hash, and .venv is a link to it. Fresh clones reuse it; editing
# requirements.txt builds a new one. A half-built environment (no .complete stamp) is rebuilt.

genlab_bootstrap() {
    local root req_hash cache venv base_python
    root=$(pwd)
    req_hash=$(sha256sum "$root/requirements.txt" | cut -c1-16)
    cache=${GENLAB_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/generative-lab}
    venv="$cache/venv-$req_hash"

    if [ -e "$root/.venv" ] && [ ! -L "$root/.venv" ]; then
        # A .venv made by hand: use it as it is when it was built from this requirements.txt.
        if [ "$(cat "$root/.venv/.requirements-hash" 2>/dev/null)" = "$req_hash" ]; then
            PYTHON="$root/.venv/bin/python"
            return 0
        fi
        echo "error: .venv is a folder not built from this requirements.txt; remove it (rm -rf .venv) and rerun" >&2
        return 1
    fi

    if [ ! -f "$venv/.complete" ]; then
        base_python=${GENLAB_PYTHON:-}
        if [ -z "$base_python" ]; then
            for candidate in python3.11 python3; do
                if command -v "$candidate" >/dev/null 2>&1 &&
                    "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
                    base_python=$candidate
                    break
                fi
            done
        fi
        if [ -z "$base_python" ]; then
            echo "error: Python 3.11 not found; install it or set GENLAB_PYTHON=/path/to/python3.11" >&2
            return 1
        fi
        echo "Setting up the environment in $venv (first run only; a few minutes)..."
        rm -rf "$venv"
        mkdir -p "$cache"
        "$base_python" -m venv "$venv" || return 1
        "$venv/bin/python" -m pip install --quiet --upgrade pip || return 1
        "$venv/bin/python" -m pip install --quiet -r "$root/requirements.txt" || {
            echo "error: installing requirements.txt failed (see above); rerun to retry" >&2
            return 1
        }
        echo "$req_hash" > "$venv/.requirements-hash"
        touch "$venv/.complete"
    fi
    ln -sfn "$venv" "$root/.venv"
    PYTHON="$root/.venv/bin/python"
}

genlab_bootstrap || exit 1
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
# Quieter TensorFlow start-up; its warnings about CPU instructions are not actionable here.
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
