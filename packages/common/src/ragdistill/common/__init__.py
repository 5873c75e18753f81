"""ragdistill.common: what every stage shares (one place for each concept).

- ``data``: schemas and loaders (BEIR retrieval sets, QA records, rewrite records)
- ``models``: packaged checkpoint names -> local paths
- ``teachers``: one small interface over local models, OpenAI-compatible endpoints and vLLM
- ``cache``: the content-addressed, resumable teacher-label cache
- ``metrics`` / ``timing``: ranking metrics (pytrec_eval) and latency/throughput stats
- ``config`` / ``stage`` / ``cli``: Hydra configs, the stage protocol and the ``ragdistill`` CLI
"""

from ragdistill.common.errors import RagdistillError

__all__ = ["RagdistillError"]

from ragdistill.common.logging import quiet_false_alarms as _quiet

_quiet()  # library users (notebooks, tests) are spared the warnings shown to be false here too
