-- deploy/kubernetes.yaml (SPEC §9): parsed with python3's yaml, its ports and timings
-- checked against deploy/gsockd.toml (which `gsockd check` accepts): the probes ask the
-- admin listener's port, the container declares every service's port, the Service
-- targets them, and terminationGracePeriodSeconds covers drain_delay + shutdown_timeout.
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "tests/serve/"
local proc = dofile(here .. "support/proc.lua")
local root = proc.sh("cd " .. proc.quote(here .. "../..") .. " && pwd"):gsub("\n$", "") .. "/"

after_each(proc.cleanup)

--- Runs python3 on `code` with the manifest and the config's path; returns its output lines.
local function python(code)
  local dir = proc.tmpdir()
  local script = proc.write(dir, "check.py", code)
  local out = proc.sh(("python3 %s %s 2>&1; echo \"rc=$?\""):format(proc.quote(script),
                                                                   proc.quote(root .. "deploy/kubernetes.yaml")))
  return out
end

describe("deploy/kubernetes.yaml", function()
  it("parses, and its probes, ports and grace period match deploy/gsockd.toml", function()
    local config = proc.slurp(root .. "deploy/gsockd.toml")
    local admin_port = assert(config:match('\nadmin%s*=%s*"[^"]-:(%d+)"'), "no admin in deploy/gsockd.toml")
    local drain = assert(tonumber(config:match("\ndrain_delay%s*=%s*([%d.]+)")))
    local shutdown = assert(tonumber(config:match("\nshutdown_timeout%s*=%s*([%d.]+)")))
    local ports = {}
    for port in config:gmatch('\nlisten%s*=%s*"[^"]-:(%d+)"') do ports[#ports + 1] = port end
    assert.equals(2, #ports)
    local out = python([[
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
kinds = {d["kind"]: d for d in docs}
dep, svc = kinds["Deployment"], kinds["Service"]
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
named = {p["name"]: p["containerPort"] for p in c["ports"]}
def port(p): return named[p] if isinstance(p, str) else p
print("grace", pod["terminationGracePeriodSeconds"])
print("liveness", c["livenessProbe"]["httpGet"]["path"], port(c["livenessProbe"]["httpGet"]["port"]))
print("readiness", c["readinessProbe"]["httpGet"]["path"], port(c["readinessProbe"]["httpGet"]["port"]))
print("containerports", " ".join(str(v) for v in sorted(named.values())))
print("service", " ".join(str(port(p["targetPort"])) for p in svc["spec"]["ports"]))
print("selector", svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"] == dep["spec"]["template"]["metadata"]["labels"])
print("args", " ".join(c["args"]))
]])
    assert.matches("rc=0%s*$", out)
    local grace = tonumber(out:match("grace (%d+)"))
    assert.is_true(grace >= drain + shutdown, ("terminationGracePeriodSeconds %d < drain_delay %g + shutdown_timeout %g")
      :format(grace, drain, shutdown))
    assert.equals("/healthz " .. admin_port, out:match("liveness (%S+ %d+)"))
    assert.equals("/readyz " .. admin_port, out:match("readiness (%S+ %d+)"))
    local declared = {}
    for p in out:match("containerports ([%d ]+)"):gmatch("%d+") do declared[p] = true end
    for _, p in ipairs(ports) do assert.is_true(declared[p], "the container does not declare port " .. p) end
    assert.is_true(declared[admin_port])
    local targeted = {}
    for p in out:match("service ([%d ]+)"):gmatch("%d+") do targeted[p] = true end
    for _, p in ipairs(ports) do assert.is_true(targeted[p], "the Service does not target port " .. p) end
    assert.equals("True", out:match("selector (%a+)"))
    assert.equals("serve /opt/gsockd/deploy/gsockd.toml", out:match("args ([^\n]+)"))
  end)

  it("deploy/gsockd.toml passes gsockd check", function()
    local p = proc.start({ "check", root .. "deploy/gsockd.toml" })
    assert.equals(0, p:wait_exit(10), p:describe())
  end)
end)
