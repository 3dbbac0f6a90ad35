"""The neutral DNS server core: listeners, zone dispatch, plugin chains, replies, metrics, lifecycle.

Plugins live in `dnsplugins`; the Corefile language in `corefile`. This package imports neither
plugin modules directly (it reads the registry table in `dnsplugins`) nor anything Kubernetes.

## The way through the server

Every query, from every listener (UDP, TCP, DNS over TLS, DNS over HTTPS) and from the test
harness, enters by `Dispatcher.submit` and leaves by `Dispatcher.finish`. Between them it takes the
first of these paths that takes it:

```
path        taken when                                    answered by                    the reply
----------  --------------------------------------------  -----------------------------  --------------------
hot path    the question's bytes (and DO, CD) have a      the store's `fast_answer`,     returned by `submit`
            route, learnt when the chain last answered    from stored wire bytes         at once
            them, to a block whose first plugin that
            must see queries has a wire store (cache,
            hosts, kubernetes, k8s_gateway), and the
            store has a live answer that fits the client

relay path  no route, and the question (plain, EDNS size  the relay's starter, found     `send(reply, dest)`
            at least 512, ordinary labels, a type no      once per question by           when the relay calls
            skipped plugin must see) falls in a block     `Relay.relay_starter` and      back (the chain's
            whose first plugin that must see queries      remembered: without a task     reply, in a task, if
            relays (forward), no loadbalance before it    in the common case, in a task  it hands the query
                                                          of its own when it retries,    on)
                                                          waits for a connection or
                                                          tries further stanzas

chain       anything else: a question not seen yet, a     the block's plugins in order   `send(reply, dest)`
            store's miss, a reply too large, odd or       (`handle`: parse, zone,        from a task
            malformed packets, a relay that declines      `Request`, `serve`)
```

Routes and relays are learnt per question bytes, so they are never learnt for a zone whose blocks a
`QueryFilter` (view) chooses among per query: such queries always take the chain. A plugin whose
answer depends on the client (acl) or is made per query (template) is not `fast_safe`, so a block
where it comes first has neither path. A plugin may instead be its block's store by handing queries on to
the store after it (`dnsplugins.autopath.store_after`): k8s_external for other zones' names; autopath,
whose answers depend on the client, for the queries it would pass on unchanged, and for the others by
walking the client's search path on that store's answers, keyed by the names looked up, never by the
question asked.

Invariant: whatever path a query takes, the client gets the bytes the chain (`Dispatcher.handle`)
would give for it at that moment: the same ID, flags, question as the client spelled it, records,
OPT (our size, version 0, the client's DO) and truncation. `finish` is the one place that makes a
reply the client's (`wire.reply.scrub`: the OPT and the cut to the client's size) and counts and
logs it (the block's metrics, its `Observer`s) for every path; a path that cannot give the chain's
bytes (a store's answer too large, a reply that cannot be walked) declines, and the chain answers.
tests/dnsserver/test_paths.py checks it for every plugin with a wire store or a relay.
"""

from dnsserver import dnslib_ext as _dnslib_ext  # noqa: F401  (fixes dnslib before any packing)
