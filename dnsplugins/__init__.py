"""The plugin registry: ONE table that is both the list of known directives and the execution order.

The order is CoreDNS's plugin.cfg order (the number is its position there), never the Corefile's:
a block's chain runs its plugins in this order whatever order the Corefile lists them in.
Config-only plugins (bind, health, ready, prometheus, reload) are listed where CoreDNS lists
them so that errors and `-plugins` read the same, but they do not join the per-query chain.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

from dnsserver.durations import parse_duration

if TYPE_CHECKING:
    from corefile import Dispenser


def duration_arg(d: Dispenser, text: str) -> float:
    """A Go duration property value; a bad one is a Corefile error carrying Go's message."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise d.err(str(e)) from None


@dataclass(frozen=True)
class PluginSpec:
    """One row of the plugin table: name, CoreDNS's execution position, once-per-block."""

    name: str
    position: int  # position in CoreDNS's plugin.cfg
    once: bool = False  # "this plugin can only be used once per Server Block"

    @property
    def module(self) -> ModuleType:
        return importlib.import_module(f"dnsplugins.{self.name}")


PLUGINS: tuple[PluginSpec, ...] = (
    PluginSpec("metadata", 2),
    PluginSpec("cancel", 4),
    PluginSpec("timeouts", 10),
    PluginSpec("reload", 12, once=True),
    PluginSpec("nsid", 13, once=True),
    PluginSpec("bind", 15),
    PluginSpec("debug", 16),
    PluginSpec("ready", 18, once=True),
    PluginSpec("health", 19),
    PluginSpec("prometheus", 22, once=True),
    PluginSpec("errors", 23, once=True),
    PluginSpec("log", 24),
    PluginSpec("local", 26),
    PluginSpec("dns64", 27),
    PluginSpec("any", 28),
    PluginSpec("chaos", 29),
    PluginSpec("loadbalance", 30),
    PluginSpec("rewrite", 32),
    PluginSpec("autopath", 33),
    PluginSpec("acl", 34),
    PluginSpec("cache", 35, once=True),
    PluginSpec("header", 36),
    PluginSpec("tls", 38, once=True),
    PluginSpec("minimal", 39),
    PluginSpec("template", 40),
    PluginSpec("transfer", 41),
    PluginSpec("hosts", 42, once=True),
    PluginSpec("k8s_external", 46),
    # An external plugin that CoreDNS builds put where kubernetes is in plugin.cfg (its README says so).
    PluginSpec("k8s_gateway", 47, once=True),
    PluginSpec("kubernetes", 47, once=True),
    PluginSpec("file", 48),
    PluginSpec("secondary", 50),
    PluginSpec("loop", 52, once=True),
    PluginSpec("forward", 53),
    PluginSpec("whoami", 56),
    PluginSpec("view", 59, once=True),
)

BY_NAME: dict[str, PluginSpec] = {p.name: p for p in PLUGINS}
