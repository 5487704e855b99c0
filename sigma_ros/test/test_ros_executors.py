# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""sigma_ros.executors.

The multi-threaded executor does not busy-spin while every worker is busy (rclpy 9.1's yields a queued callback again
and again, ros2/rclpy#1452), and runs every callback.
"""

from __future__ import annotations

import threading
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.callback_groups import MutuallyExclusiveCallbackGroup  # noqa: E402

from sigma_ros.executors import KINDS, MultiThreadedExecutor, make_executor  # noqa: E402
from sigma_ros.testing import isolated_context  # noqa: E402


def _wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not reached")
        time.sleep(0.01)


@pytest.mark.filterwarnings("ignore:MultiThreadedExecutor is used with a single thread")
def test_no_busy_spin_while_the_only_worker_is_busy():
    context = isolated_context("test_ros_executors")
    node = rclpy.create_node("executor_probe", context=context)
    executor = MultiThreadedExecutor(num_threads=1, context=context)  # b waits in the pool's queue while a runs
    release, blocking = threading.Event(), threading.Event()
    ran = {"a": 0, "b": 0}
    searches = []
    find = executor.wait_for_ready_callbacks

    def counted(*args, **kwargs):
        searches.append(1)
        return find(*args, **kwargs)

    executor.wait_for_ready_callbacks = counted

    def a() -> None:
        ran["a"] += 1
        blocking.set()
        release.wait(30.0)

    def b() -> None:
        ran["b"] += 1

    timer_a = node.create_timer(0.01, a, callback_group=MutuallyExclusiveCallbackGroup())
    node.create_timer(0.01, b, callback_group=MutuallyExclusiveCallbackGroup())
    executor.add_node(node)
    spin = threading.Thread(target=executor.spin, daemon=True)
    spin.start()
    try:
        _wait(blocking.is_set)
        _wait(lambda: len(searches) >= 2)  # a is running, b was handed to the pool after it
        before = len(searches)
        for _ in range(20):  # what other callbacks starting and ending, or new messages, do
            executor.wake()
            time.sleep(0.02)
        # rclpy's executor yields the queued b again on each wake-up and hands it to the pool once
        # more; this one waits until a worker has started b
        assert len(searches) - before <= 1, len(searches) - before
        assert ran["b"] == 0
        timer_a.cancel()
        release.set()
        _wait(lambda: ran["b"] >= 3)  # b runs once the worker is free, and again on its timer
        assert ran["a"] == 1
    finally:
        release.set()
        executor.shutdown(timeout_sec=5.0)
        spin.join(timeout=5.0)
        node.destroy_node()
        context.try_shutdown()


def test_make_executor_kinds_and_refuses_unknown(monkeypatch):
    context = isolated_context("test_ros_executors_kinds")
    try:
        for kind in KINDS:
            executor = make_executor(context, kind)
            executor.shutdown()
        monkeypatch.setenv("SIGMA_EXECUTOR", "single_threaded")
        executor = make_executor(context)
        assert type(executor).__name__ == "SingleThreadedExecutor"
        executor.shutdown()
        with pytest.raises(ValueError, match="unknown executor 'fast'"):
            make_executor(context, "fast")
    finally:
        context.try_shutdown()


def test_spin_ends_cleanly_when_sigint_shuts_the_context_down_mid_wait(monkeypatch):
    """Check the race that made the composed graph exit 1 on SIGINT.

    rclpy's signal handler shuts the context down between spin()'s check and the wait set's creation, which then
    raises RCLError.
    """
    from rclpy.executors import _rclpy as executor_rclpy

    context = isolated_context("test_ros_executors_sigint")
    node = rclpy.create_node("executor_sigint_probe", context=context)
    node.create_timer(0.01, lambda: None)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    real = executor_rclpy.WaitSet

    def wait_set_after_sigint(*args, **kwargs):
        context.try_shutdown()  # what rclpy's SIGINT handler does
        return real(*args, **kwargs)

    monkeypatch.setattr(executor_rclpy, "WaitSet", wait_set_after_sigint)
    done = threading.Event()
    spin = threading.Thread(target=lambda: (executor.spin(), done.set()), daemon=True)
    spin.start()
    spin.join(20.0)
    assert done.is_set()  # spin() returned instead of raising RCLError
