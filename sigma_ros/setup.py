"""sigma_ros: the ROS 2 runtime of Sigma (ament_python package).

The model (``sigma_model``) and the simulator (``sigma_sim``) are plain pip packages next to this
one. Installed by scripts/setup.sh with ``pip install -e sigma_ros --no-deps`` (dependencies are
pinned in requirements.txt), or by ``colcon build`` on a ROS 2 install.
"""

from glob import glob

from setuptools import find_packages, setup

package_name = "sigma_ros"

# ---------------------------------------------------------------------------
# Console scripts: one "name = module:function" line each. Add yours here.
# ---------------------------------------------------------------------------
CONSOLE_SCRIPTS = [
    "sigma-demo = sigma_ros.demo:main",
    "sigma-bag-eval = sigma_ros.bag_replay:main",
    "sigma-bag-to-lerobot = sigma_ros.bag_convert:bag_to_lerobot_main",
    "sigma-lerobot-to-bag = sigma_ros.bag_convert:lerobot_to_bag_main",
    "sigma-sim-node = sigma_ros.sim_node:main",
    "sigma-robot = sigma_ros.robot_node:main",
    "sigma-graph = sigma_ros.graph_main:main",
    "sigma-instruct = sigma_ros.instruct:main",
    "sigma-perception = sigma_ros.perception_node:main",
    "sigma-language = sigma_ros.language_node:main",
    "sigma-action = sigma_ros.action_node:main",
    "sigma-controller = sigma_ros.controller_node:main",
]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(include=["sigma_ros", "sigma_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", sorted(glob("launch/*.py"))),
        ("share/" + package_name + "/config", sorted(glob("config/*.yaml"))),
    ],
    # sigma-model and sigma-sim (pip packages of this repository) and the rest are pinned in
    # requirements.txt; kept out of here so that no install step ever re-resolves torch.
    install_requires=[],
    zip_safe=False,
    maintainer="Sigma maintainers",
    maintainer_email="sigma@example.com",
    description="ROS 2 runtime of the Sigma VLA: perception, language-intent, action and controller nodes.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
