# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""ROS 2 environment for the Sigma virtual environment (PyPI ROS 2 wheels).

scripts/setup.sh copies this file into the venv's site-packages as
``_sigma_venv_env.py`` and loads it from ``00-sigma-venv-env.pth``, so every
interpreter of the venv (python, pytest, console scripts, subprocesses) can use
rclpy and the CMake-built ``sigma_ros_msgs`` with no ``source`` step:

* ``AMENT_PREFIX_PATH`` gets the venv prefix in front (ament_index lookups:
  ``get_package_share_directory('sigma_ros')``, ``sigma_ros_msgs``, ...).
* ``RMW_IMPLEMENTATION`` defaults to ``rmw_fastrtps_cpp`` (the one the wheels ship).
* ``LD_LIBRARY_PATH`` must name ``<venv>/lib`` (ROS and sigma_ros_msgs libraries
  and type supports, loaded with dlopen) and the wheels' ``ros_*.libs`` folders.
  The dynamic loader reads it only at process start, so when it is missing the
  interpreter re-executes itself once with it set (the ros-wheels-bootstrapper
  does the same, in random order; this runs first, puts the venv's folders first
  in a fixed order and marks the bootstrapper done).

Only this venv's interpreters load it; a ROS 2 install from apt (colcon) is not
touched. Set ``SIGMA_VENV_ENV=0`` to switch it off. Never raises.
"""

import os
import sys


def _prepend(value, items):
    parts = [p for p in (value or "").split(os.pathsep) if p]
    new = [i for i in items if i not in parts]
    return os.pathsep.join(new + parts)


def _setup():
    if os.environ.get("SIGMA_VENV_ENV", "1") == "0":
        return
    prefix = sys.prefix
    env = os.environ
    env["AMENT_PREFIX_PATH"] = _prepend(env.get("AMENT_PREFIX_PATH"), [prefix])
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

    site = os.path.join(prefix, "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
    lib_dirs = [os.path.join(prefix, "lib")]
    try:
        lib_dirs += sorted(
            os.path.join(site, d)
            for d in os.listdir(site)
            if d.startswith("ros_") and d.endswith(".libs") and os.path.isdir(os.path.join(site, d))
        )
    except OSError:
        pass
    current = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    guard = "_SIGMA_VENV_ENV_REEXEC"
    if all(d in current for d in lib_dirs):
        env["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] = "1"
        env.pop(guard, None)
        return
    if env.get(guard) == prefix:
        return  # already re-executed once for this prefix: never loop
    env["LD_LIBRARY_PATH"] = _prepend(env.get("LD_LIBRARY_PATH"), lib_dirs)
    env["_ROS_WHEELS_BOOTSTRAP_COMPLETE"] = "1"
    env[guard] = prefix
    argv = getattr(sys, "orig_argv", None)
    if not argv or not sys.executable:
        return
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, argv)
    except OSError as exc:  # keep the interpreter usable; rclpy may then fail to load
        sys.stderr.write("sigma venv env: re-exec with LD_LIBRARY_PATH failed: %s\n" % exc)


try:
    _setup()
except Exception as _exc:  # pragma: no cover - never break interpreter start
    sys.stderr.write("sigma venv env: %s\n" % _exc)
