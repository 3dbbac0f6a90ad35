"""The Portolan ingress controller: Ingress v1 objects to a validated, supervised nginx.

The pipeline, one module per step::

    kubewatch Store --(debounce)--> reconciler (a frozen view) --> classes.owned
        --> modelcache.build (pure, incremental; model.py says what a host is) --> render (jinja2)
        --> same hash? applier pushes the live data only (livedata, channel, streampeers)
        --> else nginx -t of what changed --> atomic rename --> SIGHUP to our nginx master --> data

Gateway API objects join at the model: ``gateway`` (GatewayClass, Gateway, HTTPRoute,
ReferenceGrant) adds listener server blocks, live match and route records, upstreams and
certificates to each model the reconciler builds, and the status those objects are owed.

``controller.Controller`` wires it together (its lifecycle, loops, health and status);
``cli.main`` is ``portolan ingress``. The live data reaches nginx's Lua (templates/lua) and
njs (templates/njs) without a reload.
"""
