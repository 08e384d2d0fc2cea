-- ssl.https: LuaSec's https module (request and tcp), so that socket.http with an https://
-- URL and libraries calling ssl.https run unchanged and cooperatively. One deliberate
-- difference from LuaSec (SPEC §10): the peer is verified by default, against the system CA
-- store, with its host name checked; `verify = "none"` in the request table turns that off.
local keys = ...   -- the keys of ssl.newcontext's params, from ssl.lua
local socket = require "socket"
local ssl = require "ssl"
local ltn12 = require "ltn12"
local http = require "socket.http"
local url = require "socket.url"

local getmetatable, ipairs, pairs, setmetatable, table, tostring, type =
      getmetatable, ipairs, pairs, setmetatable, table, tostring, type
local try = socket.try

local M = {
  _VERSION = "1.3.2",
  _COPYRIGHT = "LuaSec's ssl.https on gsockd",
  PORT = 443,
  TIMEOUT = 60,
}

local defaults = {
  protocol = "any",
  options = { "all", "no_sslv2", "no_sslv3", "no_tlsv1" },
  verify = "peer",
}

local function default_https_port(u)
  return url.build(url.parse(u, { port = M.PORT }))
end

local function urlstring_totable(u, body, result_table)
  local t = {
    url = default_https_port(u),
    method = body and "POST" or "GET",
    sink = ltn12.sink.table(result_table),
  }
  if body then
    t.source = ltn12.source.string(body)
    t.headers = {
      ["content-length"] = #body,
      ["content-type"] = "application/x-www-form-urlencoded",
    }
  end
  return t
end

--- Forwards the TLS connection's methods to the wrapper LuaSocket's http module holds.
local function forward(conn)
  for name, method in pairs(getmetatable(conn.sock).__index) do
    if type(method) == "function" then
      conn[name] = function(self, ...) return method(self.sock, ...) end
    end
  end
end

--- `tcp(params)`: a `create` function for socket.http whose sockets speak TLS once connected.
function M.tcp(params)
  params = params or {}
  for k, v in pairs(defaults) do
    if params[k] == nil then params[k] = v end
  end
  params.mode = "client"
  -- The request table (url, sink, headers, ...) holds the TLS parameters too, as in LuaSec;
  -- newcontext refuses keys that are not its own.
  local tls = {}
  for _, k in ipairs(keys) do tls[k] = params[k] end
  return function()
    local conn = { sock = try(socket.tcp()) }
    local settimeout = getmetatable(conn.sock).__index.settimeout
    function conn:settimeout() return settimeout(self.sock, M.TIMEOUT) end
    function conn:connect(host, port)
      try(self.sock:connect(host, port))
      -- A context per connection: the system CA store is loaded once and shared
      -- (TLSContext), and sessions resume across same-settings contexts.
      self.sock = try(ssl.wrap(self.sock, tls))
      self.sock:sni(host)
      self.sock:settimeout(M.TIMEOUT)
      try(self.sock:dohandshake())
      forward(self)
      return 1
    end
    return conn
  end
end

--- `request(url [, body])` or `request(table)`, as socket.http.request.
function M.request(u, body)
  local result_table = {}
  local stringrequest = type(u) == "string"
  if stringrequest then
    u = urlstring_totable(u, body, result_table)
  else
    u.url = default_https_port(u.url)
  end
  if http.PROXY or u.proxy then
    return nil, "proxy not supported"
  elseif u.redirect then
    return nil, "redirect not supported"
  elseif u.create then
    return nil, "create function not permitted"
  end
  u.create = M.tcp(u)
  local res, code, headers, status = http.request(u)
  if res and stringrequest then
    return table.concat(result_table), code, headers, status
  end
  return res, code, headers, status
end

return M
