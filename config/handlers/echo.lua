-- Echo: sends every line a client sends straight back, until the client closes.
-- Try it: `gsockd serve`, then `nc 127.0.0.1 7000`.
return {
  name = "echo",

  handle = function(sock)
    while true do
      local line, err, partial = sock:receive("*l")
      if not line then
        -- The client closed (or the connection failed): echo a last unterminated line.
        if err == "closed" and partial and partial ~= "" then sock:send(partial) end
        return
      end
      if not sock:send(line .. "\n") then return end
    end
  end,
}
