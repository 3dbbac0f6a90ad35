"""The neutral DNS server core: listeners, zone dispatch, plugin chains, replies, metrics, lifecycle.

Plugins live in `dnsplugins`; the Corefile language in `corefile`. This package imports neither
plugin modules directly (it reads the registry table in `dnsplugins`) nor anything Kubernetes.
"""

from dnsserver import dnslib_ext as _dnslib_ext  # noqa: F401  (fixes dnslib before any packing)
