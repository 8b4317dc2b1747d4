#!/usr/bin/env bash
# Install napari-medseg with its test dependencies into .venv and run the whole test
# suite. napari needs an X display with OpenGL: without one the tests run under
# xvfb-run. Missing system packages (Qt's X libraries, Mesa, and Xvfb when there is no
# display) are installed with apt-get as root or through sudo.
#   scripts/test.sh [PYTEST ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

HAVE_DISPLAY=""
if [ -n "${DISPLAY:-}" ] || [ -n "${WAYLAND_DISPLAY:-}" ]; then HAVE_DISPLAY=1; fi
# Qt 6's xcb platform plugin and Mesa's OpenGL
APT_PACKAGES="libgl1 libegl1 libgl1-mesa-dri libglib2.0-0 libfontconfig1 libdbus-1-3 \
libxkbcommon0 libxkbcommon-x11-0 libx11-xcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 \
libxcb-keysyms1 libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-sync1 libxcb-xfixes0 \
libxcb-xkb1"
[ -z "$HAVE_DISPLAY" ] && APT_PACKAGES="$APT_PACKAGES xvfb xauth"
missing=""
if command -v dpkg >/dev/null 2>&1; then
    for package in $APT_PACKAGES; do
        dpkg -s "$package" >/dev/null 2>&1 || missing="$missing $package"
    done
fi
if [ -n "$missing" ]; then
    if [ "$(id -u)" -eq 0 ]; then
        SUDO=""
    elif command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "[test] missing system packages:$missing" >&2
        echo "[test] install them as root: apt-get install -y$missing" >&2
        exit 1
    fi
    echo "[test] installing system packages:$missing"
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

bash scripts/setup_env.sh "napari,test"
# shellcheck disable=SC1091
. .venv/bin/activate

export MEDSEG_REQUIRE_GUI=1   # GUI tests and tests needing test-only packages must run, not skip
if [ -n "$HAVE_DISPLAY" ]; then
    exec python -m pytest "$@"
fi
exec xvfb-run -a -s "-screen 0 1280x1024x24" python -m pytest "$@"
