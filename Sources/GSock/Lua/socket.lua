-- socket: LuaSocket 3's API on gsockd's cooperative sockets (LUASOCKET.md).
--
-- The socket objects and name resolution are Swift (the `c` table); this file
-- assembles `socket.core` from them, adds what LuaSocket's own socket.lua adds
-- (connect4/6, bind, try, choose, sinks and sources), `socket.select`, `socket.dns`,
-- the `socket.unix` module and OpenResty's receiveuntil. `require "socket"` and
-- `require "socket.core"` return the same table, as in LuaSocket.
local c, gsock = ...

local error, getmetatable, ipairs, math, pcall, select, setmetatable, string, type =
      error, getmetatable, ipairs, math, pcall, select, setmetatable, string, type
local bad_argument = gsock._internal.bad_argument

local socket = {
  _VERSION = "LuaSocket 3.1.0",
  _DEBUG = false,
  _SETSIZE = math.maxinteger,   -- select has no FD_SETSIZE cap here
  _SOCKETINVALID = -1,
  _DATAGRAMSIZE = 8192,
  tcp = c.tcp, tcp4 = c.tcp4, tcp6 = c.tcp6,
  udp = c.udp, udp4 = c.udp4, udp6 = c.udp6,
  gettime = c.gettime,
}

function socket.sleep(seconds)
  gsock.sleep(math.max(0, tonumber(seconds) or 0))
end

function socket.skip(d, ...)
  return select(d + 1, ...)
end

function socket.__unload() end

-- LTN13 exceptions ------------------------------------------------------------------

local exception = { __name = "[luasocket] exception" }

function socket.newtry(finalizer)
  return function(...)
    if not (...) then
      if finalizer then finalizer() end
      error(setmetatable({ (select(2, ...)) }, exception), 0)
    end
    return ...
  end
end

local function protected(ok, ...)
  if ok then return ... end
  local e = ...
  if getmetatable(e) == exception then return nil, e[1] end
  error(e, 0)
end

function socket.protect(f)
  return function(...) return protected(pcall(f, ...)) end
end

socket.try = socket.newtry()

-- Connecting and binding ---------------------------------------------------------------

local creators = { inet = c.tcp4, inet6 = c.tcp6 }

function socket.connect(address, port, laddress, lport, family)
  local create = creators[family] or c.tcp
  local sock, err = create()
  if not sock then return nil, err end
  if laddress then
    local ok, e = sock:bind(laddress, lport or 0)
    if not ok then sock:close() return nil, e end
  end
  local ok, e = sock:connect(address, port)
  if not ok then sock:close() return nil, e end
  return sock
end

function socket.connect4(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet")
end

function socket.connect6(address, port, laddress, lport)
  return socket.connect(address, port, laddress, lport, "inet6")
end

function socket.bind(host, port, backlog)
  if host == "*" then host = "0.0.0.0" end
  local addrinfo, err = socket.dns.getaddrinfo(host)
  if not addrinfo then return nil, err end
  local sock, res
  err = "no info on address"
  for _, alt in ipairs(addrinfo) do
    if alt.family == "inet" then sock, err = c.tcp4() else sock, err = c.tcp6() end
    if not sock then return nil, err end
    sock:setoption("reuseaddr", true)
    res, err = sock:bind(alt.addr, port)
    if not res then
      sock:close()
    else
      res, err = sock:listen(backlog)
      if not res then sock:close() else return sock end
    end
  end
  return nil, err
end

-- Names ---------------------------------------------------------------------------

local dns = {}
socket.dns = dns

function dns.getaddrinfo(host)
  local list, err = c.resolve(host)
  if not list then return nil, err end
  local seen, out = {}, {}
  for _, a in ipairs(list) do
    local key = a.family .. a.addr
    if not seen[key] then
      seen[key] = true
      out[#out + 1] = { family = a.family, addr = a.addr }
    end
  end
  return out
end

local function resolved(name, ips)
  return { name = name, alias = {}, ip = ips }
end

function dns.toip(name)
  local list, err = c.resolve(name, "inet", true)
  if not list then
    if err == "host or service not provided, or not known" then err = "host not found" end
    return nil, err
  end
  local ips, seen = {}, {}
  for _, a in ipairs(list) do
    if not seen[a.addr] then seen[a.addr] = true ips[#ips + 1] = a.addr end
  end
  return ips[1], resolved(list[1] and list[1].canonname or name, ips)
end

function dns.tohostname(address)
  local ip, err = dns.toip(address)
  if not ip then return nil, err end
  local name, nerr = c.nameinfo(ip)
  if not name then return nil, nerr end
  return name, resolved(name, { ip })
end

function dns.getnameinfo(host, service)
  if host == nil and service == nil then error(bad_argument(1, "getnameinfo", "host or service expected"), 2) end
  local names = {}
  if host ~= nil then
    local list, err = c.resolve(host)
    if not list then return nil, err end
    local seen = {}
    for _, a in ipairs(list) do
      if not seen[a.addr] then
        seen[a.addr] = true
        local name = c.nameinfo(a.addr)
        names[#names + 1] = name or a.addr
      end
    end
  end
  if service == nil then return names end
  local port = math.tointeger(tonumber(service))
  return names, port and c.servicename(port) or tostring(service)
end

dns.gethostname = c.gethostname

-- select ----------------------------------------------------------------------------

local function collect(list, fds, map, dirty)
  if list == nil then return end
  local i = 1
  while true do
    local s = list[i]
    if s == nil then break end
    local fd = s:getfd()
    if fd and fd >= 0 then
      if dirty and s.dirty and s:dirty() then dirty[#dirty + 1] = s end
      if not map[fd] then fds[#fds + 1] = fd end
      map[fd] = s
    end
    i = i + 1
  end
end

local function associate(list)
  for i = 1, #list do list[list[i]] = i end
  return list
end

--- Waits until a socket of `recvt` is readable or one of `sendt` writable, blocking
--- only the calling fiber. Any object with getfd() (and dirty()) may be given.
function socket.select(recvt, sendt, timeout)
  local rfds, wfds, rmap, wmap, dirty = {}, {}, {}, {}, {}
  collect(recvt, rfds, rmap, dirty)
  collect(sendt, wfds, wmap, nil)
  if #dirty > 0 then timeout = 0 end
  local readable, writable = {}, {}
  local rready, wready, failure = c.select_fds(rfds, wfds, timeout)
  local marked = {}
  for _, s in ipairs(dirty) do readable[#readable + 1] = s marked[s] = true end
  if rready then
    for _, fd in ipairs(rready) do
      local s = rmap[fd]
      if not marked[s] then readable[#readable + 1] = s end
    end
    for _, fd in ipairs(wready) do writable[#writable + 1] = wmap[fd] end
  elseif #dirty == 0 then
    return associate(readable), associate(writable), failure or "timeout"
  end
  return associate(readable), associate(writable)
end

-- Sinks and sources (LTN12) -----------------------------------------------------------------

function socket.choose(table)
  return function(name, opt1, opt2)
    if type(name) ~= "string" then name, opt1, opt2 = "default", name, opt1 end
    local f = table[name or "nil"]
    if not f then error("unknown key (" .. tostring(name) .. ")", 3)
    else return f(opt1, opt2) end
  end
end

local sourcet, sinkt = {}, {}
socket.sourcet, socket.sinkt = sourcet, sinkt
socket.BLOCKSIZE = 2048

sinkt["close-when-done"] = function(sock)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {
    __call = function(self, chunk, err)
      if not chunk then sock:close() return 1
      else return sock:send(chunk) end
    end,
  })
end

sinkt["keep-open"] = function(sock)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {
    __call = function(self, chunk, err)
      if chunk then return sock:send(chunk) else return 1 end
    end,
  })
end

sinkt["default"] = sinkt["keep-open"]
socket.sink = socket.choose(sinkt)

sourcet["by-length"] = function(sock, length)
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {
    __call = function()
      if length <= 0 then return nil end
      local size = math.min(socket.BLOCKSIZE, length)
      local chunk, err = sock:receive(size)
      if err then return nil, err end
      length = length - string.len(chunk)
      return chunk
    end,
  })
end

sourcet["until-closed"] = function(sock)
  local done
  return setmetatable({
    getfd = function() return sock:getfd() end,
    dirty = function() return sock:dirty() end,
  }, {
    __call = function()
      if done then return nil end
      local chunk, err, partial = sock:receive(socket.BLOCKSIZE)
      if not err then return chunk
      elseif err == "closed" then
        sock:close()
        done = 1
        return partial
      else return nil, err end
    end,
  })
end

sourcet["default"] = sourcet["until-closed"]
socket.source = socket.choose(sourcet)

-- OpenResty's receiveuntil ------------------------------------------------------------------

--- Returns a reader: reader() gives the data up to the next `pattern` (consumed);
--- reader(size) gives it in chunks of at most `size` bytes, then nil once the pattern
--- is reached. Errors: nil, message, partial.
local function receiveuntil(sock, pattern)
  if type(pattern) ~= "string" or pattern == "" then
    error(bad_argument(1, "receiveuntil", "non-empty string expected"), 2)
  end
  local finished = false
  return function(size)
    if finished then
      finished = false
      return nil
    end
    local data, found, partial = sock:_receiveuntil(pattern, size)
    if data == nil then return nil, found, partial end
    if size and found then finished = true end
    return data
  end
end
for _, methods in ipairs(c.stream_classes) do methods.receiveuntil = receiveuntil end

-- socket.unix ---------------------------------------------------------------------------

local unix = setmetatable({ stream = c.unix_stream, dgram = c.unix_dgram }, {
  __call = function() return c.unix_stream() end,
})
unix.tcp, unix.udp = unix.stream, unix.dgram

package.preload["socket.core"] = function() return socket end
package.preload["socket"] = function() return socket end
package.preload["socket.unix"] = function() return unix end
return socket
