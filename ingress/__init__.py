"""The Portolan ingress controller: Ingress v1 objects to a validated, supervised nginx.

The pipeline, one module per step::

    kubewatch Store --(debounce)--> classes.owned --> model.build (pure) --> render (jinja2)
        --> compare --> nginx -t on a temp file --> atomic rename --> SIGHUP to our nginx master

``controller.Controller`` wires it together; ``cli.main`` is ``portolan ingress``.
"""
