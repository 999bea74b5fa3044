"""Interpreter rules for thread-block clusters: `ClusterReduce` and `ClusterSync`.

Input: those statements and the `Machine` of a kernel with `Kernel.cluster` = C > 1 (blocks
b, b + 1, ..., b + C - 1 with b % C == 0 form a cluster; the grid is a multiple of C).
Output: a ClusterReduce leaves in its destinations, in every thread of a cluster, the fold from
rank 0 up of thread 0's sources of each block -- exactly the device helper's order
(codegen_templates/nvf_cluster.cuh), so the result is bit-identical in every block and to the
device wherever numpy and the device round alike.

Checks (InterpretError): the grid is a multiple of the cluster; the statement is reached by
every thread of a cluster or none; the slot is a declared shared array of the value dtype with
a place per source, untouched since the block's last barrier, and a slot serves one
ClusterReduce only (another block may still be reading it: the device helper never waits for
that).  A ClusterReduce is a barrier for the block's own shared memory as well (release /
acquire); a ClusterSync is relaxed and orders nothing.
"""

from __future__ import annotations

import numpy as np

from nvfuse.interpret.reduce import State, scalar_combine, sources, welford_combine
from nvfuse.interpret.shared import barrier, check_quiet
from nvfuse.interpret.state import Machine, assign_var, register_stmt, uniform_groups
from nvfuse.lower.kir import ClusterReduce, ClusterSync


def _clusters(m: Machine, what: str) -> np.ndarray:
    """The blocks whose cluster reaches `what` (shape (grid,)), after the contract checks."""
    size = m.kernel.cluster
    if size < 2 or m.grid % size:
        raise m.fail(f"{what} needs a grid that is a multiple of the cluster ({size}), "
                     f"got {m.grid} blocks")
    active = uniform_groups(m, m.kernel.block * size, "cluster", what)
    return np.repeat(active, size)


@register_stmt(ClusterReduce)
def _cluster_reduce(m: Machine, s: ClusterReduce) -> None:
    what = f"cluster {s.op.value if s.op else 'welford'} reduction into {s.dsts[0].name}"
    blocks = _clusters(m, what)
    dtype = s.dsts[0].dtype
    arr = check_quiet(m, s.slot, blocks)
    if arr.dtype is not dtype or arr.size < len(s.srcs):
        raise m.fail(f"{what}: slot {s.slot} is {arr.dtype}[{arr.size}], needs "
                     f"{dtype}[{len(s.srcs)}] or more")
    if s.slot in m.cluster_slots:
        raise m.fail(f"{what}: slot {s.slot} already served another cluster reduction")
    m.cluster_slots.add(s.slot)
    size, block = m.kernel.cluster, m.kernel.block
    # thread 0 of each block writes the slot: its sources are the block's
    firsts: State = tuple(v.reshape(-1, size, block)[:, :, 0] for v in sources(m, s.srcs, dtype))
    combine = welford_combine if s.op is None else scalar_combine(s.op, dtype)
    acc: State = tuple(v[:, 0] for v in firsts)
    for rank in range(1, size):
        acc = combine(acc, tuple(v[:, rank] for v in firsts))
    barrier(m, blocks)
    for var, value in zip(s.dsts, acc):
        per_thread: np.ndarray = np.repeat(np.asarray(value, dtype=dtype.np_storage),
                                           size * block)
        assign_var(m, var, per_thread, dtype)


@register_stmt(ClusterSync)
def _cluster_sync(m: Machine, s: ClusterSync) -> None:
    _clusters(m, "cluster barrier")  # relaxed: the race records stand
