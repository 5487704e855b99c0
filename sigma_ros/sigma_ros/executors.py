# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""The executor of every Sigma process (node processes, the composed graph, sigma-demo, tests).

rclpy 9.1's ``MultiThreadedExecutor`` busy-spins (ros2/rclpy#1452, fixed upstream after the
Kilted 9.1.2 wheel): ``Executor._wait_for_ready_callbacks`` yields a callback task again while
it still waits in the thread pool's queue, on every wake-up of its wait set (each callback's start
and end wakes it), and the spinning thread resubmits it each time: under load it loops with the GIL
held while the workers cannot even start. :class:`MultiThreadedExecutor`
removes the cause: after submitting a callback it waits (GIL released) until a worker has
started it, so a queued task is never yielded twice. The Sigma nodes' callbacks are in one
mutually exclusive callback group per node (rclpy's default group), so nodes run in parallel and
a node's own callbacks never do.

rclpy's ``EventsExecutor`` (``rclpy.experimental``) does not spin either, but in the 9.1.2 wheel
creating or destroying a subscription or timer of a node it spins (what a lifecycle configure
does) never returns: it is not used. README "Executors" has the measurements.
"""

from __future__ import annotations

import os
import threading

from rclpy import executors as _rclpy_executors
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy

KINDS = ("multi_threaded", "single_threaded", "rclpy_multi_threaded")  # the last: rclpy's own, for comparison
DEFAULT = "multi_threaded"


class MultiThreadedExecutor(_rclpy_executors.MultiThreadedExecutor):
    """rclpy's MultiThreadedExecutor without its busy spin.

    A callback is handed to the pool and the spinning thread waits until a worker has started it before it looks for
    more work.
    """

    def _spin_once_impl(self, timeout_sec=None, wait_condition=lambda: False) -> None:
        try:
            handler, _entity, _node = self.wait_for_ready_callbacks(timeout_sec, None, wait_condition)
        except (_rclpy_executors.ExternalShutdownException, _rclpy_executors.ShutdownException,
                _rclpy_executors.TimeoutException, _rclpy_executors.ConditionReachedException):
            return
        except _rclpy.RCLError:
            if self._context.ok():
                raise
            return  # SIGINT shut the context down while the wait set was being made: spin() ends
        started = threading.Event()

        def run() -> None:
            started.set()
            handler()

        self._executor.submit(run)
        self._futures.append(handler)
        while not started.wait(0.1) and not self._is_shutdown:
            pass  # every worker busy: wait for one instead of yielding the queued task again
        for future in self._futures[:]:
            if future.done():
                self._futures.remove(future)
                future.result()  # raise any exceptions


def make_executor(context=None, kind: str | None = None):
    """Return a new executor of ``kind`` (else ``$SIGMA_EXECUTOR``, else DEFAULT), one of KINDS."""
    kind = kind or os.environ.get("SIGMA_EXECUTOR") or DEFAULT
    if kind == "multi_threaded":
        # a worker per node of the composed graph (+ the probe / manager): the controller's tick
        # does not wait behind two model stages
        return MultiThreadedExecutor(num_threads=max(5, os.cpu_count() or 1), context=context)
    if kind == "single_threaded":
        return _rclpy_executors.SingleThreadedExecutor(context=context)
    if kind == "rclpy_multi_threaded":  # busy-spins (benchmarks/bench_executors.py shows it)
        return _rclpy_executors.MultiThreadedExecutor(num_threads=max(5, os.cpu_count() or 1), context=context)
    raise ValueError(f"unknown executor {kind!r}; one of {KINDS}")
