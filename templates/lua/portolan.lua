-- Portolan's live data plane: data in, a peer or a certificate out.
--
-- The controller decides everything it can in Python and pushes the result over nginx's
-- internal status socket (a Unix socket under --config-dir, which no network client can
-- reach) as lines of records:
--
--   token=<token>[&full=1][&zones=<bytes>,<bytes>]   first: whose data, and for which dicts
--   k=<key>&v=<value>      set a record        k=<key>      delete it
--
-- Keys and values (all built and validated by ingress/livedata.py):
--   u:<upstream>  "ip:port ip:port ..." (IPv6 as [ip]:port): the ready endpoints
--   r:<route>     urlencoded: u=<upstream>&lb=round_robin|ewma|chash&un=<log name> and, for a
--                 canary, cu=<upstream>&cw=<weight>&ct=<total>&cn=<log name>&ch=<header>
--                 &chv=<value>&chp=<regex>&cc=<cookie>; or st=<status> for a location that
--                 answers with one
--   p:<host>      a pooled host's paths (ingress/pooling.py): "e<path>=<action>" exact,
--                 "p<path>=<action>" prefix (ending in "/"), "d=<action>" the rest, space-
--                 separated; an action is a route ("r...") or a status ("404", "503")
--   g:<listener>[|<host>]  a Gateway listener's matches (ingress/gateway/translate.py): those
--                 on one precise host (which outrank the rest) apart from the others; one urlencoded
--                 line each, in precedence order: r=<route>, h=<host> ("*.suffix" or exact),
--                 e=<exact path> | p=<prefix> | x=<anchored regex>, m=<method>, he=/hr=<var>:<value>
--                 (header exact/regex), qe=/qr=<name>:<value> (query parameter)
--                 A Gateway rule's r: record has ws="<weight>:<upstream> ..." instead of u=,
--                 "!500" standing for a backend that cannot be used.
--   c:<digest>    a PEM certificate chain followed by its key
--   h:<host>      the digest of the certificate a TLS host uses ("h:" alone: the default)
--
-- Records live in lua_shared_dict portolan_data (certificates in portolan_certs), so every
-- worker sees them and they survive reloads. A push first names the controller's token: a
-- full push (which replaces everything record by record, never flushing) stores it in both
-- dicts once it is in; an incremental push is refused with 409 unless both hold it (a new
-- nginx master, or a reload that resized a dict, starts it empty), and the controller then
-- sends everything again. Records are stored with safe_set: a full dict refuses the push
-- (507) rather than silently evicting other records.
--
-- Each worker keeps what it parsed, checked against the record's version only when the
-- global generation moved, so a request costs one shared-dict read in the steady state.
--
-- The balancer runs on every request (bench/ingress_throughput.py measures it): a round-robin
-- route without a canary keeps no per-request state (no ngx.ctx), and a retry finds its route
-- again; only canary, hash and ewma routes keep theirs in ngx.ctx.portolan.

local ngx = ngx
local balancer = require("ngx.balancer")
local get_last_failure = balancer.get_last_failure
local set_current_peer = balancer.set_current_peer
local ssl = require("ngx.ssl")
local clienthello = require("ngx.ssl.clienthello")

local data = ngx.shared.portolan_data
local certdata = ngx.shared.portolan_certs
local decode_args = ngx.decode_args
local random = math.random
local floor = math.floor
local crc32 = ngx.crc32_long
local tonumber = tonumber
local sort = table.sort
local byte = string.byte
local sub = string.sub

local M = {}

local MAX_TRIES = 3 -- proxy_next_upstream_tries
local RING_POINTS = 100 -- points per peer on the consistent-hash ring
local EWMA_DECAY = 10 -- seconds

local caches = { r = {}, u = {}, p = {}, g = {} } -- kind -> name -> {ver=, seen=, value=} in this worker
local certcache = {} -- digest -> {cert, key}
local certcount = 0

-- ---------------------------------------------------------------- records

-- "ip:port [ip6]:port ...": the host keeps an IPv6 address's brackets, which
-- balancer.set_current_peer needs (it parses the address as a URL host).
local function parse_peers(text)
    local peers = {}
    for id in text:gmatch("%S+") do
        local host, port = id:match("^(.+):(%d+)$")
        if host then
            peers[#peers + 1] = { host = host, port = tonumber(port), ewma = 0, stamp = 0, id = id }
        end
    end
    return peers
end

local function build_ring(peers)
    local ring = {}
    for i, peer in ipairs(peers) do
        for n = 1, RING_POINTS do
            ring[#ring + 1] = { crc32(peer.id .. "#" .. n), i }
        end
    end
    sort(ring, function(a, b) return a[1] < b[1] end)
    return ring
end

local parsers = {
    u = function(text)
        local peers = parse_peers(text)
        return { peers = peers, next = random(#peers > 0 and #peers or 1) }
    end,
    r = function(text)
        local args = decode_args(text, 0)
        args.cw = tonumber(args.cw) or 0
        args.ct = tonumber(args.ct) or 100
        if args.ct < 100 then args.ct = 100 end
        if args.ch then  -- the header's nginx variable, worked out once per record, not per request
            args.chvar = "http_" .. args.ch:lower():gsub("-", "_")
        end
        if args.to then -- a Gateway rule's timeouts: ms in the record, seconds for the balancer
            args.to = tonumber(args.to) / 1000
        end
        if args.ws then -- a Gateway rule's weighted backends
            local shares, total = {}, 0
            for weight, target in args.ws:gmatch("(%d+):(%S+)") do
                total = total + tonumber(weight)
                shares[#shares + 1] = { total, target }
            end
            args.shares, args.total = shares, total
        end
        return args
    end,
    g = function(text)
        local entries = {}
        for line in text:gmatch("[^\n]+") do
            local a = decode_args(line, 0)
            local e = { route = a.r, host = a.h, method = a.m, exact = a.e, prefix = a.p, regex = a.x }
            if e.host and sub(e.host, 1, 2) == "*." then
                e.suffix = sub(e.host, 2) -- ".suffix": one or more labels before it
                e.host = nil
            end
            if e.prefix == "/" then e.prefix = nil; e.any = true end
            for _, kind in ipairs({ "he", "hr", "qe", "qr" }) do
                local values = a[kind]
                if type(values) == "string" then values = { values } end
                if values then
                    local list = {}
                    for _, v in ipairs(values) do
                        local name, value = v:match("^([^:]+):(.*)$")
                        if name then list[#list + 1] = { name, value } end
                    end
                    e[kind] = list
                    if kind == "qe" or kind == "qr" then e.query = true end
                end
            end
            entries[#entries + 1] = e
        end
        return entries
    end,
    p = function(text)
        local paths = { exact = {}, prefix = {}, deep = false }
        for kind, path, action in text:gmatch("(%a)([^=%s]*)=(%S+)") do
            if kind == "e" then
                paths.exact[path] = action
            elseif kind == "p" then
                paths.prefix[path] = action
                paths.deep = true
            else
                paths.default = action
            end
        end
        return paths
    end,
}

-- The parsed record kind:name, or nil; re-read only when its version changed since
-- generation gen (the caller reads "gen" once per request).
local function record(kind, name, gen)
    local cache = caches[kind]
    local entry = cache[name]
    if entry and entry.seen == gen then
        return entry.value
    end
    local key = kind .. ":" .. name
    local ver = data:get("v:" .. key)
    if not ver then
        cache[name] = nil
        return nil
    end
    if not entry or entry.ver ~= ver then
        local text = data:get(key)
        if not text then
            cache[name] = nil
            return nil
        end
        entry = { ver = ver, value = parsers[kind](text) }
        cache[name] = entry
    end
    entry.seen = gen
    return entry.value
end

-- ---------------------------------------------------------------- balancing

-- ingress-nginx's canary precedence: header (value, pattern, or always/never), then cookie
-- (always/never), then a weight out of the total.
local function to_canary(route)
    local header = route.chvar
    if header then
        local value = ngx.var[header]
        if value then
            if route.chv then
                if value == route.chv then return true end
            elseif route.chp then
                if ngx.re.find(value, route.chp, "jo") then return true end
            elseif value == "always" then
                return true
            elseif value == "never" then
                return false
            end
        end
    end
    if route.cc then
        local cookie = ngx.var["cookie_" .. route.cc]
        if cookie == "always" then return true end
        if cookie == "never" then return false end
    end
    return route.cw > 0 and random(route.ct) <= route.cw
end

local function pick_hash(up, key, attempt)
    local ring = up.ring
    if not ring then
        ring = build_ring(up.peers)
        up.ring = ring
    end
    local point = crc32(key)
    local lo, hi = 1, #ring
    while lo < hi do
        local mid = floor((lo + hi) / 2)
        if ring[mid][1] < point then lo = mid + 1 else hi = mid end
    end
    if ring[lo][1] < point then lo = 1 end
    -- a retry takes the next distinct peer on the ring
    local index = ring[lo][2]
    if attempt > 1 then
        index = (index + attempt - 2) % #up.peers + 1
    end
    return up.peers[index]
end

local function score(peer, now)
    local age = now - peer.stamp
    return peer.ewma * math.exp(-age / EWMA_DECAY)
end

-- Power of two choices on a decaying average of response times (ingress-nginx's ewma idea).
local function pick_ewma(up)
    local peers = up.peers
    if #peers == 1 then return peers[1] end
    local a, b = random(#peers), random(#peers - 1)
    if b >= a then b = b + 1 end
    local now = ngx.now()
    if score(peers[b], now) < score(peers[a], now) then a = b end
    return peers[a]
end

local function pick(route, up, attempt)
    local lb = route.lb
    if lb == "chash" then
        local key = ngx.var.portolan_hash_key
        if key and key ~= "" then return pick_hash(up, key, attempt) end
    elseif lb == "ewma" and attempt == 1 then
        return pick_ewma(up)
    end
    local n = #up.peers
    local i = up.next % n + 1
    up.next = i
    return up.peers[i]
end

-- A pooled host's action for this request's $uri, as nginx would choose among the host's
-- locations: "= path", then the longest "^~ path/" (each ends in "/", so trying $uri's
-- prefixes that end in "/", longest first, is the longest match), then "/".
local function match_path(gen)
    local paths = record("p", ngx.var.host or "", gen)
    if not paths then return nil end
    local uri = ngx.var.uri
    local action = paths.exact[uri]
    if action then return action end
    if paths.deep then
        local prefix = paths.prefix
        for i = #uri, 2, -1 do
            if byte(uri, i) == 47 then -- "/"
                action = prefix[sub(uri, 1, i)]
                if action then return action end
            end
        end
    end
    return paths.default
end

-- A Gateway listener's route for this request: the first of its matches (already in the
-- spec's precedence order) whose host, path, method, headers and query parameters all match.
-- Every (name, value) of list holds in source (ngx.var for headers, the query's arguments,
-- whose repeated names give a table: the first value counts); regex: values are patterns.
local function gateway_all(list, source, regex)
    if not list then return true end
    for _, pair in ipairs(list) do
        local value = source[pair[1]]
        if type(value) == "table" then value = value[1] end
        if type(value) ~= "string" then return false end
        if regex then
            if not ngx.re.find(value, pair[2], "jo") then return false end
        elseif value ~= pair[2] then
            return false
        end
    end
    return true
end

-- The first of a match record's entries that the request meets (host, path, method, headers,
-- query parameters), with its route.
local function first_match(entries, host)
    local uri = ngx.var.uri
    local method, args
    for _, e in ipairs(entries) do
        local ok = true
        if e.host then
            ok = host == e.host
        elseif e.suffix then
            ok = #host > #e.suffix and sub(host, -#e.suffix) == e.suffix
        end
        if ok then
            if e.exact then
                ok = uri == e.exact
            elseif e.prefix then
                local n = #e.prefix
                ok = sub(uri, 1, n) == e.prefix and (#uri == n or byte(uri, n + 1) == 47)
            elseif e.regex then
                ok = ngx.re.find(uri, e.regex, "jo") ~= nil
            end
        end
        if ok and e.method then
            method = method or ngx.req.get_method()
            ok = method == e.method
        end
        ok = ok and gateway_all(e.he, ngx.var, false) and gateway_all(e.hr, ngx.var, true)
        if ok and e.query then
            args = args or ngx.req.get_uri_args(0)
            ok = gateway_all(e.qe, args, false) and gateway_all(e.qr, args, true)
        end
        if ok then return e.route, e end
    end
    return nil
end

-- A Gateway listener's route for this request: its host's own matches ("g:<listener>|<host>",
-- which outrank all others), then the listener's wildcard and hostname-less ones.
local function match_gateway(key, gen)
    local host = ngx.var.host or ""
    local entries = record("g", key .. "|" .. host, gen)
    if entries then
        local name, entry = first_match(entries, host)
        if name then return name, entry end
    end
    entries = record("g", key, gen)
    if not entries then return nil end
    return first_match(entries, host)
end

-- A path with its matched prefix replaced (ReplacePrefixMatch): element-wise, never "//".
local function replace_prefix(uri, entry, replacement)
    local rest = entry.prefix and sub(uri, #entry.prefix + 1) or uri
    if replacement == "/" or replacement == "" then
        return rest ~= "" and rest or "/"
    end
    if byte(replacement, -1) == 47 then replacement = sub(replacement, 1, -2) end
    if rest == "/" and not entry.prefix then rest = "" end
    return replacement .. rest
end

local DEFAULT_PORTS = { http = 80, https = 443 }

-- RequestRedirect: the Location the spec builds (a port from the filter, else the scheme's
-- when the filter names one, else the listener's; left out when it is the scheme's default).
local function redirect(route, entry, var)
    local scheme = route.rs or var.scheme
    local port = tonumber(route.rp)
    if not port then
        port = route.rs and DEFAULT_PORTS[route.rs] or tonumber(var.portolan_listener_port)
    end
    local path = var.uri
    if route.rf then
        path = route.rf
    elseif route.rx then
        path = replace_prefix(path, entry, route.rx)
    end
    local args = var.args
    local location = scheme .. "://" .. (route.rh or var.host)
        .. (port == DEFAULT_PORTS[scheme] and "" or ":" .. port) .. path
        .. (args and args ~= "" and "?" .. args or "")
    return ngx.redirect(location, tonumber(route.rc) or 302)
end

local function as_list(value)
    if type(value) == "string" then return { value } end
    return value or {}
end

-- access_by_lua in a Gateway listener's location ($portolan_route "~g:<listener>"): the
-- request's route by the listener's matches (404 when none), then the rule's filters:
-- redirect, request header changes, URL rewrite. The balancer then meets a plain route name.
function M.gateway()
    local var = ngx.var
    local gen = data:get("gen") or 0
    local name, entry = match_gateway(sub(var.portolan_route, 4), gen)
    if not name then return ngx.exit(404) end
    var.portolan_route = name
    local route = record("r", name, gen)
    if not route then return end -- the balancer answers 503
    if route.rd then return redirect(route, entry, var) end
    for _, pair in ipairs(as_list(route.hs)) do
        local header, value = pair:match("^([^:]+):(.*)$")
        ngx.req.set_header(header, value)
    end
    if route.ha then
        local headers = ngx.req.get_headers(0)
        for _, pair in ipairs(as_list(route.ha)) do
            local header, value = pair:match("^([^:]+):(.*)$")
            local old = headers[header]
            if type(old) == "table" then old = table.concat(old, ",") end
            ngx.req.set_header(header, old and old .. "," .. value or value)
        end
    end
    for _, header in ipairs(as_list(route.hd)) do
        ngx.req.clear_header(header)
    end
    if route.ps or route.pa or route.pd then ngx.ctx.portolan_response = route end
    if route.uh then var.portolan_vhost = route.uh end
    if route.uf then
        ngx.req.set_uri(route.uf)
    elseif route.ux then
        ngx.req.set_uri(replace_prefix(var.uri, entry, route.ux))
    end
end

-- header_filter_by_lua in a Gateway listener's location: ResponseHeaderModifier.
function M.gateway_response()
    local route = ngx.ctx.portolan_response
    if not route then return end
    local header = ngx.header
    for _, pair in ipairs(as_list(route.ps)) do
        local name, value = pair:match("^([^:]+):(.*)$")
        header[name] = value
    end
    for _, pair in ipairs(as_list(route.pa)) do
        local name, value = pair:match("^([^:]+):(.*)$")
        local old = header[name]
        if type(old) == "table" then old = table.concat(old, ",") end
        header[name] = old and old .. "," .. value or value
    end
    for _, name in ipairs(as_list(route.pd)) do
        header[name] = nil
    end
end

-- A Gateway rule's backend for this request, by weight: an upstream name, or "!<status>".
local function gateway_share(route)
    local total = route.total
    if total <= 0 then return "!500" end
    local point = random(total)
    for _, share in ipairs(route.shares) do
        if point <= share[1] then return share[2] end
    end
    return "!500"
end

-- The route named by $portolan_route and the upstream this request goes to (its canary
-- decided here); the upstream is nil when it has no ready endpoint. A pooled server's
-- route "~" is found by host and path; a path answered with a status fails as a route
-- without endpoints does, $portolan_unrouted telling the server's error location a 404.
local function resolve()
    local gen = data:get("gen") or 0
    local name = ngx.var.portolan_route or ""
    if name == "~" then
        name = match_path(gen)
        if not name then return nil, nil end
        ngx.var.portolan_route = name -- for a retry, and the request metrics
    end
    local route = record("r", name, gen)
    if not route then return nil, nil end
    if route.shares then
        local target = gateway_share(route)
        if byte(target, 1) == 33 then -- "!500": a backend the spec answers with 500
            ngx.var.portolan_unrouted = sub(target, 2)
            return route, nil
        end
        local up = record("u", target, gen)
        if not up or #up.peers == 0 then return route, nil end
        return route, up
    end
    if route.st then -- a path that answers with a status (pooled hosts only get here)
        if route.st == "404" then ngx.var.portolan_unrouted = "1" end
        return route, nil
    end
    local up
    if route.cu and to_canary(route) then
        -- A canary without a ready endpoint is skipped, as ingress-nginx drops the
        -- balancer of a backend that has none: the primary serves instead of a 503.
        up = record("u", route.cu, gen)
        if up and #up.peers == 0 then up = nil end
    end
    if M.log_upstream_names then -- ingress-nginx's names, for a log format that has them
        ngx.var.proxy_upstream_name = route.un
        if up then ngx.var.proxy_alternative_upstream_name = route.cn end
    end
    if up then
        ngx.var.portolan_canary = route.cu -- for the request metrics
        return route, up
    end
    up = record("u", route.u, gen)
    if not up or #up.peers == 0 then return route, nil end
    return route, up
end

-- balancer_by_lua, once per try: the route named by $portolan_route, its canary decided once
-- per request. No route, or no ready endpoint: nginx's error 500 from here, which the
-- location's error_page turns into 503 (a balancer cannot finish a request with a status of
-- its own). A retry of a stateless (round-robin, no canary) route resolves it again.
function M.balance()
    local retry = get_last_failure() ~= nil
    local state = retry and ngx.ctx.portolan
    local route, up, attempt
    if state then
        attempt = state.try + 1
        state.try = attempt
        route, up = state.route, state.up
    else
        route, up = resolve()
        if not up then
            return ngx.exit(ngx.ERROR)
        end
        attempt = 1
        if not retry then
            local more = (#up.peers < MAX_TRIES and #up.peers or MAX_TRIES) - 1
            if more > 0 then balancer.set_more_tries(more) end
            if route.cu or route.lb ~= "round_robin" then
                state = { route = route, up = up, try = 1 }
                ngx.ctx.portolan = state
            end
        end
    end
    local peer = pick(route, up, attempt)
    if state then state.peer = peer end
    if route.to then -- a Gateway rule's timeouts (seconds), for each try
        balancer.set_timeouts(route.to, route.to, route.to)
    end
    local ok, err = set_current_peer(peer.host, peer.port)
    if not ok then
        ngx.log(ngx.ERR, "portolan: peer ", peer.id, ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- log_by_lua on ewma routes: fold the response time into the peer's average.
function M.observe()
    local state = ngx.ctx.portolan
    local peer = state and state.peer
    if not peer then return end
    local seconds = tonumber(ngx.var.upstream_response_time)
    if not seconds then return end
    local now = ngx.now()
    local weight = math.exp(-(now - peer.stamp) / EWMA_DECAY)
    peer.ewma = peer.ewma * weight + seconds * (1 - weight)
    peer.stamp = now
end

-- ---------------------------------------------------------------- request metrics

-- ingress-nginx's histograms (its default buckets), counted per worker under (route, status,
-- method, canary); a timer hands the counts over as text once a second (M.flush), and the
-- controller names the route's host, Ingress, Service and path and serves them as
-- nginx_ingress_controller_* (ingress/requestmetrics.py).
--
-- A request costs one variable read: $portolan_request_facts (templates/http.j2) is a map whose
-- value names the variables nginx fills in, in C, when the log phase reads it
-- ("route|status|method|canary|request_time|upstream_response_time|upstream_header_time|
-- upstream_connect_time|request_length|bytes_sent"); the string is kept as it is. Reading those
-- ten variables one by one from Lua cost about a fifth of a worker's requests per second. The
-- strings are counted once a second, or every BATCH requests, by a byte loop that allocates
-- nothing but the series key.
local TIME = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
local LENGTH = { 10, 20, 30, 40, 50, 60, 70, 80, 90, 100 }
local SIZE = { 10, 100, 1000, 10000, 100000, 1000000, 10000000 }
-- The values, in the order of a series' slots: each has a sum, a count and one slot per bucket
-- plus +Inf. A missing value (no upstream, "-", or "a, b" after a retry) is not observed.
local HISTOGRAMS = {
    TIME, -- request_duration_seconds: $request_time
    TIME, -- response_duration_seconds: $upstream_response_time
    TIME, -- header_duration_seconds: $upstream_header_time
    TIME, -- connect_duration_seconds (and ingress_upstream_latency_seconds): $upstream_connect_time
    LENGTH, -- request_size: $request_length
    LENGTH, -- response_size: $bytes_sent
    SIZE, -- bytes_sent: $bytes_sent
}
-- Which of the facts' six numbers each histogram observes.
local FACT_OF = { 1, 2, 3, 4, 5, 6, 6 }
local OFFSETS, SLOTS = {}, 1 -- slot 1 counts the requests
for i, bounds in ipairs(HISTOGRAMS) do
    OFFSETS[i] = SLOTS
    SLOTS = SLOTS + 2 + #bounds + 1
end
-- Methods outside these count as OTHER: a client must not grow the label set at will.
local METHODS = {}
for _, m in ipairs({ "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH" }) do
    METHODS[m] = m
end
local BATCH = 10000 -- requests kept as strings before they are counted
local BAR, DOT, ZERO, NINE = 124, 46, 48, 57 -- "|", ".", "0", "9"
local find = string.find

local facts, nfacts = {}, 0 -- this second's requests, as read
local unanswered = {} -- their indexes whose upstream timings time a failure, not an upstream
local series = {} -- "route|status|method|canary" -> slots, this second's
local by_line = {} -- the same slots by the series' line prefix ("route status method canary")

local function observe(slots, i, value)
    local at = OFFSETS[i]
    slots[at + 1] = slots[at + 1] + value
    slots[at + 2] = slots[at + 2] + 1
    local bounds = HISTOGRAMS[i]
    local n = #bounds
    local b = 1
    while b <= n and value > bounds[b] do b = b + 1 end
    slots[at + 2 + b] = slots[at + 2 + b] + 1
end

-- The slots of a series key, made on first use: its line prefix names the method as counted.
local function slots_of(key, p1, p2, p3)
    local method = METHODS[sub(key, p2 + 1, p3 - 1)] or "OTHER"
    local route = sub(key, 1, p1 - 1)
    local canary = sub(key, p3 + 1)
    local line = (route == "" and "-" or route) .. " " .. sub(key, p1 + 1, p2 - 1) .. " " .. method .. " "
        .. (canary == "" and "-" or canary)
    local slots = by_line[line]
    if not slots then
        slots = {}
        for i = 1, SLOTS do slots[i] = 0 end
        by_line[line] = slots
    end
    series[key] = slots
    return slots
end

-- The number at byte `pos` of `s` up to the next "|" (or the end), and where the next field
-- starts; nil for anything but digits with one optional "." ("-", "0.001, 0.002", "").
local function number_at(s, pos, len)
    local value, scale, ok = 0, nil, false
    while pos <= len do
        local c = byte(s, pos)
        if c == BAR then break end
        if c >= ZERO and c <= NINE then
            if scale then
                scale = scale / 10
                value = value + (c - ZERO) * scale
            else
                value = value * 10 + (c - ZERO)
            end
            ok = true
        elseif c == DOT and not scale then
            scale = 1
        else
            ok = nil
            while pos <= len and byte(s, pos) ~= BAR do pos = pos + 1 end
            break
        end
        pos = pos + 1
    end
    return ok and value or nil, pos + 1
end

local VALUES = { 0, 0, 0, 0, 0, 0 } -- one request's numbers, reused

local function count(s, skip_upstream)
    local p1 = find(s, "|", 1, true)
    local p2 = p1 and find(s, "|", p1 + 1, true)
    local p3 = p2 and find(s, "|", p2 + 1, true)
    local p4 = p3 and find(s, "|", p3 + 1, true)
    if not p4 then return end
    local key = sub(s, 1, p4 - 1)
    local slots = series[key] or slots_of(key, p1, p2, p3)
    slots[1] = slots[1] + 1
    local values = VALUES
    local pos, len = p4 + 1, #s
    for i = 1, 6 do
        values[i], pos = number_at(s, pos, len)
    end
    for h = 1, 7 do
        local f = FACT_OF[h]
        local v = values[f]
        if v and not (skip_upstream and f >= 2 and f <= 4) then observe(slots, h, v) end
    end
end

local function count_all()
    for i = 1, nfacts do
        count(facts[i], unanswered[i])
    end
    facts, nfacts, unanswered = {}, 0, {}
end

-- log_by_lua (every server but the status socket's); failed: the balancer found no peer
-- (nginx's error location), so the upstream variables time a failure, not an upstream.
function M.log(failed)
    local n = nfacts + 1
    facts[n] = ngx.var.portolan_request_facts
    if failed then unanswered[n] = true end
    nfacts = n
    if n >= BATCH then count_all() end
end

-- Once a second per worker (and when the worker exits): the series counted since the last
-- flush, one line each ("route status method canary slot slot ..."; "-" for an empty field),
-- stored under a key of their own in portolan_metrics for the controller to take (M.metrics).
-- A full dict drops the batch and counts it: the controller reports the loss.
function M.flush()
    count_all()
    local lines, n = {}, 0
    for line, slots in pairs(by_line) do
        n = n + 1
        lines[n] = line .. " " .. table.concat(slots, " ")
    end
    -- Started afresh: a worker holds the series of the last second only, not of every route
    -- and status it ever met.
    series, by_line = {}, {}
    if n == 0 then return end
    local store = ngx.shared.portolan_metrics
    local key = "b:" .. ngx.worker.pid() .. ":" .. store:incr("seq", 1, 0)
    local ok = store:safe_set(key, table.concat(lines, "\n"))
    if not ok then store:incr("dropped", n, 0) end
end

-- LuaJIT starts a collection when its heap has doubled since the last one: garbage from records
-- parsed again after each change could double what a worker holds before it is reclaimed, and
-- nginx's memory with it. Collected here instead once the heap is a fifth over its live size
-- (the size after the last collection), at most once a second, off the request path.
local live_kb = 0

local function tidy()
    local kb = collectgarbage("count")
    if kb > live_kb * 1.2 + 512 then
        collectgarbage("collect")
        live_kb = collectgarbage("count")
    end
end

-- init_worker's timer, once a second.
function M.tick(premature, metrics)
    if metrics then M.flush() end
    if not premature then tidy() end
end

-- content_by_lua on the status socket (GET /portolan/metrics): every batch stored so far,
-- each taken out as it is read; then "dropped <series lost to a full dict>".
function M.metrics()
    local store = ngx.shared.portolan_metrics
    local out, n = {}, 0
    for _, key in ipairs(store:get_keys(0)) do
        if key:sub(1, 2) == "b:" then
            local batch = store:get(key)
            store:delete(key)
            if batch then
                n = n + 1
                out[n] = batch
            end
        end
    end
    n = n + 1
    out[n] = "dropped " .. (store:get("dropped") or 0)
    ngx.say(table.concat(out, "\n"))
end

-- ---------------------------------------------------------------- certificates

local function load_cert(digest)
    local found = certcache[digest]
    if found then return found end
    local pem = certdata:get("c:" .. digest)
    if not pem then return nil end
    local cert, err = ssl.parse_pem_cert(pem)
    local key, kerr = ssl.parse_pem_priv_key(pem)
    if not cert or not key then
        ngx.log(ngx.ERR, "portolan: certificate ", digest, ": ", err or kerr)
        return nil
    end
    if certcount >= 4096 then -- certificates are immutable by digest: a reset is only memory
        certcache, certcount = {}, 0
    end
    found = { cert, key }
    certcache[digest] = found
    certcount = certcount + 1
    return found
end

-- ssl_client_hello_by_lua (catch-all server): the certificate the controller chose for the
-- SNI host (exact, then "*.parent", as ingress-nginx looks it up), else the default; without
-- either, the configured one stays. Set on the connection before nginx switches to the SNI's
-- server, which has no TLS context of its own and so keeps it.
-- A Gateway port's certificate (scope "<port>/", ingress/gateway): the listener whose hostname
-- fits the SNI name best: exact, then the longest "*.suffix" (one or more labels), then the
-- listener without hostname.
local function listener_certificate(scope, name)
    if name then
        name = name:lower()
        local digest = certdata:get("h:" .. scope .. name)
        if digest then return digest end
        local rest = name:match("^[^.]+%.(.+)$")
        while rest do
            digest = certdata:get("h:" .. scope .. "*." .. rest)
            if digest then return digest end
            rest = rest:match("^[^.]+%.(.+)$")
        end
    end
    return certdata:get("h:" .. scope)
end

function M.certificate(scope)
    local name = clienthello.get_client_hello_server_name()
    local digest
    if scope then
        digest = listener_certificate(scope, name)
    elseif name then
        name = name:lower()
        digest = certdata:get("h:" .. name)
        if not digest then
            local parent = name:match("^[^.]+%.(.+)$")
            if parent then digest = certdata:get("h:*." .. parent) end
        end
    end
    digest = digest or certdata:get("h:")
    if not digest then return end
    local pair = load_cert(digest)
    if not pair then return end
    ssl.clear_certs()
    local ok, err = ssl.set_cert(pair[1])
    if ok then ok, err = ssl.set_priv_key(pair[2]) end
    if not ok then
        ngx.log(ngx.ERR, "portolan: serving certificate ", digest, ": ", err)
        return ngx.exit(ngx.ERROR)
    end
end

-- ---------------------------------------------------------------- the channel

local function store_for(key)
    local kind = key:sub(1, 2)
    if kind == "c:" or kind == "h:" then return certdata end
    return data
end

-- A full push: the records it does not name go, with their versions.
local function forget_unnamed(named)
    for _, key in ipairs(certdata:get_keys(0)) do
        if key ~= "token" and not named[key] then
            certdata:delete(key)
            data:delete("v:" .. key)
        end
    end
    for _, key in ipairs(data:get_keys(0)) do
        if key ~= "gen" and key ~= "token" then
            local record = key:sub(1, 2) == "v:" and key:sub(3) or key
            if not named[record] then
                data:delete(key)
            end
        end
    end
end

-- content_by_lua on the status socket: POST a push (see the top of this file).
function M.push()
    if ngx.req.get_method() ~= "POST" then
        return ngx.exit(405)
    end
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if not body then
        local file = ngx.req.get_body_file()
        if file then
            local f = io.open(file, "rb")
            if f then
                body = f:read("*a")
                f:close()
            end
        end
    end
    if not body then
        ngx.status = 400
        ngx.say("empty push")
        return ngx.exit(400)
    end
    local first, rest = body:match("^([^\n]*)\n?(.*)$")
    local head = decode_args(first, 0)
    -- zones: the dict sizes of the configuration the push is for. A worker of an older one (a
    -- reload that resized a dict gave the new workers new dicts) sends it back to be resent.
    if head.zones and head.zones ~= data:capacity() .. "," .. certdata:capacity() then
        ngx.status = 421
        ngx.say("not the configured dicts (a worker of an older configuration): send again")
        return ngx.exit(421)
    end
    local token = head.token
    if not token or token == "" then
        ngx.status = 400
        ngx.say("no token")
        return ngx.exit(400)
    end
    local full = head.full
    if full then
        -- Nothing is flushed: requests meanwhile find what they found before. The token is
        -- dropped until the whole push is in, so one that fails half way is followed by another.
        data:delete("token")
        certdata:delete("token")
    elseif data:get("token") ~= token or certdata:get("token") ~= token then
        ngx.status = 409
        ngx.say("token mismatch: send everything")
        return ngx.exit(409)
    end
    local records = {}
    for line in rest:gmatch("[^\n]+") do
        local args = decode_args(line, 0)
        if type(args.k) == "string" then
            records[#records + 1] = args
        end
    end
    if full then -- what it does not name goes first, making room for the rest
        local named = {}
        for _, args in ipairs(records) do
            named[args.k] = true
        end
        forget_unnamed(named)
    end
    local gen = data:incr("gen", 1, 0)
    for _, args in ipairs(records) do
        local key, value = args.k, args.v
        local store = store_for(key)
        if type(value) ~= "string" then
            store:delete(key)
            data:delete("v:" .. key)
        elseif store:get(key) ~= value or not data:get("v:" .. key) then
            -- (a record sent again unchanged keeps its version, and workers what they parsed)
            local ok, err = store:safe_set(key, value)
            if ok then ok, err = data:safe_set("v:" .. key, gen) end
            if not ok then
                data:delete("token") -- half applied: the next push must be a full one
                ngx.status = 507
                ngx.say("cannot store ", key, ": ", err)
                return ngx.exit(507)
            end
        end
    end
    if full then
        data:safe_set("token", token)
        certdata:safe_set("token", token)
    end
    data:incr("gen", 1, 0) -- workers re-check what they cached
    ngx.say(#records)
end

return M
