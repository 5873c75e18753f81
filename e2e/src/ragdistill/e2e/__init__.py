"""ragdistill.e2e: compose rewriter -> retriever -> reranker -> generator, any stage teacher,
student or export, evaluate the whole pipeline on held-out data and write one report."""
