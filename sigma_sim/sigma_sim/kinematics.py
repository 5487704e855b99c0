# Copyright 2026 The Sigma Authors
# SPDX-License-Identifier: Apache-2.0
"""Kinematics helpers for the SO-101 model: grasp point, top-down IK, gravity feed-forward.

All computations run on a private ``MjData`` so they never disturb the
simulation state.
"""

from __future__ import annotations

import mujoco
import numpy as np

from sigma_sim.scene import ARM_JOINTS, EE_SITE, GRIPPER_JOINT, JAW_PAD_GEOMS

#: Gripper angle (rad) at which the fingertip pads are parallel, 40 mm apart.
GRASP_JAW_ANGLE = 0.46
DOWN = np.array([0.0, 0.0, -1.0])


class ArmKinematics:
    """Damped-least-squares IK for the point between the fingertips.

    The controlled frame is the ``gripperframe`` site, whose x axis runs out
    along the jaws (the wrist-roll axis) and whose z axis runs from the fixed
    jaw towards the moving jaw. A *top-down* pose points x straight down and
    lays z along a given horizontal jaw direction; the SO-101's five arm
    joints can realise that (pan + three pitch joints + roll) inside its
    workspace, so the 6-row task (position + orientation) is solved in the
    least-squares sense with orientation weighted lower than position.
    """

    def __init__(self, model: mujoco.MjModel):
        self.model = model
        self.data = mujoco.MjData(model)
        self.site_id = model.site(EE_SITE).id
        self.arm_qpos_adr = np.array([model.jnt_qposadr[model.joint(n).id] for n in ARM_JOINTS])
        self.arm_dof_adr = np.array([model.jnt_dofadr[model.joint(n).id] for n in ARM_JOINTS])
        self.gripper_qpos_adr = model.jnt_qposadr[model.joint(GRIPPER_JOINT).id]
        self.low = model.jnt_range[[model.joint(n).id for n in ARM_JOINTS], 0].copy()
        self.high = model.jnt_range[[model.joint(n).id for n in ARM_JOINTS], 1].copy()
        act = [model.actuator(n).id for n in ARM_JOINTS]
        self.kp = model.actuator_gainprm[act, 0].copy()
        self.grasp_offset = self._grasp_point_offset()
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _grasp_point_offset(self) -> np.ndarray:
        """Midpoint of the two pads at :data:`GRASP_JAW_ANGLE`, in the site frame."""
        m, d = self.model, self.data
        d.qpos[:] = m.qpos0
        d.qpos[self.gripper_qpos_adr] = GRASP_JAW_ANGLE
        mujoco.mj_kinematics(m, d)
        mid = np.mean([d.geom_xpos[m.geom(n).id] for n in JAW_PAD_GEOMS], axis=0)
        return d.site_xmat[self.site_id].reshape(3, 3).T @ (mid - d.site_xpos[self.site_id])

    def _set(self, q_arm: np.ndarray) -> None:
        self.data.qpos[self.arm_qpos_adr] = q_arm
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def grasp_frame(self, q_arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World position of the grasp point and site rotation matrix at ``q_arm``."""
        self._set(np.asarray(q_arm, dtype=float))
        R = self.data.site_xmat[self.site_id].reshape(3, 3).copy()
        return self.data.site_xpos[self.site_id] + R @ self.grasp_offset, R

    def grasp_point(self, data: mujoco.MjData) -> np.ndarray:
        """Grasp point in an external ``MjData`` (already forwarded)."""
        R = data.site_xmat[self.site_id].reshape(3, 3)
        return data.site_xpos[self.site_id] + R @ self.grasp_offset

    @staticmethod
    def top_down_rotation(jaw_dir: np.ndarray) -> np.ndarray:
        """Site rotation with x pointing down and z along horizontal ``jaw_dir``."""
        z = np.array([jaw_dir[0], jaw_dir[1], 0.0])
        z /= np.linalg.norm(z)
        x = DOWN
        y = np.cross(z, x)
        return np.column_stack([x, y, z])

    def solve(
        self,
        target_pos: np.ndarray,
        target_rot: np.ndarray,
        q_seed: np.ndarray,
        iterations: int = 40,
        damping: float = 1e-3,
        rot_weight: float = 0.05,
        tol: float = 1e-5,
    ) -> tuple[np.ndarray, float]:
        """Arm joint angles placing the grasp point at ``target_pos`` with ``target_rot``.

        Args:
            target_pos: Grasp point (3,), world frame.
            target_rot: Desired site rotation matrix (3, 3).
            q_seed: Starting arm angles (5,); the solution stays on its branch.
            iterations: Maximum Gauss-Newton iterations.
            damping: Levenberg-Marquardt damping (lambda^2).
            rot_weight: Metres of position error per radian of orientation error.
            tol: Stop when the weighted error norm is below this.

        Returns:
            ``(q_arm (5,), position error in metres)``.
        """
        q = np.clip(np.asarray(q_seed, dtype=float).copy(), self.low, self.high)
        m, d = self.model, self.data
        pos_err = np.inf
        for _ in range(iterations):
            self._set(q)
            R = d.site_xmat[self.site_id].reshape(3, 3)
            point = d.site_xpos[self.site_id] + R @ self.grasp_offset
            e_pos = target_pos - point
            e_rot = 0.5 * sum(np.cross(R[:, i], target_rot[:, i]) for i in range(3))
            pos_err = float(np.linalg.norm(e_pos))
            err = np.concatenate([e_pos, rot_weight * e_rot])
            if np.linalg.norm(err) < tol:
                break
            mujoco.mj_jac(m, d, self._jacp, self._jacr, point, m.site_bodyid[self.site_id])
            J = np.vstack([self._jacp[:, self.arm_dof_adr], rot_weight * self._jacr[:, self.arm_dof_adr]])
            dq = np.linalg.solve(J.T @ J + damping * np.eye(J.shape[1]), J.T @ err)
            q = np.clip(q + dq, self.low, self.high)
        else:
            self._set(q)
            R = d.site_xmat[self.site_id].reshape(3, 3)
            pos_err = float(np.linalg.norm(target_pos - d.site_xpos[self.site_id] - R @ self.grasp_offset))
        return q, pos_err

    def gravity_offset(self, q_arm: np.ndarray, gripper: float = 0.0) -> np.ndarray:
        """Extra position target (rad) that cancels the arm's gravity sag at ``q_arm``.

        A ``<position>`` actuator settles where ``kp * (target - q)`` balances
        the gravity torque, so commanding ``q + bias / kp`` holds ``q``.
        """
        m, d = self.model, self.data
        d.qpos[self.arm_qpos_adr] = q_arm
        d.qpos[self.gripper_qpos_adr] = gripper
        d.qvel[:] = 0.0
        mujoco.mj_kinematics(m, d)
        mujoco.mj_comPos(m, d)
        mujoco.mj_comVel(m, d)
        bias = np.zeros(m.nv)
        mujoco.mj_rne(m, d, 0, bias)
        return bias[self.arm_dof_adr] / self.kp
