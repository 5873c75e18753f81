"""ragdistill.query_rewriter: Teacher rewrites/expansions -> seq2seq/decoder student; ONNX export; recall-lift evaluation.

The stage object (the ``ragdistill.stages`` entry point) is built from :mod:`.stage`, which imports
nothing heavy; the verbs' modules load when a verb runs.
"""

from ragdistill.query_rewriter.stage import QueryRewriterStage

stage = QueryRewriterStage()

__all__ = ["QueryRewriterStage", "stage"]
