-- Echo, for the server benchmarks (issue 6): sends every byte a client sends straight
-- back, until the client closes. The same job as libev_server.c's echo mode.
--
--   gsockd run benchmarks/servers/echo.lua --listen 127.0.0.1:7000
--
-- By default it reads with receiveany(16384) (whatever has arrived, as the C server's
-- read and gevent's recv do). With GSOCK_BENCH_ECHO=line in the environment it reads
-- with receive("*l") and sends the line back with its "\n", as config/handlers/echo.lua
-- does: the benchmark's messages are 63 bytes and a newline, so both modes serve it.
local line_mode = os.getenv("GSOCK_BENCH_ECHO") == "line"

local function echo_bytes(sock)
  while true do
    local data = sock:receiveany(16384)
    if not data then return end
    if not sock:send(data) then return end
  end
end

local function echo_lines(sock)
  while true do
    local line = sock:receive("*l")
    if not line then return end
    if not sock:send(line .. "\n") then return end
  end
end

return {
  name = "echo",
  handle = line_mode and echo_lines or echo_bytes,
}
