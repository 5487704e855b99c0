# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Link setup.py's data_files and console scripts into the venv (called by scripts/setup.sh).

``pip install -e .`` does not install setup.py's ``data_files`` (the ament index marker,
package.xml, launch/*.py, config/*.yaml). This links each of them into the venv prefix,
as ``colcon build --symlink-install`` does, so ``share/sigma_ros/config/sigma.yaml`` is
the repository's file (edits show at once), not a second copy. It also links each
console script into ``<prefix>/lib/sigma_ros/`` (where ``ros2 run`` and launch_ros look).
The file list comes from setup.py itself (its setup() call is captured, not run).

Usage: python scripts/link_share.py VENV ROOT
"""

from __future__ import annotations

import importlib.metadata
import os
import runpy
import sys

import setuptools


def main(venv: str, root: str) -> int:
    manifest = os.path.join(venv, "share", "sigma_ros", ".sigma-setup-links")
    if os.path.exists(manifest):  # remove what the previous run linked
        with open(manifest) as fh:
            for line in fh.read().splitlines():
                if line and os.path.islink(line):
                    os.remove(line)

    captured: dict = {}
    setuptools.setup = lambda **kw: captured.update(kw)  # type: ignore[assignment]
    cwd = os.getcwd()
    os.chdir(root)
    try:
        runpy.run_path(os.path.join(root, "setup.py"), run_name="__main__")
    finally:
        os.chdir(cwd)

    links: list[str] = []

    def link(src: str, dst: str) -> None:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        if os.path.lexists(dst):
            if os.path.isdir(dst) and not os.path.islink(dst):
                raise SystemExit(f"link_share: {dst} is a directory")
            os.remove(dst)
        os.symlink(src, dst)
        links.append(dst)

    for dest, files in captured.get("data_files", []):
        for f in files:
            link(os.path.join(root, f), os.path.join(venv, dest, os.path.basename(f)))

    name = captured.get("name", "sigma_ros")
    for ep in importlib.metadata.distribution(name).entry_points:
        script = os.path.join(venv, "bin", ep.name)
        if ep.group == "console_scripts" and os.path.exists(script):
            link(script, os.path.join(venv, "lib", name, ep.name))

    os.makedirs(os.path.dirname(manifest), exist_ok=True)
    with open(manifest, "w") as fh:
        fh.write("".join(p + "\n" for p in links))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
