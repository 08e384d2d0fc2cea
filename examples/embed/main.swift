// Embedding gsockd: a Swift program creates a runtime, gives Lua a module of Swift
// functions, and runs Lua code whose fibers use it concurrently.
import GSock

let runtime = try Runtime()

var served = 0
runtime.register(module: "host", functions: [
    "greet": { args in
        served += 1
        guard case .string(let name)? = args.first else { return [.string("hello, stranger")] }
        return [.string("hello, \(name)")]
    },
])

try runtime.runMain(source: """
    local gsock = require "gsock"
    local host = require "host"
    local fibers = {}
    for i, name in ipairs { "ada", "grace", "edsger" } do
      fibers[i] = gsock.spawn(function()
        gsock.sleep(0.01 * i)
        return host.greet(name)
      end)
    end
    for _, f in ipairs(fibers) do print(f:get()) end
    """, name: "=embed-example")

print("Swift served \(served) greetings")
