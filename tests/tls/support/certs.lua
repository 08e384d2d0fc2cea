-- Test certificates for the TLS tests, made with the `openssl` command in a fresh
-- directory under /tmp (never in the checkout). Plain Lua (io/os only), so the LuaSec
-- oracle (support/luasec_oracle.lua, plain lua5.4) uses it too.
--
--   local certs = dofile(here .. "support/certs.lua")
--   local c = certs.make()        -- in setup(); c.dir, c.ca, c.localhost.cert, ...
--   certs.remove(c)               -- in teardown()
--
-- Every key is EC prime256v1 (fast). What make() returns (paths):
--   ca               the root CA: { cert, key }
--   inter            an intermediate CA signed by ca
--   localhost        leaf for DNS:localhost + IP:127.0.0.1, signed by ca
--   chained          leaf for DNS:localhost + IP:127.0.0.1, signed by inter; chain = leaf + inter
--   self_signed      self-signed leaf for DNS:localhost + IP:127.0.0.1
--   wrong            leaf for DNS:wrong.example (CN wrong.example), signed by ca
--   expired          leaf for DNS:localhost + IP:127.0.0.1, signed by ca, valid 2020-01-01 .. 2020-12-31
--   client           client certificate (CN gsockd-test-client, clientAuth), signed by ca;
--                    client.encrypted_key: its key encrypted with the password "secret"
--   missing          a path that does not exist
--   garbage          a file that exists but holds no certificate or key
-- (Tests run as root here, so a mode-000 file would still be readable: `garbage` and
-- `missing` stand for the files that cannot be loaded.)
local M = {}

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = q

local function run(cmd)
  local p = assert(io.popen("(" .. cmd .. ") 2>&1; echo \"RC=$?\"", "r"))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("RC=(%d+)%s*$"))
  if rc ~= 0 then error("certs: command failed (" .. tostring(rc) .. "): " .. cmd .. "\n" .. out, 2) end
  return out
end

local function write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
M.slurp = slurp

function M.available()
  local p = io.popen("command -v openssl 2>/dev/null")
  local out = p and p:read("a") or ""
  if p then p:close() end
  return out ~= ""
end

local EXT = [[
[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = @server_names
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid

[server_names]
DNS.1 = localhost
IP.1 = 127.0.0.1

[wrong]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:wrong.example

[client]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
]]

-- `openssl ca` for the expired leaf: OpenSSL 3.0's `x509 -req` cannot set a past
-- notBefore, `ca -startdate/-enddate` can.
local CA_CONF = [[
[ca]
default_ca = test_ca
[test_ca]
dir = %s
database = $dir/index.txt
new_certs_dir = $dir/newcerts
serial = $dir/serial
certificate = $dir/ca.pem
private_key = $dir/ca.key
default_md = sha256
policy = anything
copy_extensions = none
unique_subject = no
[anything]
commonName = supplied
]]

function M.make()
  local base = os.tmpname()
  os.remove(base)
  local dir = base .. "-gsockd-tls"
  run("mkdir -p " .. q(dir .. "/newcerts"))
  local c = { dir = dir }
  local ext = write(dir .. "/ext.cnf", EXT)
  local function key(name)
    local path = dir .. "/" .. name .. ".key"
    run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out " .. q(path))
    return path
  end
  local function csr(name, cn)
    local k = key(name)
    local path = dir .. "/" .. name .. ".csr"
    run(("openssl req -new -key %s -subj %s -out %s"):format(q(k), q("/CN=" .. cn), q(path)))
    return k, path
  end
  local function sign(name, cn, issuer, section)
    local k, r = csr(name, cn)
    local cert = dir .. "/" .. name .. ".pem"
    run(("openssl x509 -req -in %s -CA %s -CAkey %s -CAcreateserial -days 30 -sha256 -extfile %s -extensions %s -out %s")
      :format(q(r), q(issuer.cert), q(issuer.key), q(ext), section, q(cert)))
    return { cert = cert, key = k, cn = cn }
  end

  local cakey = key("ca")
  c.ca = { cert = dir .. "/ca.pem", key = cakey, cn = "gsockd test CA" }
  run(("openssl req -x509 -new -key %s -subj %s -days 30 -sha256 -config %s -extensions ca -out %s")
    :format(q(cakey), q("/CN=gsockd test CA"), q(ext), q(c.ca.cert)))
  c.inter = sign("inter", "gsockd test intermediate", c.ca, "ca")
  c.localhost = sign("localhost", "localhost", c.ca, "server")
  c.chained = sign("chained", "localhost", c.inter, "server")
  c.chained.chain = write(dir .. "/chained-chain.pem", slurp(c.chained.cert) .. slurp(c.inter.cert))
  c.wrong = sign("wrong", "wrong.example", c.ca, "wrong")
  c.client = sign("client", "gsockd-test-client", c.ca, "client")
  c.client.encrypted_key = dir .. "/client-encrypted.key"
  run(("openssl pkey -in %s -aes256 -passout pass:secret -out %s"):format(q(c.client.key), q(c.client.encrypted_key)))

  local selfkey = key("self")
  c.self_signed = { cert = dir .. "/self.pem", key = selfkey, cn = "localhost" }
  run(("openssl req -x509 -new -key %s -subj /CN=localhost -days 30 -sha256 -config %s -extensions server -out %s")
    :format(q(selfkey), q(ext), q(c.self_signed.cert)))

  local ek, er = csr("expired", "localhost")
  write(dir .. "/index.txt", "")
  write(dir .. "/serial", "1000\n")
  local conf = write(dir .. "/ca.cnf", CA_CONF:format(dir))
  c.expired = { cert = dir .. "/expired.pem", key = ek, cn = "localhost" }
  run(("openssl ca -batch -config %s -in %s -startdate 20200101000000Z -enddate 20201231000000Z -extfile %s -extensions server -notext -out %s")
    :format(q(conf), q(er), q(ext), q(c.expired.cert)))

  c.missing = dir .. "/no-such-file.pem"
  c.garbage = write(dir .. "/garbage.pem", "this is not a PEM file\n")
  return c
end

--- Removes the directory make() created.
function M.remove(c)
  if c and c.dir and c.dir:match("^/tmp/.+%-gsockd%-tls$") then
    os.execute("rm -rf " .. q(c.dir))
  end
end

return M
