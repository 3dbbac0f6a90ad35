"""The applier's control flow around nginx, with a stand-in for the nginx process."""

from __future__ import annotations

import asyncio
from pathlib import Path

from ingress.applier import Applier
from ingress.layout import Layout
from ingress.metrics import Metrics
from ingress.nginx import CheckResult
from ingress.render import Rendered
from tests.ingress.modelkit import model_of


class SlowNginx:
    """A running master whose reload takes longer than the applier waits, once."""

    binary = "nginx"

    def __init__(self, slow: int) -> None:
        self.started = asyncio.Event()
        self.started.set()
        self.running = True
        self.pid = 4242
        self.reloads = 0
        self.slow = slow  # waits that time out before the configuration shows

    def reload(self) -> None:
        self.reloads += 1

    async def wait_for_hash(self, digest: str, timeout: float) -> bool:
        self.slow -= 1
        return self.slow < 0

    def error_log_tail(self) -> str:
        return "reconfiguring"


async def test_a_slow_reload_is_waited_for_not_signalled_again(tmp_path: Path) -> None:
    layout = Layout.at(tmp_path)
    layout.prepare()
    nginx = SlowNginx(slow=2)
    applier = Applier(layout, nginx, Metrics(), reload_timeout=0.01)  # type: ignore[arg-type]
    rendered, model = Rendered("events {}\n", "a1a1a1a1a1a1a1a1"), model_of()
    checked = {"a1a1a1a1a1a1a1a1": CheckResult(True, "")}
    first = await applier.apply(model, rendered, checked)
    second = await applier.apply(model, rendered, checked)  # the retry after the time-out
    assert (first.stage, second.stage) == ("reload", "reload")
    assert nginx.reloads == 1  # one SIGHUP: the master is still loading the same file
    await applier.apply(model, rendered, checked)
    assert applier.running_hash == "a1a1a1a1a1a1a1a1"
    assert nginx.reloads == 1
    # Another configuration, or another master, is signalled again.
    await applier.apply(model, Rendered("events {}\n", "b2b2b2b2b2b2b2b2"), {"b2b2b2b2b2b2b2b2": CheckResult(True, "")})
    assert nginx.reloads == 2
