"""Bring managed nodes up through the standard lifecycle services.

``<node>/get_state`` and ``<node>/change_state`` (``lifecycle_msgs``) are what ``ros2 lifecycle
set`` and launch_ros call; ``sigma-graph`` (both modes), ``sigma-demo`` and the test harness drive
the Sigma nodes with :class:`LifecycleClient` from a node of their own whose executor spins in
another thread (the calls here block).
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from lifecycle_msgs.msg import Transition


class LifecycleClient:
    """The lifecycle services of one node, called from a thread other than the executor's."""

    def __init__(self, node, target: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.target = "/" + target.lstrip("/")
        self._node = node
        self._get = node.create_client(GetState, f"{self.target}/get_state")
        self._change = node.create_client(ChangeState, f"{self.target}/change_state")

    def destroy(self) -> None:
        self._node.destroy_client(self._get)
        self._node.destroy_client(self._change)

    def _call(self, client, request, timeout_s: float, alive: Callable[[], bool]):
        """The response, or None (no server, no answer within ``timeout_s``, or not ``alive()``)."""
        if not client.service_is_ready():
            return None
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + timeout_s
        while not done.wait(0.1):
            if time.monotonic() > deadline or not alive():
                client.remove_pending_request(future)
                return None
        return future.result()

    def state(self, timeout_s: float = 2.0, alive: Callable[[], bool] = lambda: True) -> str | None:
        """The node's primary state label (unconfigured, inactive, active, finalized), or None."""
        from lifecycle_msgs.srv import GetState

        response = self._call(self._get, GetState.Request(), timeout_s, alive)
        return None if response is None else response.current_state.label

    def change(self, transition_id: int, timeout_s: float = 10.0,
               alive: Callable[[], bool] = lambda: True) -> bool | None:
        """Request a transition: True (done), False (refused or failed), None (no answer)."""
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request()
        request.transition.id = transition_id
        response = self._call(self._change, request, timeout_s, alive)
        return None if response is None else bool(response.success)

    def bring_up(self, timeout_s: float = 120.0, alive: Callable[[], bool] = lambda: True) -> tuple[bool, str]:
        """configure (if unconfigured) then activate, until the node reports ``active``.

        Retries while the service is not there yet or does not answer (a node still starting, or
        the old process of a restarted node still in the graph). Returns (ok, what happened).
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not alive():
                return False, "the node exited"
            state = self.state(2.0, alive)
            if state == "active":
                return True, "active"
            if state in ("unconfigured", "inactive"):
                transition, name = (
                    (Transition.TRANSITION_CONFIGURE, "configure") if state == "unconfigured"
                    else (Transition.TRANSITION_ACTIVATE, "activate"))
                ok = self.change(transition, max(1.0, deadline - time.monotonic()), alive)
                if ok is False:
                    return False, f"{name} failed"
                continue
            if state == "finalized":
                return False, "the node is finalized"
            time.sleep(0.1)  # no answer yet, or mid-transition
        return False, f"not active within {timeout_s:g} s"


def bring_up_all(manager_node, names, timeout_s: float = 120.0,
                 alive: Callable[[str], bool] = lambda _name: True) -> dict[str, tuple[bool, str]]:
    """:meth:`LifecycleClient.bring_up` of every node in ``names`` at once (their configure
    steps load checkpoints in parallel); {name: (ok, what happened)}."""
    clients = {name: LifecycleClient(manager_node, name) for name in names}
    results: dict[str, tuple[bool, str]] = {}

    def run(name: str) -> None:
        results[name] = clients[name].bring_up(timeout_s, alive=lambda: alive(name))

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for client in clients.values():
        client.destroy()
    return results
