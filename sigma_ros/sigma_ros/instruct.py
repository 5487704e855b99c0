# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""``sigma-instruct "pick up the red cube"``: publish a text instruction to /instruction.

The same as ``ros2 topic pub --once /instruction std_msgs/msg/String "data: '...'"`` for
installs without the ros2 CLI: waits until the language node subscribes (so the message is not
lost), publishes with the instruction QoS (reliable), and waits for it to be delivered.
``--reset`` first starts a new episode (``sigma/reset``, std_msgs/Empty: every node forgets its
memory, tau and plans), also when the text is the same as before; ``--reset`` alone only resets.
"""

from __future__ import annotations

import argparse
import sys
import time

from sigma_ros.conversions import ConversionError, clean_instruction
from sigma_ros.graph import TOPIC_BY_KEY


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sigma-instruct", description=__doc__.split("\n\n")[0])
    ap.add_argument("text", nargs="?", default=None, help="instruction text")
    ap.add_argument("--reset", action="store_true", help="start a new episode first (sigma/reset)")
    ap.add_argument("--max-chars", type=int, default=2000, help="longest accepted instruction (default 2000)")
    ap.add_argument("--topic", default="/" + TOPIC_BY_KEY["instruction"].name, help="topic (default: /instruction)")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a subscriber (default 10)")
    ap.add_argument("--repeat", type=int, default=1, help="publish this many times, 1 s apart")
    args = ap.parse_args(argv)
    if args.text is None and not args.reset:
        ap.error("give an instruction, --reset, or both")
    if args.text is not None:
        try:
            args.text = clean_instruction(args.text, args.max_chars)
        except ConversionError as err:
            print(f"sigma-instruct: {err}", file=sys.stderr)
            return 2

    import rclpy
    from rclpy.duration import Duration
    from std_msgs.msg import Empty, String

    from sigma_ros import qos

    rclpy.init(args=None)
    node = rclpy.create_node("sigma_instruct")
    try:
        if args.reset:
            reset_pub = node.create_publisher(Empty, "/" + TOPIC_BY_KEY["reset"].name, qos.INSTRUCTION)
            _wait_for_subscribers(node, reset_pub, args.wait, 4)  # the four nodes
            reset_pub.publish(Empty())
            reset_pub.wait_for_all_acked(Duration(seconds=2.0))
            print(f"sigma-instruct: new episode ({reset_pub.get_subscription_count()} node(s) reset)")
        if args.text is not None:
            pub = node.create_publisher(String, args.topic, qos.INSTRUCTION)
            _wait_for_subscribers(node, pub, args.wait, 1)
            for i in range(max(1, args.repeat)):
                pub.publish(String(data=args.text))
                if i + 1 < args.repeat:
                    time.sleep(1.0)
            # Reliable delivery: give the middleware a moment before the participant disappears.
            pub.wait_for_all_acked(Duration(seconds=2.0))
            print(f"sigma-instruct: published to {args.topic} ({pub.get_subscription_count()} subscriber(s)): "
                  f"{args.text!r}")
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
        print(f"sigma-instruct: no subscriber on {pub.topic_name} after {wait_s:.1f}s; publishing anyway",
              file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
