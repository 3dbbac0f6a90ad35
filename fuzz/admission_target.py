"""AdmissionReview bodies into the webhook's review (``ingress.admission.review_body``), against a
controller view holding our IngressClass and an older Ingress on shop.example (a rival to lose to).

Invariant: a BadReview (the server's 400), or an AdmissionReview response that serializes to JSON:
apiVersion and kind of admission.k8s.io/v1, the request's uid, ``allowed`` a bool, a 403 status
with a message when denied, at most 10 warnings of at most 256 characters. Never another
exception, never the catch-all's "could not be reviewed" (a swallowed bug), and nothing opened for
writing nor a process started while reviewing (IngressNightmare rendered and ran ``nginx -t`` on
the reviewed object): an audit hook watches both.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from fuzz import Failure
from fuzz.k8s import cluster, ingress, put
from ingress.admission import API_VERSION, MAX_WARNING_CHARS, MAX_WARNINGS, BadReview, Reviewer, review_body
from ingress.classes import ClassPolicy
from ingress.modelcache import HostCache
from ingress.settings import NginxSettings

_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_reviewer: Reviewer | None = None
_watching = False
_seen: list[str] = []


class _Swallowed(logging.Handler):
    """Keeps the exception the webhook's catch-all logs, so that a failure shows the bug's traceback."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


_swallowed = _Swallowed()


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Audit hooks cannot be removed: this one is a no-op outside a review.
    if not _watching:
        return
    if event == "open" and len(args) >= 3:
        mode, flags = args[1], args[2]
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (isinstance(flags, int) and flags & _WRITE):
            _seen.append(f"open {args[0]!r} {mode!r}")
    elif event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.system", "os.fork"):
        _seen.append(f"{event} {args[:2]!r}")


def reviewer() -> Reviewer:
    global _reviewer
    if _reviewer is None:
        store = cluster()
        _reviewer = Reviewer(store, ClassPolicy(), NginxSettings, HostCache())
        # After the Reviewer subscribed: an Ingress the reconciler has not built yet, as after an apply.
        put(store, ingress("older", "shop.example", "/cart", created="2020-01-01T00:00:00Z"))
        sys.addaudithook(_audit)
        logging.getLogger().setLevel(logging.CRITICAL)
        logging.getLogger("ingress.admission").addHandler(_swallowed)
        logging.getLogger("ingress.admission").setLevel(logging.ERROR)
    return _reviewer


def _check_answer(body: bytes, answer: dict[str, Any]) -> None:
    json.dumps(answer)
    if answer.get("apiVersion") != API_VERSION or answer.get("kind") != "AdmissionReview":
        raise Failure(f"not an AdmissionReview: {answer}")
    response = answer["response"]
    if response.get("uid") != json.loads(body)["request"]["uid"]:
        raise Failure(f"uid {response.get('uid')!r} is not the request's")
    if not isinstance(response.get("allowed"), bool):
        raise Failure(f"allowed is {response.get('allowed')!r}")
    if not response["allowed"]:
        status = response.get("status")
        if not isinstance(status, dict) or status.get("code") != 403 or not isinstance(status.get("message"), str):
            raise Failure(f"denied without a 403 status: {response}")
        if "could not be reviewed" in status["message"]:
            cause = _swallowed.errors[-1] if _swallowed.errors else None
            _swallowed.errors.clear()
            raise Failure(f"the review failed: {cause!r}") from cause
    warnings = response.get("warnings", [])
    if len(warnings) > MAX_WARNINGS or any(not isinstance(w, str) or len(w) > MAX_WARNING_CHARS for w in warnings):
        raise Failure(f"warnings out of bounds: {warnings}")


def check(data: bytes) -> None:
    global _watching
    r = reviewer()
    _watching = True
    try:
        answer = review_body(data, r)
    except BadReview:
        return
    finally:
        _watching = False
    if _seen:
        found = list(_seen)
        _seen.clear()
        raise Failure(f"the review wrote or ran something: {found}")
    _check_answer(data, answer)
