-- HTTP/1.1 services on the wire (SPEC §11): raw sockets send exact bytes and read exact
-- responses. Request forms, bodies both ways, keep-alive rules, pipelining, upgrade, and
-- every limit and error status with its Connection: close.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/http/"
local wire = dofile(here .. "support/wire.lua")

-- A server that describes each request back as "key=value" lines.
local function describe_server(opts)
  return gsock.http.server("127.0.0.1:0", function(req, res)
    if req.path == "/echo" then
      local body = req:body()
      if not body then return end   -- the server answers the body's error (413, 400)
      return 200, body
    end
    if req.path == "/fixed" then return 200, "sixteen bytes..." end
    local lines = {
      "method=" .. req.method, "target=" .. req.target, "path=" .. req.path, "query=" .. tostring(req.query),
      "version=" .. req.version, "host=" .. tostring(req.headers["HOST"]), "x=" .. tostring(req.headers.x),
      "xs=" .. #req:header_values("X"), "peer=" .. tostring(req.peer.host),
    }
    return 200, table.concat(lines, "\n") .. "\n"
  end, opts):start()
end

local function field(body, key) return body:match("\n?" .. key .. "=([^\n]*)") end

describe("HTTP requests", function()
  local srv
  before_each(function() srv = describe_server() end)
  after_each(function() srv:stop() end)

  it("parses every method and target form", function()
    for _, m in ipairs({ "GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "PURGE-ALL" }) do
      local r = wire.once(srv, m .. " /a/b?c=d HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
      assert.equals(200, r.status)
      assert.equals(m, field(r.body, "method"))
      assert.equals("/a/b", field(r.body, "path"))
      assert.equals("c=d", field(r.body, "query"))
    end
    local r = wire.once(srv, "OPTIONS * HTTP/1.1\r\n\r\n")
    assert.equals("*", field(r.body, "target"))
    r = wire.once(srv, "GET http://example.com/x/y?z HTTP/1.1\r\n\r\n")
    assert.equals("http://example.com/x/y?z", field(r.body, "target"))
    assert.equals("/x/y", field(r.body, "path"))
    assert.equals("z", field(r.body, "query"))
    r = wire.once(srv, "GET /nq HTTP/1.1\r\n\r\n")
    assert.equals("nil", field(r.body, "query"))
    assert.equals("127.0.0.1", field(r.body, "peer"))
  end)

  it("percent-decodes the path (%2F stays a slash in it) and answers 400 to a bad escape", function()
    local r = wire.once(srv, "GET /a%20b/%2Fc%C3%A9 HTTP/1.1\r\n\r\n")
    assert.equals("/a b//cé", field(r.body, "path"))
    assert.equals("/a%20b/%2Fc%C3%A9", field(r.body, "target"))
    r = wire.once(srv, "GET /bad%zz HTTP/1.1\r\n\r\n", false, true)
    assert.equals(400, r.status)
    assert.equals("close", r.headers.connection)
    assert.is_true(r.closed_after)
    r = wire.once(srv, "GET /nul%00 HTTP/1.1\r\n\r\n")
    assert.equals(400, r.status)
  end)

  it("looks headers up in any case and joins repeated fields", function()
    local r = wire.once(srv, "GET / HTTP/1.1\r\nhOsT: example\r\nX: 1\r\nx: 2\r\n\r\n")
    assert.equals("example", field(r.body, "host"))
    assert.equals("1, 2", field(r.body, "x"))
    assert.equals("2", field(r.body, "xs"))
  end)

  it("reads Content-Length and chunked bodies (extensions and trailers too)", function()
    local r = wire.once(srv, "POST /echo HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world")
    assert.equals("hello world", r.body)
    r = wire.once(srv, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n")
    assert.equals("hello world", r.body)
    assert.equals("11", r.headers["content-length"])
  end)

  it("answers Expect: 100-continue when the handler reads the body", function()
    local c = wire.connect(srv)
    assert(c:send("POST /echo HTTP/1.1\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"))
    assert.equals("HTTP/1.1 100 Continue", c:receive("*l"))
    assert.equals("", c:receive("*l"))
    assert(c:send("data"))
    local r = wire.read(c)
    assert.equals(200, r.status)
    assert.equals("data", r.body)
    c:close()
  end)

  it("sends no body to HEAD, with the Content-Length a GET gets", function()
    local get = wire.once(srv, "GET /fixed HTTP/1.1\r\n\r\n")
    assert.equals("16", get.headers["content-length"])
    local c = wire.connect(srv)
    assert(c:send("HEAD /fixed HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n"))
    local head = wire.read(c, true)
    assert.equals(200, head.status)
    assert.equals("16", head.headers["content-length"])
    local after = wire.read(c)   -- the next response follows at once: no body bytes in between
    assert.equals("/after", field(after.body, "path"))
    c:close()
  end)

  it("keeps HTTP/1.0 connections only when asked, and closes on Connection: close", function()
    local r = wire.once(srv, "GET / HTTP/1.0\r\n\r\n", false, true)
    assert.equals("close", r.headers.connection)
    assert.is_true(r.closed_after)
    local c = wire.connect(srv)
    assert(c:send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"))
    r = wire.read(c)
    assert.equals("keep-alive", r.headers.connection)
    assert(c:send("GET /2 HTTP/1.1\r\nConnection: close\r\n\r\n"))
    r = wire.read(c)
    assert.equals("/2", field(r.body, "path"))
    assert.equals("close", r.headers.connection)
    assert.is_true(wire.closed(c))
    c:close()
  end)

  it("serves 100 requests on one connection, and 20 pipelined ones in order", function()
    local c = wire.connect(srv)
    for i = 1, 100 do
      assert(c:send(("GET /n%d HTTP/1.1\r\n\r\n"):format(i)))
      local r = wire.read(c)
      assert.equals("/n" .. i, field(r.body, "path"))
      assert.is_nil(r.headers.connection)
    end
    local batch = {}
    for i = 1, 20 do batch[i] = ("GET /p%d HTTP/1.1\r\n\r\n"):format(i) end
    assert(c:send(table.concat(batch)))
    for i = 1, 20 do
      local r = wire.read(c)
      assert.equals("/p" .. i, field(r.body, "path"))
    end
    c:close()
  end)

  it("answers a request sent while the one before still runs, after it, without spinning meanwhile", function()
    local slow = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/slow" then gsock.sleep(0.3) end
      return 200, req.path
    end):start()
    local c = wire.connect(slow)
    assert(c:send("GET /first HTTP/1.1\r\n\r\n"))   -- then the connection waits for the next head
    assert.equals("/first", wire.read(c).body)
    gsock.sleep(0.05)
    assert(c:send("GET /slow HTTP/1.1\r\n\r\n"))
    gsock.sleep(0.05)
    local cpu = os.clock()
    assert(c:send("GET /next HTTP/1.1\r\nContent-Length: 4\r\n\r\nbody"))   -- while /slow sleeps
    local first = wire.read(c)
    cpu = os.clock() - cpu
    assert.equals("/slow", first.body)
    assert.equals("/next", wire.read(c).body)
    assert.is_true(cpu < 0.1, ("%.3f s of CPU while /slow slept 0.25 s"):format(cpu))
    c:close()
    slow:stop()
  end)

  it("req:args(): repeated keys as lists, a key alone as true, '+' and %XX decoded in keys and values; no query or an empty one gives {}", function()
    local function show(v)
      if type(v) ~= "table" then return type(v) == "string" and ("%q"):format(v) or tostring(v) end
      local items = {}
      for i, x in ipairs(v) do items[i] = show(x) end
      return "[" .. table.concat(items, ",") .. "]"
    end
    local args_srv = gsock.http.server("127.0.0.1:0", function(req)
      local args, keys = req:args(), {}
      for k in pairs(args) do keys[#keys + 1] = k end
      table.sort(keys)
      for i, k in ipairs(keys) do keys[i] = show(k) .. "=" .. show(args[k]) end
      return 200, table.concat(keys, ";")
    end):start()
    local function args(target) return wire.once(args_srv, "GET " .. target .. " HTTP/1.1\r\n\r\n").body end
    assert.equals('"a"=["1","2"];"b"=true', args("/?a=1&a=2&b"))
    assert.equals('"a"=["1","2","3"]', args("/?a=1&a=2&a=3"))
    assert.equals('"&k="="v+w= x";"a b"="c d";"e"=""', args("/?a+b=c+d&%26k%3D=v%2Bw%3D%20x&e="))
    assert.equals('"caf\195\169"="\195\169t\195\169"', args("/?caf%C3%A9=%c3%a9t%C3%A9"))
    assert.equals("", args("/?"))
    assert.equals("", args("/"))
    args_srv:stop()
  end)

  --- A server whose handler reads the body with req:reader(SIZE) (SIZE is the query) and
  --- answers "n=CHUNKS longest=BYTES err=ERR again=NEXT body=BODY".
  local function reader_server()
    return gsock.http.server("127.0.0.1:0", function(req)
      local read, parts, longest = req:reader(tonumber(req.query)), {}, 0
      while true do
        local data, err = read()
        if data == nil then
          local again = read()
          return 200, ("n=%d longest=%d err=%s again=%s body=%s"):format(#parts, longest, tostring(err), tostring(again),
                                                                           table.concat(parts))
        end
        longest = math.max(longest, #data)
        parts[#parts + 1] = data
      end
    end):start()
  end
  local READER_BODY = "hello world, thirty-two bytes..!"

  it("req:reader(size): a Content-Length body in chunks of at most size bytes, then nil (and nil again)", function()
    local reader_srv = reader_server()
    local r = wire.once(reader_srv, "POST /?4 HTTP/1.1\r\nContent-Length: 32\r\n\r\n" .. READER_BODY)
    assert.equals("n=8 longest=4 err=nil again=nil body=" .. READER_BODY, r.body)
    r = wire.once(reader_srv, "POST /?5 HTTP/1.1\r\nContent-Length: 32\r\n\r\n" .. READER_BODY)
    assert.equals("n=7 longest=5 err=nil again=nil body=" .. READER_BODY, r.body)
    reader_srv:stop()
  end)

  it("req:reader(size): a chunked body in chunks of at most size bytes, then nil (and nil again)", function()
    local reader_srv = reader_server()
    local r = wire.once(reader_srv, "POST /?3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
      .. "5\r\nhello\r\n1b\r\n" .. READER_BODY:sub(6) .. "\r\n0\r\n\r\n")
    reader_srv:stop()
    local tail = " err=nil again=nil body=" .. READER_BODY
    assert.equals(tail, r.body:sub(-#tail))
    local n, longest = r.body:match("^n=(%d+) longest=(%d+) ")
    assert.is_true(tonumber(n) >= 11, r.body)   -- 32 bytes in pieces of at most 3
    assert.equals("3", longest)
  end)

  it("req:reader(size): a chunked body read in small pieces leaves the request pipelined behind it intact", function()
    local reader_srv = reader_server()
    local c = wire.connect(reader_srv)
    assert(c:send("POST /?2 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
      .. "POST /?4 HTTP/1.1\r\nContent-Length: 32\r\n\r\n" .. READER_BODY))
    assert.equals("n=3 longest=2 err=nil again=nil body=hello", wire.read(c).body)
    assert.equals("n=8 longest=4 err=nil again=nil body=" .. READER_BODY, wire.read(c).body)
    c:close()
    reader_srv:stop()
  end)

  it("counts answered requests in gsock.stats() and holds no fiber for idle connections", function()
    local before = gsock.stats()
    local idle = {}
    for i = 1, 50 do
      idle[i] = wire.connect(srv)
      assert(idle[i]:send("GET / HTTP/1.1\r\n\r\n"))
      assert.equals(200, wire.read(idle[i]).status)
    end
    local after = gsock.stats()
    assert.equals(before.http_requests + 50, after.http_requests)
    assert.equals(before.fibers, after.fibers)
    assert.equals(50, srv:connections())
    for _, c in ipairs(idle) do c:close() end
  end)
end)

describe("HTTP responses", function()
  it("streams chunked without Content-Length, raw to HTTP/1.0 (then closes), and honours res.headers", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      res.headers["Content-Type"] = "text/plain"
      res.headers["content-type"] = "text/x-replaced"
      res.headers["Set-Cookie"] = { "a=1", "b=2" }
      res:write("one,")
      res:write("two")
      if req.path == "/sizes" then
        res:write(("a"):rep(26))     -- chunk sizes in hex: 1a, fff
        res:write(("b"):rep(4095))
      end
      res:finish(",three")
    end):start()
    local r = wire.once(srv, "GET /sizes HTTP/1.1\r\n\r\n")
    assert.is_true(r.chunked)
    assert.equals("one,two" .. ("a"):rep(26) .. ("b"):rep(4095) .. ",three", r.body)
    r = wire.once(srv, "GET / HTTP/1.1\r\n\r\n")
    assert.is_true(r.chunked)
    assert.equals("one,two,three", r.body)
    assert.equals("text/x-replaced", r.headers["content-type"])
    assert.equals("a=1, b=2", r.headers["set-cookie"])
    local cookies = 0
    for _, f in ipairs(r.fields) do if f:find("^Set%-Cookie: ") then cookies = cookies + 1 end end
    assert.equals(2, cookies)
    assert.truthy(r.headers.date:match("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$"))
    r = wire.once(srv, "GET / HTTP/1.0\r\n\r\n")
    assert.equals("one,two,three", r.body)
    assert.is_nil(r.headers["transfer-encoding"])
    assert.equals("close", r.headers.connection)
    srv:stop()
  end)

  it("the return shorthand converts a body with tostring, merges returned headers into res.headers, and refuses headers that are no table (500)", function()
    local shown = setmetatable({}, { __tostring = function() return "shown" end })
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/number" then return 200, 42 end
      if req.path == "/tostring" then return 200, shown, { ["X-Kind"] = "table" } end
      if req.path == "/merge" then
        res.headers["X-Kept"] = "1"
        res.headers["x-replaced"] = "old"
        return 200, "merged", { ["X-Replaced"] = "new", ["X-Added"] = "2" }
      end
      return 200, "x", "text/plain"
    end):start()
    local r = wire.once(srv, "GET /number HTTP/1.1\r\n\r\n")
    assert.equals("42", r.body)
    assert.equals("2", r.headers["content-length"])
    r = wire.once(srv, "GET /tostring HTTP/1.1\r\n\r\n")
    assert.equals("shown", r.body)
    assert.equals("table", r.headers["x-kind"])
    r = wire.once(srv, "GET /merge HTTP/1.1\r\n\r\n")
    assert.equals("merged", r.body)
    assert.equals("1", r.headers["x-kept"])
    assert.equals("new", r.headers["x-replaced"])
    assert.equals("2", r.headers["x-added"])
    local replaced = 0
    for _, f in ipairs(r.fields) do if f:lower():find("^x%-replaced: ") then replaced = replaced + 1 end end
    assert.equals(1, replaced)
    r = wire.once(srv, "GET /string-headers HTTP/1.1\r\n\r\n")
    assert.equals(500, r.status)
    srv:stop()
  end)

  it("takes the return shorthand with headers, and refuses a field value with CR/LF (500)", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/split" then return 200, "x", { ["X-Evil"] = "a\r\nInjected: yes" } end
      return 201, "made", { Location = "/x/1" }
    end):start()
    local r = wire.once(srv, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
    assert.equals("HTTP/1.1 201 Created", r.line)
    assert.equals("/x/1", r.headers.location)
    assert.equals("made", r.body)
    r = wire.once(srv, "GET /split HTTP/1.1\r\n\r\n")
    assert.equals(500, r.status)
    assert.is_nil(r.headers.injected)
    srv:stop()
  end)

  it("names a bad response field in its error, sends nothing of that head, and sends numbers as text", function()
    local cases = {
      ["/name"] = { { [1] = "x" }, "res.headers: field names must be strings, got number" },
      ["/token"] = { { ["Bad Name"] = "x" }, "res.headers: 'Bad Name' is not a valid field name" },
      ["/empty"] = { { [""] = "x" }, "res.headers: '' is not a valid field name" },
      ["/type"] = { { ["X-T"] = true }, "res.headers['X-T']: a string expected, got boolean" },
      ["/nul"] = { { ["X-N"] = "a\0b" }, "res.headers['X-N']: the value holds CR, LF or NUL" },
      ["/array"] = { { ["X-A"] = { "ok", "b\nc" } }, "res.headers['X-A']: the value holds CR, LF or NUL" },
      ["/length"] = { { ["Content-Length"] = "-1" }, "res.headers['Content-Length']: a length expected, got '-1'" },
    }
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/number" then return 200, "n", { ["X-Count"] = 5, ["X-Ratio"] = 0.5 } end
      local case = cases[req.path]
      for k, v in pairs(case[1]) do res.headers[k] = v end
      local ok, err = pcall(res.write, res, "never sent")
      assert(not ok, "the write was refused")
      res.headers = {}
      return 200, err
    end):start()
    for path, case in pairs(cases) do
      local r = wire.once(srv, "GET " .. path .. " HTTP/1.1\r\n\r\n")
      assert.equals(200, r.status, path)
      assert.truthy(r.body:find(case[2], 1, true), path .. ": " .. r.body)
      assert.is_nil(r.body:find("never sent", 1, true), path)
      for _, f in ipairs(r.fields) do   -- a refused head left behind would show as fields
        assert.is_nil(f:find("^HTTP/") or f:find("^X%-"), path .. ": " .. f)
      end
    end
    local r = wire.once(srv, "GET /number HTTP/1.1\r\n\r\n")
    assert.equals("5", r.headers["x-count"])
    assert.equals("0.5", r.headers["x-ratio"])
    srv:stop()
  end)

  it("answers 500 when the handler raises before its head, closes after it, and goes on serving", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/before" then error("boom before") end
      if req.path == "/after" then res:write("partial") error("boom after") end
      return 200, "fine"
    end):start()
    local r = wire.once(srv, "GET /before HTTP/1.1\r\n\r\n")
    assert.equals(500, r.status)
    assert.equals("close", r.headers.connection)
    local c = wire.connect(srv)
    assert(c:send("GET /after HTTP/1.1\r\n\r\n"))
    local text = c:receive("*a")
    assert.truthy(text:find("^HTTP/1.1 200 OK\r\n"))
    assert.is_nil(text:find("0\r\n\r\n$"))    -- no last chunk: the client sees the body cut
    c:close()
    assert.equals("fine", wire.once(srv, "GET / HTTP/1.1\r\n\r\n").body)
    srv:stop()
  end)

  it("res.status reads 200 until set; a handler that returns nothing answers res.status and res.headers with an empty body; a bad status answers 500", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      if req.path == "/nothing" then
        res.status = 204
        res.headers["X-Note"] = "empty"
        return
      end
      if req.path == "/created" then
        res.status = 201
        return nil
      end
      if req.path == "/default" then return res.status + 1, "res.status was " .. res.status end
      if req.path == "/bad-field" then res.status = "soon" return end
      if req.path == "/word" then return "ok", "body" end
      if req.path == "/small" then return 99, "body" end
      if req.path == "/large" then return 1000, "body" end
      if req.path == "/fraction" then return 200.5, "body" end
      return 200, "fine"
    end):start()
    local r = wire.once(srv, "GET /nothing HTTP/1.1\r\n\r\n")
    assert.equals(204, r.status)
    assert.equals("empty", r.headers["x-note"])
    assert.is_nil(r.headers["content-length"])    -- a 204 has no body and says no length
    assert.is_true(r.body == nil or r.body == "")
    r = wire.once(srv, "GET /default HTTP/1.1\r\n\r\n")
    assert.equals(201, r.status)
    assert.equals("res.status was 200", r.body)
    r = wire.once(srv, "GET /created HTTP/1.1\r\n\r\n")
    assert.equals(201, r.status)
    assert.equals("0", r.headers["content-length"])
    for _, path in ipairs({ "/bad-field", "/word", "/small", "/large", "/fraction" }) do
      r = wire.once(srv, "GET " .. path .. " HTTP/1.1\r\n\r\n", false, true)
      assert.equals(500, r.status, path)
      assert.equals("close", r.headers.connection, path)
      assert.is_true(r.closed_after, path)
    end
    assert.equals("fine", wire.once(srv, "GET / HTTP/1.1\r\n\r\n").body)
    srv:stop()
  end)

  --- A server answering /big with `big` and any other path with `other`, and a connection
  --- to it that asked for /big.
  local function big_response(big, other)
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      if req.path == "/big" then return 200, big end
      return 200, other
    end):start()
    local c = wire.connect(srv)
    assert(c:send("GET /big HTTP/1.1\r\n\r\n"))
    return srv, c
  end

  it("a returned body larger than the socket takes is flushed as the client reads, then the connection serves the next request", function()
    local big = ("0123456789abcdef"):rep(256 * 1024)   -- 4 MiB
    local srv, c = big_response(big, "after")
    gsock.sleep(0.2)                          -- the server meets a full socket and waits
    local r = assert(wire.read(c))
    assert.equals(200, r.status)
    assert.equals(#big, #r.body)
    assert.is_true(r.body == big)
    assert(c:send("GET /next HTTP/1.1\r\n\r\n"))
    assert.equals("after", assert(wire.read(c)).body)
    c:close()
    srv:stop()
  end)

  it("a client that leaves while its large response is flushed is closed, and the server goes on", function()
    local srv, c = big_response(("x"):rep(8 * 1024 * 1024), "still here")
    assert(c:receive(100))                    -- the response started
    c:setoption("linger", { on = true, timeout = 0 })
    c:close()                                 -- a reset under the server's flush
    gsock.sleep(0.1)
    assert.equals("still here", wire.once(srv, "GET / HTTP/1.1\r\n\r\n").body)
    local deadline = gsock.now() + 2
    while srv.http:count() > 0 and gsock.now() < deadline do gsock.sleep(0.02) end
    assert.equals(0, srv.http:count(), "the reset connection is still held")
    srv:stop()
  end)

  it("a headers table returned again and again is sent as it is each time, changed or not", function()
    local shared = { ["Content-Type"] = "text/plain", ["X-Fixed"] = "same" }
    local n = 0
    local srv = gsock.http.server("127.0.0.1:0", function(req)
      n = n + 1
      if req.path == "/count" then shared["X-Count"] = tostring(n) end   -- a new string each time
      if req.path == "/drop" then shared["X-Count"] = nil end
      if req.path == "/cookies" then shared["Set-Cookie"] = { "a=" .. n, "b=2" } end
      if req.path == "/uncookie" then shared["Set-Cookie"] = nil end
      if req.path == "/number" then shared["X-Number"] = n end
      if req.path == "/unnumber" then shared["X-Number"] = nil end
      collectgarbage()   -- strings of earlier heads are collected; their addresses may come back
      return 200, "ok", shared
    end):start()
    local c = wire.connect(srv)
    local function get(path)
      assert(c:send("GET " .. path .. " HTTP/1.1\r\n\r\n"))
      return assert(wire.read(c))
    end
    for _ = 1, 3 do
      local r = get("/")
      assert.equals("same", r.headers["x-fixed"])
      assert.equals("text/plain", r.headers["content-type"])
      assert.is_nil(r.headers["x-count"])
    end
    for _ = 1, 5 do
      local r = get("/count")
      assert.equals(tostring(n), r.headers["x-count"])
      assert.equals("same", r.headers["x-fixed"])
    end
    local last = tostring(n)
    for _ = 1, 2 do assert.equals(last, get("/").headers["x-count"]) end
    for _ = 1, 2 do assert.is_nil(get("/drop").headers["x-count"]) end
    shared["X-Fixed"] = "changed"   -- changed between requests, outside the handler
    assert.equals("changed", get("/").headers["x-fixed"])
    assert.equals("changed", get("/").headers["x-fixed"])
    for _ = 1, 2 do
      local r = get("/cookies")
      assert.equals(("a=%d, b=2"):format(n), r.headers["set-cookie"])
    end
    for _ = 1, 2 do assert.is_nil(get("/uncookie").headers["set-cookie"]) end
    for _ = 1, 2 do
      local r = get("/number")
      assert.equals(tostring(n), r.headers["x-number"])
    end
    for _ = 1, 2 do assert.is_nil(get("/unnumber").headers["x-number"]) end
    local fields = get("/").fields
    assert.equals(4, #fields, table.concat(fields, "\n"))   -- the two, Content-Length, Date
    c:close()
    srv:stop()
  end)

  it("a callable table is a handler too", function()
    local handler = setmetatable({ word = "called" }, { __call = function(self, req, res)
      return 200, self.word .. " " .. req.path
    end })
    local srv = gsock.http.server("127.0.0.1:0", handler):start()
    assert.equals("called /x", wire.once(srv, "GET /x HTTP/1.1\r\n\r\n").body)
    srv:stop()
  end)

  it("hands over the raw connection on upgrade, with the bytes sent after the head", function()
    local srv = gsock.http.server("127.0.0.1:0", function(req, res)
      res.status = 101
      res.headers.Upgrade = "echo"
      res.headers.Connection = "Upgrade"
      local sock = assert(res:upgrade())
      while true do
        local line = sock:receive("*l")
        if not line or line == "bye" then break end
        sock:send("echo " .. line .. "\n")
      end
    end):start()
    local c = wire.connect(srv)
    assert(c:send("GET /ws HTTP/1.1\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\nfirst\n"))
    local r = wire.read(c, true)
    assert.equals(101, r.status)
    assert.is_nil(r.headers["content-length"])
    assert.equals("echo first", c:receive("*l"))
    assert(c:send("second\n"))
    assert.equals("echo second", c:receive("*l"))
    assert(c:send("bye\n"))
    assert.is_true(wire.closed(c))
    c:close()
    srv:stop()
  end)
end)

describe("HTTP over a unix socket", function()
  it("serves a unix listener; req.peer is { path }, the listener's (a unix client has no name)", function()
    local path = os.tmpname()
    os.remove(path)
    local srv = gsock.http.server("unix:" .. path, function(req)
      local peer = req.peer
      return 200, ("path=%q host=%s"):format(tostring(peer.path), tostring(peer.host))
    end):start()
    local c = assert(require("socket.unix").stream())
    c:settimeout(3)
    assert(c:connect(path))
    assert(c:send("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
    local r = wire.read(c)
    c:close()
    srv:stop()
    os.remove(path)
    assert.equals(200, r.status)
    assert.equals(("path=%q host=nil"):format(path), r.body)
  end)
end)

describe("HTTP limits: the defaults of SPEC §11", function()
  local srv
  before_each(function() srv = describe_server() end)
  after_each(function() srv:stop() end)

  local function status_of(bytes)
    return wire.once(srv, bytes, false, true).status
  end

  it("a request line up to max_request_line (8 KiB) is served, a longer one gets 414", function()
    assert.equals(200, status_of("GET /" .. ("a"):rep(8000) .. " HTTP/1.1\r\n\r\n"))
    assert.equals(414, status_of("GET /" .. ("a"):rep(8300) .. " HTTP/1.1\r\n\r\n"))
  end)

  it("100 header fields (max_headers) are served, 101 get 431; a header section past 64 KiB gets 431", function()
    local function fields(n)
      local t = {}
      for i = 1, n do t[i] = ("X-%d: %d\r\n"):format(i, i) end
      return table.concat(t)
    end
    assert.equals(200, status_of("GET / HTTP/1.1\r\n" .. fields(100) .. "\r\n"))
    assert.equals(431, status_of("GET / HTTP/1.1\r\n" .. fields(101) .. "\r\n"))
    assert.equals(200, status_of("GET / HTTP/1.1\r\nX: " .. ("b"):rep(60 * 1024) .. "\r\n\r\n"))
    assert.equals(431, status_of("GET / HTTP/1.1\r\nX: " .. ("b"):rep(66 * 1024) .. "\r\n\r\n"))
  end)

  it("a body of max_body (1 MiB) is read, one byte more gets 413", function()
    local mib = 1024 * 1024
    local r = wire.once(srv, ("POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n"):format(mib) .. ("z"):rep(mib), false, true)
    assert.equals(200, r.status)
    assert.equals(mib, #r.body)
    assert.equals(413, status_of(("POST /echo HTTP/1.1\r\nContent-Length: %d\r\n\r\n"):format(mib + 1)))
  end)
end)

describe("HTTP limits and errors", function()
  local srv
  before_each(function()
    srv = describe_server({ max_request_line = 64, max_header_size = 256, max_headers = 4, max_body = 16,
                            keepalive_requests = 3 })
  end)
  after_each(function() srv:stop() end)

  local function refused(bytes, status)
    local r = wire.once(srv, bytes, false, true)
    assert.equals(status, r.status)
    assert.equals("close", r.headers.connection)
    assert.is_true(r.closed_after)
  end

  it("414 for a long request line; 431 for a large header section and for too many fields", function()
    refused("GET /" .. ("a"):rep(100) .. " HTTP/1.1\r\n\r\n", 414)
    refused("GET / HTTP/1.1\r\nX: " .. ("b"):rep(300) .. "\r\n\r\n", 431)
    refused("GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n", 431)
  end)

  it("413 for a Content-Length or a chunked body past max_body", function()
    refused("POST /echo HTTP/1.1\r\nContent-Length: 17\r\n\r\n", 413)
    local r = wire.once(srv, "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" .. ("z"):rep(32) .. "\r\n0\r\n\r\n")
    assert.equals(200, r.status)   -- the handler never read the body
    assert.equals("close", r.headers.connection)
    r = wire.once(srv, "POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n" .. ("z"):rep(32) .. "\r\n0\r\n\r\n",
                  false, true)
    assert.equals(413, r.status)   -- req:body() found it too large and the handler sent nothing else
    assert.equals("close", r.headers.connection)
    assert.is_true(r.closed_after)
  end)

  it("gsock.stats().http_rejected counts the heads answered with an error status (400, 414), not the answered requests", function()
    local before = gsock.stats()
    assert.equals(200, wire.once(srv, "GET / HTTP/1.1\r\n\r\n").status)
    refused("GET / HTTP/1.1\r\nX : a\r\n\r\n", 400)
    refused("GET /" .. ("a"):rep(100) .. " HTTP/1.1\r\n\r\n", 414)
    local after = gsock.stats()
    assert.equals(before.http_rejected + 2, after.http_rejected)
    assert.equals(before.http_requests + 1, after.http_requests)
  end)

  it("400 for malformed heads and request-smuggling shapes", function()
    refused("GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400)
    refused("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400)
    refused("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400)
    refused("GET / HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 400)
    refused("GET / HTTP/1.1\r\nX : a\r\n\r\n", 400)
    refused("GET / HTTP/1.1\rX: a\r\n\r\n", 400)
    refused("GET  / HTTP/1.1\r\n\r\n", 400)
    refused("POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400)
  end)

  it("501 for an unknown transfer coding, 505 for another version", function()
    refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501)
    refused("GET / HTTP/2.0\r\n\r\n", 505)
    refused("GET / HTTP/1.2\r\n\r\n", 505)
  end)

  it("closes after keepalive_requests responses, saying so in the last", function()
    local c = wire.connect(srv)
    for i = 1, 3 do
      assert(c:send("GET / HTTP/1.1\r\n\r\n"))
      local r = wire.read(c)
      assert.equals(200, r.status)
      assert.equals(i == 3 and "close" or nil, r.headers.connection)
    end
    assert.is_true(wire.closed(c))
    c:close()
  end)

  it("serves other connections while a slow head waits for header_timeout (slowloris)", function()
    local slow_srv = describe_server({ header_timeout = 0.5 })
    local slow = wire.connect(slow_srv)
    assert(slow:send("GET / HTTP/1.1\r\nX-Slow: "))
    local t0 = gsock.now()
    for _ = 1, 5 do assert.equals(200, wire.once(slow_srv, "GET / HTTP/1.1\r\n\r\n").status) end
    assert.is_true(gsock.now() - t0 < 0.4)
    local r = wire.read(slow)
    assert.equals(408, r.status)
    assert.equals("close", r.headers.connection)
    slow:close()
    slow_srv:stop()
  end)
end)

describe("HTTP handler tables", function()
  it("checks the HTTP keys of a handler table like the others", function()
    local ok, err = pcall(gsock.server, "127.0.0.1:0",
      { protocol = "http", handle = function() end, max_bodyy = 1 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("unknown key 'max_bodyy'; did you mean 'max_body'?", 1, true))
    ok, err = pcall(gsock.server, "127.0.0.1:0", { protocol = "http", handle = function() end, header_timeout = -1 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("'header_timeout' must be a positive number of seconds", 1, true))
    ok, err = pcall(gsock.server, "127.0.0.1:0", { protocol = "gopher", handle = function() end })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("'protocol' must be \"http\"", 1, true))
    ok, err = pcall(gsock.server, "127.0.0.1:0", { handle = function() end, max_body = 1 })
    assert.is_false(ok)
    assert.truthy(tostring(err):find("needs protocol = \"http\"", 1, true))
  end)
end)
