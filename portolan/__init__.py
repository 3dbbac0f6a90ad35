"""Portolan: a Corefile-compatible cluster DNS server and an nginx ingress controller."""

__version__ = "0.1.0"
