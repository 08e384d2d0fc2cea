-- Waiting on file descriptors (SPEC §3): gevent.socket's wait_read, wait_write,
-- wait_readwrite, wait and cancel_wait, and reusable watchers. All are the Swift
-- core's; this table is where gsock gets them.
local core = ...

return {
  wait_read = core.wait_read,
  wait_write = core.wait_write,
  wait_readwrite = core.wait_readwrite,
  io = core.io,
  wait = core.wait,
  cancel_wait = core.cancel_wait,
}
