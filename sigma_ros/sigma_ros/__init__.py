# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Sigma ROS 2 runtime: thin nodes around the sigma_model stage functions.

Modules that import rclpy or the generated messages are only imported by the nodes; the pure
helpers (graph description, QoS names, conversions of raw arrays) stay importable without ROS.
"""
