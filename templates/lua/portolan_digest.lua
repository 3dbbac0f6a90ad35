-- HTTP Digest authentication (RFC 7616 with MD5, qop "auth" or none) for auth-type digest:
-- Debian's nginx has no digest module (ingress-nginx bundles nginx-http-auth-digest).
--
-- Nonces are stateless: "<time>:<hmac of the time>", keyed by a secret drawn when the master
-- loads this module (init_by_lua), so every worker of one configuration accepts the others'.
-- A nonce older than NONCE_TTL seconds, or of a previous configuration, is answered with
-- stale=true once the answer is otherwise right: the client retries without asking the user. Nonce counts are not tracked (a captured header can be replayed for the same
-- URI and method within NONCE_TTL): the note in ingress/features/auth.py says so.
--
-- The user file is htdigest's "user:realm:HA1", written by the controller (named by content,
-- so it never changes under a path: each worker reads it once).

local M = {}

local NONCE_TTL = 300
local secret
local files = {}

local function random_secret()
    local f = io.open("/dev/urandom", "rb")
    if f then
        local bytes = f:read(32)
        f:close()
        if bytes and #bytes == 32 then
            return bytes
        end
    end
    return tostring(ngx.now()) .. tostring(math.random())
end

secret = random_secret()

local function sign(ts)
    return ngx.encode_base64(ngx.hmac_sha1(secret, ts))
end

local function nonce()
    local ts = tostring(ngx.time())
    return ts .. ":" .. sign(ts)
end

-- Whether a nonce is ours and young. One we did not sign may be a previous configuration's (each
-- reload draws a new key): the client is then told it is stale, once it has proven the password.
local function fresh_nonce(value)
    local ts, mac = string.match(value or "", "^(%d+):(.+)$")
    return ts ~= nil and mac == sign(ts) and ngx.time() - tonumber(ts) <= NONCE_TTL
end

local function users(path)
    local found = files[path]
    if found then
        return found
    end
    found = {}
    local f = io.open(path, "r")
    if f then
        for line in f:lines() do
            local user, realm, ha1 = string.match(line, "^([^:]+):([^:]*):(%x+)$")
            if user then
                found[user .. ":" .. realm] = string.lower(ha1)
            end
        end
        f:close()
    end
    files[path] = found
    return found
end

local function params(header)
    local rest = string.match(header or "", "^%s*[Dd]igest%s+(.*)$")
    if not rest then
        return nil
    end
    local out = {}
    for key, value in string.gmatch(rest, '([%w%-]+)%s*=%s*"?([^",]*)"?') do
        out[string.lower(key)] = value
    end
    return out
end

local function challenge(realm, stale)
    ngx.header["WWW-Authenticate"] = 'Digest realm="' .. realm .. '", nonce="' .. nonce()
        .. '", qop="auth", algorithm=MD5' .. (stale and ", stale=true" or "")
    return ngx.exit(ngx.HTTP_UNAUTHORIZED)
end

-- access phase: let the request through, or answer 401 with a challenge.
function M.check(path, realm)
    local p = params(ngx.var.http_authorization)
    if not p or not p.username or not p.response or p.realm ~= realm or p.uri ~= ngx.var.request_uri then
        return challenge(realm, false)
    end
    if p.algorithm and string.upper(p.algorithm) ~= "MD5" then
        return challenge(realm, false)
    end
    local ha1 = users(path)[p.username .. ":" .. realm]
    if not ha1 then
        return challenge(realm, false)
    end
    local ha2 = ngx.md5(ngx.req.get_method() .. ":" .. p.uri)
    local expected
    if p.qop == "auth" then
        if not p.nc or not p.cnonce then
            return challenge(realm, false)
        end
        expected = ngx.md5(table.concat({ ha1, p.nonce, p.nc, p.cnonce, "auth", ha2 }, ":"))
    elseif p.qop == nil then
        expected = ngx.md5(ha1 .. ":" .. p.nonce .. ":" .. ha2)
    else
        return challenge(realm, false)
    end
    if expected ~= string.lower(p.response) then
        return challenge(realm, false)
    end
    if not fresh_nonce(p.nonce) then
        -- the right password with an old nonce: the client retries with this one, without asking the user
        return challenge(realm, true)
    end
end

return M
