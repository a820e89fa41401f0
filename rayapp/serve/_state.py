"""Per-replica state the ingress middlewares read: the API-key guard, the metrics and the body limit.

It lives in its own module, reached as ``_state.STATE`` at call time, because Serve ships the
ingress class and a frozen copy of the FastAPI app to the replica by value: a module-level dict in
``_deployments`` would be copied for the class but not for by-reference middleware functions, and
the two would disagree. A module is always pickled by reference, so both see this one.
"""

from typing import Any

STATE: dict[str, Any] = {"guard": None, "metrics": None, "max_body_bytes": None}
