-- ssl: LuaSec's API (SPEC §10) on gsockd's sockets, cooperative and secure by default.
--
-- The contexts and the TLS transport are Swift (the `c` table); this file checks and
-- normalizes LuaSec's parameters, and registers `require "ssl"` in package.preload, which
-- Lua searches before package.path: gsockd's module wins over an installed LuaSec, whose C
-- module would block every fiber while it waits.
local c, https, gsock = ...

local ipairs, math, pairs, select, table, tostring, type = ipairs, math, pairs, select, table, tostring, type
local closest = gsock._internal.closest

local ssl = {
  _VERSION = "1.3.2",
  _COPYRIGHT = "LuaSec's API on gsockd",
  config = {
    protocols = { tlsv1_2 = true, tlsv1_3 = true },
    capabilities = { alpn = true, curves_list = true },
  },
}

local function check(key, value, ...)
  if value == nil then return true end
  local t = type(value)
  for i = 1, select("#", ...) do
    if t == select(i, ...) then return true end
  end
  return nil, ("invalid %s (%s expected, got %s)"):format(key, table.concat({ ... }, " or "), t)
end

--- A string or a list of strings as a list; nil stays nil.
local function list(key, value)
  if value == nil then return nil end
  if type(value) == "string" then return { value } end
  local out = {}
  for i, v in ipairs(value) do
    if type(v) ~= "string" then
      return nil, ("invalid %s (entry %d: string expected, got %s)"):format(key, i, type(v))
    end
    out[i] = v
  end
  return out
end

-- The keys of a params table: every key LuaSec 1.2's newcontext reads, and gsockd's
-- servers' sni_certificates.
local KEYS = { "mode", "protocol", "key", "certificate", "certificates", "password", "cafile", "capath",
               "ciphers", "ciphersuites", "verify", "options", "depth", "dhparam", "curve", "curveslist",
               "verifyext", "alpn", "dane", "sni_certificates" }
local known = {}
for _, k in ipairs(KEYS) do known[k] = true end

--- nil, or what is wrong with the first key of `cfg` (in sorted order) that is not a
--- params key: "unknown key 'cafle' in the TLS parameters; did you mean 'cafile'?".
local function unknown_key(cfg)
  local unknown = {}
  for k in pairs(cfg) do
    if not known[k] then unknown[#unknown + 1] = tostring(k) end
  end
  if #unknown == 0 then return nil end
  table.sort(unknown)
  local g = closest(unknown[1], KEYS)
  return ("unknown key '%s' in the TLS parameters%s"):format(unknown[1], g and ("; did you mean '%s'?"):format(g) or "")
end

--- `ssl.newcontext(params)` → ctx or nil, err. LuaSec's keys; an unknown key is an error
--- naming it, where LuaSec ignores it (a misspelt cafile would verify against the
--- system store).
function ssl.newcontext(cfg)
  if type(cfg) ~= "table" then return nil, "invalid configuration (table expected, got " .. type(cfg) .. ")" end
  local problem = unknown_key(cfg)
  if problem then return nil, problem end
  local p = {}
  for _, key in ipairs({ "mode", "protocol", "key", "certificate", "cafile", "capath", "ciphers",
                         "ciphersuites", "curve", "curveslist" }) do
    local ok, err = check(key, cfg[key], "string")
    if not ok then return nil, err end
    p[key] = cfg[key]
  end
  p.curves = cfg.curveslist or cfg.curve
  -- LuaSec's dane: true, or a list of its flags; conn:setdane and conn:settlsa then give
  -- each connection its TLSA records.
  if cfg.dane then
    local flags = type(cfg.dane) == "table" and cfg.dane or {}
    for _, flag in ipairs(flags) do
      if flag ~= "no_ee_namechecks" then return nil, ("invalid dane option (%s)"):format(tostring(flag)) end
    end
    p.dane = { table.unpack(flags) }
  end
  -- LuaSec's dhparam(is_export, keylength) gives the PEM DH parameters of a server's DHE
  -- suites. LuaSec calls it from inside OpenSSL at each DHE handshake, with what OpenSSL
  -- passes (false, 1024); here it is called once, now, so that no Lua runs inside OpenSSL.
  -- What it raises goes on up, as a password function's does. No string back: no DHE
  -- suites, as in LuaSec.
  if cfg.dhparam then
    if type(cfg.dhparam) ~= "function" then return nil, "invalid DH parameter type" end
    local pem = cfg.dhparam(false, 1024)
    if type(pem) == "string" then p.dhparam = pem end
  end
  local ok, err = check("depth", cfg.depth, "number")
  if not ok then return nil, err end
  if cfg.depth ~= nil and (math.type(cfg.depth) ~= "integer" or cfg.depth < 0) then
    return nil, "invalid depth (a non-negative integer expected)"
  end
  p.depth = cfg.depth
  local password = cfg.password
  ok, err = check("password", password, "string", "function")
  if not ok then return nil, err end
  if type(password) == "function" then
    password = password()
    if type(password) ~= "string" then return nil, "invalid password (the function returned no string)" end
  end
  p.password = password
  -- LuaSec's certificates: several certificate/key pairs (an RSA and an ECDSA one, say);
  -- OpenSSL offers each client the one it can use.
  if cfg.certificates ~= nil then
    if type(cfg.certificates) ~= "table" then return nil, "invalid certificates (table expected)" end
    p.certificates = {}
    for i, entry in ipairs(cfg.certificates) do
      if type(entry) ~= "table" or type(entry.certificate) ~= "string" or type(entry.key) ~= "string" then
        return nil, ("invalid certificates (entry %d: { certificate = FILE, key = FILE } expected)"):format(i)
      end
      local pw = entry.password
      if type(pw) == "function" then pw = pw() end
      if pw ~= nil and type(pw) ~= "string" then return nil, ("invalid certificates (entry %d: password)"):format(i) end
      p.certificates[i] = { certificate = entry.certificate, key = entry.key, password = pw }
    end
  end
  -- gsockd's servers: certificates chosen by SNI (server.lua checks them).
  p.sni_certificates = cfg.sni_certificates
  for _, key in ipairs({ "verify", "options", "alpn", "verifyext" }) do
    ok, err = check(key, cfg[key], "string", "table")
    if not ok then return nil, err end
    p[key], err = list(key, cfg[key])
    if err then return nil, err end
  end
  return c.newcontext(p)
end

--- `ssl.wrap(sock, params | ctx)` → conn or nil, err. The socket's descriptor moves into
--- the connection; the socket is left without one, as with LuaSec.
function ssl.wrap(sock, cfg)
  local ctx, err = cfg, nil
  if type(cfg) == "table" then
    ctx, err = ssl.newcontext(cfg)
    if not ctx then return nil, err end
  end
  return c.wrap(sock, ctx)
end

--- `ssl.loadcertificate(pem)` → an x509 object, or nil and why.
ssl.loadcertificate = c.loadcertificate
ssl.x509 = { load = c.loadcertificate }

package.preload["ssl"] = function() return ssl end
package.preload["ssl.x509"] = function() return ssl.x509 end
package.preload["ssl.https"] = function() return https(KEYS) end
return ssl
