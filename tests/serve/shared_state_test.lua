-- Many instances, one state (SPEC §9: "shared state lives in Redis"): two gsockd
-- processes serving examples/shared_counter.lua count hits in one real redis-server
-- through the unchanged redis-lua client; each answers while the other serves, and a
-- Redis that goes away is a 503, not a dead server.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")
local root = proc.sh("cd " .. proc.quote(here .. "../..") .. " && pwd"):gsub("\n$", "") .. "/"
local example = root .. "examples/shared_counter.lua"

local redis_pids = {}
after_each(function()
  for _, pid in ipairs(redis_pids) do proc.sh("kill -9 " .. pid .. " 2>/dev/null") end
  redis_pids = {}
  proc.cleanup()
end)

--- A redis-server on `port` (default: a free one), killed after the test; returns its
--- port and pid once it listens.
local function start_redis(port)
  local exe = proc.sh("command -v redis-server"):gsub("\n$", "")
  assert(exe ~= "", "redis-server is not installed: install Debian's redis-server (scripts/setup does)")
  port = port or proc.free_port()
  local dir = proc.tmpdir()
  local pid = tonumber((proc.sh(("%s --port %d --bind 127.0.0.1 --save '' --appendonly no --dir %s "
    .. ">%s/redis.log 2>&1 & echo $!"):format(proc.quote(exe), port, proc.quote(dir), proc.quote(dir)))))
  assert(pid, "could not start redis-server")
  redis_pids[#redis_pids + 1] = pid
  for _ = 1, 250 do
    local c = proc.connect("127.0.0.1:" .. port, 0.2)
    if c then
      c:close()
      return port, pid
    end
    gsock.sleep(0.02)
  end
  error("redis-server did not listen on " .. port)
end

local function instance(redis_port)
  local p = proc.start({ "run", example, "--listen", "127.0.0.1:0" },
                       { env = { REDIS_HOST = "127.0.0.1", REDIS_PORT = tostring(redis_port) } })
  return p, p:listening()[1].address
end

describe("examples/shared_counter.lua: two instances, one Redis", function()
  it("both count into the same Redis key, in turn and concurrently", function()
    local port = start_redis()
    local a, a_address = instance(port)
    local b, b_address = instance(port)
    local seen = {}
    for i = 1, 10 do
      local status, body = proc.http_get(i % 2 == 1 and a_address or b_address, "/hit", 3)
      assert.equals(200, status, tostring(body) .. "\n" .. a:describe() .. b:describe())
      seen[#seen + 1] = tonumber(body)
    end
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, seen)
    -- 40 requests at once over both instances: every count from 11 to 50 exactly once.
    local counts, fibers = {}, {}
    for i = 1, 40 do
      fibers[i] = gsock.spawn(function()
        local status, body = proc.http_get(i % 2 == 1 and a_address or b_address, "/hit", 5)
        assert.equals(200, status)
        counts[#counts + 1] = tonumber(body)
      end)
    end
    for _, f in ipairs(fibers) do f:get(10) end
    table.sort(counts)
    for i = 1, 40 do assert.equals(10 + i, counts[i]) end
  end)

  it("answers 503 naming Redis while it is gone, and counts again when it is back", function()
    local port, pid = start_redis()
    local a, address = instance(port)
    assert.equals(200, (proc.http_get(address, "/hit", 3)))
    proc.sh("kill -9 " .. pid)
    gsock.sleep(0.2)
    local status, body = proc.http_get(address, "/hit", 3)
    assert.equals(503, status, tostring(body))
    assert.truthy(body:find("^redis: "), body)
    assert.equals(404, (proc.http_get(address, "/other", 3)))   -- and it serves on
    start_redis(port)   -- Redis back on its port: the next request connects anew
    local ok
    for _ = 1, 100 do
      status, body = proc.http_get(address, "/hit", 3)
      if status == 200 then ok = true break end
      gsock.sleep(0.05)
    end
    assert.is_true(ok, tostring(body) .. "\n" .. a:describe())
    assert.equals("1", body:match("%d+"))   -- a fresh Redis counts from 1
  end)
end)
