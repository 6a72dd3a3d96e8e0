# Sourced by run.sh and test.sh: make sure .venv holds requirements.txt and this clone, then set $PYTHON.
#
# Two layers, so that clones share the heavy part and never fight over the light one:
# - the shared environment: requirements.txt installed once per (Python minor version, version of
#   requirements.txt) in ${GENLAB_VENV_CACHE:-~/.cache/generative-lab}/venv-py3.X-<hash> (several
#   GB: torch's CUDA build). A half-built one (no .complete stamp) is rebuilt.
# - this clone's .venv: a small real venv of the same interpreter, made without pip, whose
#   site-packages reads the shared one's (a .pth file) and holds this clone installed in editable
#   mode (pyproject.toml), so `import lab` and `import pen_cap_vae` work from any folder:
#   `source .venv/bin/activate; cd pen_cap_vae; python train.py`. Made in about a second.
#
# GENLAB_PYTHON=/path/to/python3.X picks the interpreter (3.11, 3.12 or 3.13); otherwise the one
# .venv was made with, else the first of python3.11, python3.12, python3.13, python3 (pyenv's
# versions included). The shared environment is installed with uv (from PATH, or installed by pip
# into it first), falling back to pip; GENLAB_INSTALLER=pip uses pip only.

genlab_python_minor() {  # prints "3.X" for an interpreter 3.11-3.13, else fails
    "$1" -c 'import sys; v = sys.version_info[:2]; print("%d.%d" % v); sys.exit(not (3, 11) <= v <= (3, 13))' 2>/dev/null
}

genlab_find_python() {
    local candidate pyenv_root=${PYENV_ROOT:-$HOME/.pyenv}
    if [ -n "${GENLAB_PYTHON:-}" ]; then
        genlab_python_minor "$GENLAB_PYTHON" >/dev/null && { echo "$GENLAB_PYTHON"; return 0; }
        echo "error: GENLAB_PYTHON=$GENLAB_PYTHON is not Python 3.11, 3.12 or 3.13" >&2
        return 1
    fi
    if [ -f "$1/.venv/.genlab-shared" ] && [ -x "$1/.venv/bin/python" ] &&
        genlab_python_minor "$1/.venv/bin/python" >/dev/null; then
        # Keep the version this clone was set up with.
        "$1/.venv/bin/python" -c 'import sys; print(sys._base_executable)'
        return 0
    fi
    for candidate in python3.11 python3.12 python3.13 python3 \
        "$pyenv_root"/versions/3.11*/bin/python3.11 "$pyenv_root"/versions/3.12*/bin/python3.12 \
        "$pyenv_root"/versions/3.13*/bin/python3.13; do
        if command -v "$candidate" >/dev/null 2>&1 && genlab_python_minor "$candidate" >/dev/null; then
            command -v "$candidate"
            return 0
        fi
    done
    echo "error: Python 3.11, 3.12 or 3.13 not found; install one or set GENLAB_PYTHON=/path/to/python3.X" >&2
    return 1
}

genlab_build_shared() {  # $1: venv folder, $2: base interpreter, $3: requirements.txt
    local venv=$1 base_python=$2 requirements=$3 started=$SECONDS uv="" constraints=() file
    echo "Setting up the shared environment in $venv (first run only; see README for the time)..."
    rm -rf "$venv"
    "$base_python" -m venv "$venv" || return 1
    # uv installs the same pins about 5x faster than pip (README); pip brings uv when it is missing.
    if [ "${GENLAB_INSTALLER:-auto}" != pip ]; then
        if command -v uv >/dev/null 2>&1; then
            uv=$(command -v uv)
        elif "$venv/bin/python" -m pip install --quiet uv >/dev/null 2>&1; then
            uv="$venv/bin/uv"
        fi
    fi
    if [ -n "$uv" ]; then
        # uv reads no pip.conf: pass pip's constraint files on (this machine caps torch there).
        for file in $("$venv/bin/python" -m pip config get global.constraint 2>/dev/null); do
            [ -f "$file" ] && constraints+=(--constraint "$file")
        done
        # setuptools: the build backend of each clone's editable install (pyproject.toml).
        if "$uv" pip install --quiet --python "$venv/bin/python" "${constraints[@]}" -r "$requirements" setuptools; then
            touch "$venv/.complete"
            echo "Shared environment ready in $((SECONDS - started)) s (uv)."
            return 0
        fi
        echo "note: uv could not install requirements.txt (see above); trying pip" >&2
    fi
    "$venv/bin/python" -m pip install --quiet --upgrade pip || return 1
    "$venv/bin/python" -m pip install --quiet -r "$requirements" setuptools || {
        echo "error: installing requirements.txt failed (see above); rerun to retry" >&2
        return 1
    }
    touch "$venv/.complete"
    echo "Shared environment ready in $((SECONDS - started)) s (pip)."
}

genlab_build_light() {  # $1: clone root, $2: shared venv. Makes $1/.venv.
    local root=$1 shared=$2 tmp="$1/.venv.new.$$" site shared_site name target
    rm -rf "$tmp"
    # The shared venv's python makes a venv of its base interpreter (venv follows sys._base_executable).
    "$shared/bin/python" -m venv --without-pip "$tmp" || return 1
    site=$("$tmp/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
    shared_site=$("$shared/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') || return 1
    # addsitedir (not a bare path) so the shared site-packages' own .pth files are read too.
    echo "import site; site.addsitedir('$shared_site')" > "$site/_genlab_shared.pth"
    # This clone, editable: its packages import from any folder, the code edited in place.
    "$shared/bin/python" -m pip --python "$tmp/bin/python" install --quiet --no-deps --no-build-isolation \
        --no-index -e "$root" >"$tmp.log" 2>&1 || {
        cat "$tmp.log" >&2
        echo "error: installing this clone in editable mode failed (see above)" >&2
        rm -f "$tmp.log"
        rm -rf "$tmp"
        return 1
    }
    # The shared environment's commands (ruff, pytest, tensorboard, ...), run by this clone's python.
    for target in "$shared"/bin/*; do
        name=$(basename "$target")
        case $name in python* | pip* | activate* | Activate*) continue ;; esac
        if [ "$(head -c 2 "$target")" = "#!" ]; then
            sed "1s|^#!.*python.*$|#!$root/.venv/bin/python|" "$target" > "$tmp/bin/$name"
            chmod +x "$tmp/bin/$name"
        else
            ln -s "$target" "$tmp/bin/$name"
        fi
    done
    rm -f "$tmp.log"
    sed -i "s|$tmp|$root/.venv|g" "$tmp"/bin/activate*
    printf '%s\n%s\n' "$shared" "$root" > "$tmp/.genlab-shared"
    rm -rf "$root/.venv"
    mv "$tmp" "$root/.venv"
}

genlab_bootstrap() {
    local root base_python minor req_hash cache venv legacy linked
    root=$(pwd)
    if [ -d "$root/.venv" ] && [ ! -L "$root/.venv" ] && [ ! -f "$root/.venv/.genlab-shared" ]; then
        # A full .venv made by hand: use it as it is when it was built from this requirements.txt.
        if [ "$(cat "$root/.venv/.requirements-hash" 2>/dev/null)" = "$(sha256sum "$root/requirements.txt" | cut -c1-16)" ]; then
            PYTHON="$root/.venv/bin/python"
            return 0
        fi
        echo "error: .venv is a folder not built from this requirements.txt; remove it (rm -rf .venv) and rerun" >&2
        return 1
    fi
    base_python=$(genlab_find_python "$root") || return 1
    minor=$(genlab_python_minor "$base_python")
    req_hash=$(sha256sum "$root/requirements.txt" | cut -c1-16)
    cache=${GENLAB_VENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/generative-lab}
    venv="$cache/venv-py$minor-$req_hash"
    legacy="$cache/venv-$req_hash"  # before the Python version was in the name: always 3.11
    if [ ! -f "$venv/.complete" ] && [ -f "$legacy/.complete" ] && [ "$(genlab_python_minor "$legacy/bin/python")" = "$minor" ]; then
        venv=$legacy
    fi
    # The environment this clone already uses, when it matches, wherever its cache was.
    linked=$(head -n 1 "$root/.venv/.genlab-shared" 2>/dev/null)
    if [ ! -f "$venv/.complete" ] && [ -n "$linked" ] && [ -f "$linked/.complete" ] &&
        case $(basename "$linked") in "venv-py$minor-$req_hash" | "venv-$req_hash") true ;; *) false ;; esac; then
        venv=$linked
    fi
    mkdir -p "$cache"
    if [ ! -f "$venv/.complete" ]; then
        # One builder per environment; a second clone waits for it.
        (
            flock 9
            [ -f "$venv/.complete" ] || genlab_build_shared "$venv" "$base_python" "$root/requirements.txt"
        ) 9>"$venv.lock" || return 1
    fi
    if [ "$(cat "$root/.venv/.genlab-shared" 2>/dev/null)" != "$(printf '%s\n%s' "$venv" "$root")" ] ||
        ! (cd / && "$root/.venv/bin/python" -c 'import lab, sys; sys.exit(lab.__file__ != sys.argv[1])' \
            "$root/lab/__init__.py") >/dev/null 2>&1; then
        genlab_build_light "$root" "$venv" || return 1
    fi
    PYTHON="$root/.venv/bin/python"
}

genlab_bootstrap || exit 1
# Quieter TensorFlow start-up; its warnings about CPU instructions are not actionable here.
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
