# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Evaluation of Sigma (paper sections 4.3, 5, 6): the inference adapter, offline replay, the report.

- :mod:`.adapter` - ``RiskGatedAdapter`` / ``AdapterConfig`` (pure torch; the ROS action node uses it too).
- :mod:`.replay` - offline closed-loop replay of shards under telepathy on/off x adapter on/off + baseline.
- :mod:`.report` - ``sigma_eval_report.json``, the batch log, confidence intervals and PNG plots, all from
  per-batch records (reusable by other replays, e.g. rosbag).
- :mod:`.evaluate` - the ``sigma-eval`` command.
"""

from .adapter import AdapterConfig, AdapterOutput, RiskGatedAdapter

__all__ = ["AdapterConfig", "AdapterOutput", "RiskGatedAdapter"]
