"""The chapter's claims as DVC experiments: `cnnrepro claims list | run NAME | collect NAME`.

`registry` defines a claim, `catalog` registers the eight claims, `sweep` queues and reads the experiments,
`summaries` and `direct` turn measurements into a verdict, and `runner` writes `claims/<name>.json`.
"""

from cnnrepro.claims.registry import Claim, Variant, all_claims, get
from cnnrepro.claims.runner import collect, record_path, run

__all__ = ["Claim", "Variant", "all_claims", "collect", "get", "record_path", "run"]
