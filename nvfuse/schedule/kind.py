"""Schedule kinds: the one enum that names how a fusion is mapped onto the GPU.

Every signature carries its kind (`sig.kind`); nvfuse/kinds.py holds one entry per kind (when
it applies, how it plans a launch, how it lowers) and is the only place a kind is chosen.
"""

from __future__ import annotations

import enum


class ScheduleKind(enum.Enum):
    POINTWISE = "pointwise"  # one thread per `lanes` elements (nvfuse/schedule/pointwise.py)
    CONCAT = "concat"        # pointwise over cat / constant-pad pieces (schedule/concat.py)
    ROW = "row"              # one block per row (schedule/reduction.py)
    WARP_ROW = "warp_row"    # one warp per short row, several rows a block
    COLUMN = "column"        # kept dims innermost: a warp across rows, coalesced
    SPLIT = "split"          # a long-row reduction as two kernels (schedule/split.py)
    HORIZONTAL = "horizontal"  # independent groups' kernels in one launch (schedule/horizontal.py)
