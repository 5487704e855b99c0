"""``sigma-instruct "pick up the red cube"``: publish a text instruction to /instruction.

The same as ``ros2 topic pub --once /instruction std_msgs/msg/String "data: '...'"`` for
installs without the ros2 CLI: waits until the language node subscribes (so the message is not
lost), publishes with the instruction QoS (reliable), and waits for it to be delivered.
"""

from __future__ import annotations

import argparse
import sys
import time

from sigma_ros.graph import TOPIC_BY_KEY


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="sigma-instruct", description=__doc__.split("\n\n")[0])
    ap.add_argument("text", help="instruction text")
    ap.add_argument("--topic", default="/" + TOPIC_BY_KEY["instruction"].name, help="topic (default: /instruction)")
    ap.add_argument("--wait", type=float, default=10.0, help="seconds to wait for a subscriber (default 10)")
    ap.add_argument("--repeat", type=int, default=1, help="publish this many times, 1 s apart")
    args = ap.parse_args(argv)

    import rclpy
    from rclpy.duration import Duration
    from std_msgs.msg import String

    from sigma_ros import qos

    rclpy.init(args=None)
    node = rclpy.create_node("sigma_instruct")
    try:
        pub = node.create_publisher(String, args.topic, qos.INSTRUCTION)
        deadline = time.monotonic() + args.wait
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.05)
        if pub.get_subscription_count() == 0:
            print(f"sigma-instruct: no subscriber on {args.topic} after {args.wait:.1f}s; publishing anyway",
                  file=sys.stderr)
        for i in range(max(1, args.repeat)):
            pub.publish(String(data=args.text))
            if i + 1 < args.repeat:
                time.sleep(1.0)
        # Reliable delivery: give the middleware a moment before the participant disappears.
        pub.wait_for_all_acked(Duration(seconds=2.0))
        print(f"sigma-instruct: published to {args.topic} ({pub.get_subscription_count()} subscriber(s)): {args.text!r}")
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
