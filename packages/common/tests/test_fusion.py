"""Score fusion of a reranker with its first stage, on hand-computed lists."""

from __future__ import annotations

import numpy as np
import pytest

from ragdistill.common.errors import RagdistillError
from ragdistill.common.fusion import fuse, zscores


def test_zscores_and_fusion_by_hand() -> None:
    # student [1, 2, 3]: mean 2, population std sqrt(2/3) -> z = [-1.2247, 0, 1.2247]; BM25 [30, 10, 20]: z = [1.2247, -1.2247, 0]
    assert zscores([1, 2, 3]) == pytest.approx([-1.224745, 0.0, 1.224745], abs=1e-6)
    assert zscores([4, 4, 4]).tolist() == [0.0, 0.0, 0.0]  # a list of ties carries no order
    assert fuse([1, 2, 3], [30, 10, 20], 0.5) == pytest.approx([0.0, -0.612372, 0.612372], abs=1e-6)
    assert fuse([1, 2, 3], [30, 10, 20], 0.25) == pytest.approx([-0.612372, -0.306186, 0.918559], abs=1e-6)
    # the ends: the reranker's own order (w = 0) and the first stage's (w = 1)
    assert np.argsort(fuse([1, 2, 3], [30, 10, 20], 0.0)).tolist() == [0, 1, 2]
    assert np.argsort(fuse([1, 2, 3], [30, 10, 20], 1.0)).tolist() == [1, 2, 0]


def test_bad_fusion_input_is_a_clear_error() -> None:
    with pytest.raises(RagdistillError, match=r"fusion weight 1.5 .*must lie in \[0, 1\]"):
        fuse([1.0, 2.0], [1.0, 2.0], 1.5)
    with pytest.raises(RagdistillError, match="2 reranker scores for 3 first-stage scores"):
        fuse([1.0, 2.0], [1.0, 2.0, 3.0], 0.5)
