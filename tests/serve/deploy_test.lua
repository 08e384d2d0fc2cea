-- deploy/gsockd.service and deploy/gsockd.socket (SPEC §9): parsed as systemd reads them
-- (the keys a notify service with reload, drain, watchdog and hardening needs), verified
-- with `systemd-analyze verify` where it runs, and checked against config/gsockd.toml:
-- every socket is a listen address of a bundled service (or, named, one service's), and
-- TimeoutStopSec leaves the drain its shutdown_timeout.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")

after_each(proc.cleanup)

local root = here .. "../../"
local service_file, socket_file = root .. "deploy/gsockd.service", root .. "deploy/gsockd.socket"

--- A unit file as { [section] = { [key] = { value, ... } } } (a key may repeat), or nil
--- and why. Comments (# and ;), blank lines and backslash continuations as systemd has them.
local function parse_unit(path)
  local text = proc.slurp(path)
  if not text then return nil, "cannot read " .. path end
  local sections, current = {}, nil
  local n, pending_line = 0, nil
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if pending_line then line, pending_line = pending_line .. " " .. line, nil end
    if line:match("\\$") and not line:match("^%s*[#;]") then
      pending_line = line:sub(1, -2)
    elseif not line:match("^%s*$") and not line:match("^%s*[#;]") then
      local name = line:match("^%[([^%]]+)%]%s*$")
      if name then
        sections[name] = sections[name] or {}
        current = sections[name]
      else
        local key, value = line:match("^%s*([%w_]+)%s*=%s*(.-)%s*$")
        if not key then return nil, ("%s:%d: not KEY=VALUE: %s"):format(path, n, line) end
        if not current then return nil, ("%s:%d: %s outside a section"):format(path, n, key) end
        current[key] = current[key] or {}
        table.insert(current[key], value)
      end
    end
  end
  return sections
end

local function one(unit, section, key)
  local values = (unit[section] or {})[key]
  return values and values[#values]
end

--- systemd's time span ("15", "15s", "1min 30s", "500ms") in seconds.
local function seconds(text)
  if not text then return nil end
  local total, units = 0, { [""] = 1, s = 1, sec = 1, ms = 0.001, m = 60, min = 60, h = 3600 }
  for number, unit in text:gmatch("(%d+%.?%d*)%s*(%a*)") do
    if not units[unit] then return nil end
    total = total + tonumber(number) * units[unit]
  end
  return total
end

--- config/gsockd.toml read by python3's tomllib (a real TOML parser): shutdown_timeout and
--- { [service] = { address, ... } }; nil when python3 has no tomllib.
local function bundled_config()
  local out = proc.sh("python3 -c " .. proc.quote([==[
import sys, tomllib
c = tomllib.load(open(sys.argv[1], "rb"))
print("shutdown_timeout", c.get("shutdown_timeout", 10))
for name, s in c["services"].items():
    listen = s["listen"] if isinstance(s["listen"], list) else [s["listen"]]
    for a in listen: print("service", name, a)
]==]) .. " " .. proc.quote(root .. "config/gsockd.toml"))
  local timeout = tonumber(out:match("shutdown_timeout (%S+)"))
  if not timeout then return nil end
  local services = {}
  for name, address in out:gmatch("service (%S+) (%S+)") do
    services[name] = services[name] or {}
    table.insert(services[name], address)
  end
  return { shutdown_timeout = timeout, services = services }
end

--- A ListenStream= value as a config address: "7000" is all interfaces (`:7000`), a
--- path is `unix:PATH`.
local function as_config_address(value)
  if value:match("^/") then return "unix:" .. value end
  if value:match("^%d+$") then return ":" .. value end
  return value
end

describe("deploy/ systemd units", function()
  it("gsockd.service: Type=notify, serve the /etc config, reload with SIGHUP, SIGTERM to drain, watchdog, restart on failure, hardening", function()
    local unit = assert(parse_unit(service_file))
    assert.equals("notify", one(unit, "Service", "Type"))
    assert.equals("main", one(unit, "Service", "NotifyAccess"))
    assert.equals("/usr/local/bin/gsockd serve /etc/gsockd/gsockd.toml", one(unit, "Service", "ExecStart"))
    assert.equals("/bin/kill -HUP $MAINPID", one(unit, "Service", "ExecReload"))
    assert.equals("SIGTERM", one(unit, "Service", "KillSignal"))
    -- the supervisor passes SIGTERM on to the workers: they are not signalled twice
    assert.equals("mixed", one(unit, "Service", "KillMode"))
    assert.equals("on-failure", one(unit, "Service", "Restart"))
    assert.truthy(seconds(one(unit, "Service", "WatchdogSec")) > 0)
    assert.equals("yes", one(unit, "Service", "NoNewPrivileges"))
    assert.equals("strict", one(unit, "Service", "ProtectSystem"))
    assert.equals("multi-user.target", one(unit, "Install", "WantedBy"))
    assert.matches("gsockd%.socket", one(unit, "Unit", "Wants"))
    assert.matches("gsockd%.socket", one(unit, "Unit", "After"))
  end)

  it("TimeoutStopSec leaves the drain config/gsockd.toml's shutdown_timeout and the supervisor's grace second", function()
    local config = bundled_config()
    if not config then pending("python3 with tomllib is needed to read config/gsockd.toml") return end
    local unit = assert(parse_unit(service_file))
    local stop = seconds(one(unit, "Service", "TimeoutStopSec"))
    assert.truthy(stop, "no TimeoutStopSec")
    assert.truthy(stop >= config.shutdown_timeout + 1,
      ("TimeoutStopSec=%s but shutdown_timeout = %s"):format(stop, config.shutdown_timeout))
  end)

  it("gsockd.socket: every ListenStream is a listen address of config/gsockd.toml's services and every service address has one; a FileDescriptorName names a service", function()
    local config = bundled_config()
    if not config then pending("python3 with tomllib is needed to read config/gsockd.toml") return end
    local unit = assert(parse_unit(socket_file))
    local streams = (unit.Socket or {}).ListenStream or {}
    assert.truthy(#streams > 0, "no ListenStream")
    assert.equals("gsockd.service", one(unit, "Socket", "Service"))
    assert.equals("sockets.target", one(unit, "Install", "WantedBy"))
    local owner = {}
    for name, addresses in pairs(config.services) do
      for _, a in ipairs(addresses) do owner[a] = name end
    end
    local name = one(unit, "Socket", "FileDescriptorName")
    local covered = {}
    for _, value in ipairs(streams) do
      local address = as_config_address(value)
      local service = owner[address]
      assert.truthy(service, ("ListenStream=%s is no service's listen address in config/gsockd.toml"):format(value))
      -- a name applies to every socket of the unit: they must all be that service's
      if name then assert.equals(name, service, "FileDescriptorName names the service of each socket") end
      covered[address] = true
    end
    if name then
      assert.truthy(config.services[name], "FileDescriptorName=" .. name .. " is no service of config/gsockd.toml")
    end
    for address, service in pairs(owner) do
      if not name or name == service then
        assert.truthy(covered[address], ("service %s's %s has no ListenStream"):format(service, address))
      end
    end
  end)

  --- Runs systemd-analyze verify on copies of `files` (name = text) in a temp dir, the
  --- ExecStart binary being this test's gsockd (verify wants it executable); returns its
  --- status and output.
  local function verify(files)
    local dir = proc.tmpdir()
    local names = {}
    for name, text in pairs(files) do
      proc.write(dir, name, (text:gsub("/usr/local/bin/gsockd", (proc.bin():gsub("%%", "%%%%")))))
      names[#names + 1] = proc.quote(dir .. "/" .. name)
    end
    table.sort(names)
    local out = proc.sh("cd " .. proc.quote(dir) .. " && SYSTEMD_LOG_COLOR=0 systemd-analyze verify "
      .. table.concat(names, " ") .. " 2>&1; echo status=$?")
    local status = tonumber(out:match("status=(%d+)%s*$"))
    return status, (out:gsub("status=%d+%s*$", ""))
  end

  local function have_analyze()
    if not os.execute("command -v systemd-analyze >/dev/null 2>&1") then
      return false, "systemd-analyze is not installed (Debian's systemd package)"
    end
    -- in some containers it cannot run at all: a unit known to be good tells
    local status, out = verify({ ["probe.service"] = "[Service]\nType=oneshot\nExecStart=/bin/true\n" })
    if status ~= 0 or out:match("%S") then return false, "systemd-analyze verify does not run here: " .. out end
    return true
  end

  it("systemd-analyze verify accepts both units without a warning", function()
    local ok, why = have_analyze()
    if not ok then pending(why) return end
    local status, out = verify({ ["gsockd.service"] = assert(proc.slurp(service_file)),
                                 ["gsockd.socket"] = assert(proc.slurp(socket_file)) })
    assert.equals(0, status, out)
    assert.equals("", out)
  end)

  it("systemd-analyze verify reports a unit with a misspelt key (so the check above can fail)", function()
    local ok, why = have_analyze()
    if not ok then pending(why) return end
    local text = assert(proc.slurp(service_file)):gsub("KillSignal=", "KilSignal=")
    local _, out = verify({ ["gsockd.service"] = text, ["gsockd.socket"] = assert(proc.slurp(socket_file)) })
    assert.matches("Unknown key 'KilSignal'", out)
  end)
end)
