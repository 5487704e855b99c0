# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-instruct --text="pick up the red cube"``: publish a text instruction to /instruction.

The same as ``ros2 topic pub --once /instruction std_msgs/msg/String "data: '...'"`` for
installs without the ros2 CLI: waits until the language node subscribes (so the message is not
lost), publishes with the instruction QoS (reliable), and waits for it to be delivered.
``--reset=true`` first starts a new episode (``sigma/reset``, std_msgs/Empty: every node forgets its
memory, tau and plans), also when the text is the same as before; ``--reset=true`` alone only resets.
Every field of InstructConfig is ``--field=value`` (draccus, :mod:`sigma_model.cli`).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

from sigma_model.cli import parse_cli

from sigma_ros.conversions import clean_instruction
from sigma_ros.graph import TOPIC_BY_KEY

PROG = "sigma-instruct"


@dataclass
class InstructConfig:
    """sigma-instruct's command line."""

    text: str | None = None  # the instruction (white space runs become one space)
    reset: bool = False  # start a new episode first (sigma/reset)
    max_chars: int = 2000  # longest accepted instruction
    topic: str = "/" + TOPIC_BY_KEY["instruction"].name  # the instruction topic
    wait: float = 10.0  # seconds to wait for a subscriber
    repeat: int = 1  # publish this many times, 1 s apart

    def __post_init__(self) -> None:
        if self.text is None and not self.reset:
            raise ValueError("give an instruction (--text=...), --reset=true, or both")
        if self.max_chars <= 0 or self.wait < 0 or self.repeat < 1:
            raise ValueError("--max_chars and --repeat must be >= 1, --wait >= 0")
        if self.text is not None:
            self.text = clean_instruction(self.text, self.max_chars)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_cli(InstructConfig, argv, PROG, description=__doc__)

    import rclpy
    from rclpy.duration import Duration
    from std_msgs.msg import Empty, String

    from sigma_ros import qos

    rclpy.init(args=None)
    node = rclpy.create_node("sigma_instruct")
    try:
        if cfg.reset:
            reset_pub = node.create_publisher(Empty, "/" + TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
            _wait_for_subscribers(node, reset_pub, cfg.wait, 4)  # the four nodes
            reset_pub.publish(Empty())
            reset_pub.wait_for_all_acked(Duration(seconds=2.0))
            print(f"{PROG}: new episode ({reset_pub.get_subscription_count()} node(s) reset)")
        if cfg.text is not None:
            pub = node.create_publisher(String, cfg.topic, qos.INSTRUCTION)
            _wait_for_subscribers(node, pub, cfg.wait, 1)
            for i in range(cfg.repeat):
                pub.publish(String(data=cfg.text))
                if i + 1 < cfg.repeat:
                    time.sleep(1.0)
            # Reliable delivery: give the middleware a moment before the participant disappears.
            pub.wait_for_all_acked(Duration(seconds=2.0))
            print(f"{PROG}: published to {cfg.topic} ({pub.get_subscription_count()} subscriber(s)): {cfg.text!r}")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def _wait_for_subscribers(node, pub, wait_s: float, n: int) -> None:
    import rclpy

    deadline = time.monotonic() + wait_s
    while pub.get_subscription_count() < n and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    if pub.get_subscription_count() == 0:
        print(f"{PROG}: no subscriber on {pub.topic_name} after {wait_s:.1f}s; publishing anyway", file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
