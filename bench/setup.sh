#!/usr/bin/env bash
# Create the benchmark venvs with pinned peer versions (idempotent).
#
#   bench/.venv      driver + rq, dramatiq, celery, huey, taskiq(+redis), streaq, redis-py 8.x
#   bench/.venv-arq  arq 0.28.0 (pins redis<6)
#   bench/.venv-saq  saq 0.26.4 (pins redis<8; imports typing_extensions undeclared)
#
# Every venv also gets genqueue from this repository (editable, with the redis extra; the
# main venv with the postgres extra too, for the genqueue-postgres configs).
# A peer that cannot be installed is recorded in bench/.venv/bench-missing.txt and
# skipped; the driver then reports it as failed. Re-running skips what is installed:
# each install step writes a marker named after the hash of what it installed.
#
# LATEST=1 installs the newest release of each peer instead of the pinned ones.
set -uo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
PY="${PYTHON:-python3}"
LATEST="${LATEST:-0}"

pin() {  # pin NAME VERSION -> "NAME==VERSION" (or "NAME" with LATEST=1)
    if [ "$LATEST" = "1" ]; then echo "$1"; else echo "$1==$2"; fi
}

# The peers, one install step each: venv | requirement(s) | label
MAIN_REDIS='redis[hiredis]>=8,<9'
PEERS_MAIN=(
    "rq|$(pin rq 3.0.0)"
    "dramatiq|$(pin 'dramatiq[redis]' 2.2.1)"
    "celery|$(pin 'celery[redis]' 5.7.0)"
    "huey|$(pin huey 3.5.4)"
    "taskiq|$(pin taskiq 0.13.0) $(pin taskiq-redis 1.2.4)"
    "streaq|$(pin streaq 7.2.0)"
)

log() { printf '[setup] %s\n' "$*" >&2; }

marker_ok() {  # marker_ok VENV KEY -> 0 if the step with this key already ran
    [ -f "$1/.bench-steps/$(printf '%s' "$2" | sha1sum | cut -c1-16)" ]
}
marker_set() {
    mkdir -p "$1/.bench-steps"
    printf '%s\n' "$2" >"$1/.bench-steps/$(printf '%s' "$2" | sha1sum | cut -c1-16)"
}

# step VENV LABEL ARGS... : pip install ARGS once (keyed by the args; a step that installs
# genqueue is also keyed by pyproject.toml, so a change of genqueue's dependencies re-runs it)
step() {
    local venv="$1" label="$2"
    shift 2
    local key="$label|$*"
    case "$*" in *"$ROOT"*) key="$key|$(sha1sum "$ROOT/pyproject.toml" | cut -c1-16)" ;; esac
    if marker_ok "$venv" "$key"; then
        log "$(basename "$venv"): $label already installed"
        return 0
    fi
    log "$(basename "$venv"): installing $label ($*)"
    if "$venv/bin/python" -m pip install --quiet "$@" >>"$venv/bench-setup.log" 2>&1; then
        marker_set "$venv" "$key"
        sed -i "/^$label\t/d" "$venv/bench-missing.txt" 2>/dev/null
        return 0
    fi
    log "$(basename "$venv"): FAILED to install $label (see $venv/bench-setup.log)"
    sed -i "/^$label\t/d" "$venv/bench-missing.txt" 2>/dev/null
    printf '%s\t%s\n' "$label" "$(grep -m1 ERROR "$venv/bench-setup.log" | cut -c1-300)" \
        >>"$venv/bench-missing.txt"
    return 1
}

make_venv() {
    local venv="$1"
    if [ ! -x "$venv/bin/python" ]; then
        log "creating $venv"
        "$PY" -m venv "$venv" || { log "cannot create $venv"; return 1; }
    fi
    : >>"$venv/bench-missing.txt"
}

start=$(date +%s)

# -- main venv: the driver, genqueue and the peers that agree on redis-py 8.x ----------
V="$BENCH/.venv"
make_venv "$V" || exit 1
step "$V" base "$MAIN_REDIS" psutil || exit 1
step "$V" genqueue "$MAIN_REDIS" -e "$ROOT[redis,postgres]" || exit 1
for entry in "${PEERS_MAIN[@]}"; do
    label="${entry%%|*}"
    reqs="${entry#*|}"
    # shellcheck disable=SC2086  # word splitting of the requirement list is intended
    step "$V" "$label" $reqs "$MAIN_REDIS"
done

# -- arq: pins redis<6 ---------------------------------------------------------------
V="$BENCH/.venv-arq"
if make_venv "$V"; then
    step "$V" arq "$(pin arq 0.28.0)" && step "$V" genqueue "$(pin arq 0.28.0)" -e "$ROOT[redis]"
fi

# -- saq: pins redis<8 and imports typing_extensions without declaring it -------------
V="$BENCH/.venv-saq"
if make_venv "$V"; then
    step "$V" saq "$(pin 'saq[redis]' 0.26.4)" typing_extensions &&
        step "$V" genqueue "$(pin 'saq[redis]' 0.26.4)" -e "$ROOT[redis]"
fi

log "done in $(($(date +%s) - start)) s"
for venv in "$BENCH/.venv" "$BENCH/.venv-arq" "$BENCH/.venv-saq"; do
    if [ -s "$venv/bench-missing.txt" ]; then
        log "not installed in $(basename "$venv"):"
        cut -f1 "$venv/bench-missing.txt" | sed 's/^/[setup]   /' >&2
    fi
done
exit 0
