// The figures behind the admin listener's /metrics and /healthz (SPEC §9). Per service, a
// ServiceMetrics counts what its connections do, incremented where the runtime's own
// gsock.stats() counters are (a listener's sockets share their service's object, so an
// accepted connection finds it without a lookup); per runtime, RuntimeMetrics holds the
// loop-lag histogram and when a fiber last blocked the loop past max_run_time.
// gsock/metrics.lua reads them at each scrape and writes the exposition text.
import CLibev
import CShims
import Glibc

/// CLOCK_MONOTONIC in seconds (a vDSO call: no syscall).
func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Fixed-bucket histogram: cumulative counts are made when it is read.
struct Histogram {
    let bounds: [Double]
    private(set) var counts: [Int]
    private(set) var sum = 0.0
    private(set) var count = 0

    init(bounds: [Double]) {
        self.bounds = bounds
        counts = Array(repeating: 0, count: bounds.count)
    }

    mutating func observe(_ value: Double) {
        sum += value
        count += 1
        for i in bounds.indices where value <= bounds[i] {
            counts[i] += 1
            return
        }
    }

    /// Prometheus's default buckets, for request durations.
    static let requestBounds = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    /// Loop lag: from a millisecond to a stalled loop.
    static let lagBounds = [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5]

    var luaValue: LuaValue {
        var cumulative = 0
        return .table([
            "bounds": .array(bounds.map { .number($0) }),
            "counts": .array(counts.map { cumulative += $0; return .integer(cumulative) }),
            "sum": .number(sum), "count": .integer(count),
        ])
    }
}

/// What one service's connections did (the `service` label of /metrics).
final class ServiceMetrics {
    let name: String
    /// Set by the server: TLS and HTTP families are written for services that speak them.
    var tls = false
    var http = false
    @exclusivity(unchecked) var accepted = 0
    @exclusivity(unchecked) var connections = 0
    @exclusivity(unchecked) var bytesIn = 0
    @exclusivity(unchecked) var bytesOut = 0
    @exclusivity(unchecked) var handlerErrors = 0
    @exclusivity(unchecked) var tlsSucceeded = 0
    @exclusivity(unchecked) var tlsFailed = 0
    /// HTTP responses as (method index << 16 | status, count); a service answers few
    /// distinct pairs, so a short array searched from its last hit beats hashing.
    @exclusivity(unchecked) private(set) var responses: [(key: Int, count: Int)] = []
    @exclusivity(unchecked) private var lastResponse = 0
    @exclusivity(unchecked) private(set) var durations = Histogram(bounds: Histogram.requestBounds)

    static let methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "OTHER"]
    private static let methodNames: [StaticString] = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS",
                                                      "CONNECT", "TRACE"]

    init(name: String) { self.name = name }

    /// The index in `methods` of the request method at `p` (`n` bytes); once per request.
    static func methodIndex(_ p: UnsafePointer<CChar>, _ n: Int) -> Int {
        if n == 3 && p[0] == 0x47 && p[1] == 0x45 && p[2] == 0x54 { return 0 }  // GET
        for i in methodNames.indices where methodNames[i].utf8CodeUnitCount == n {
            if memcmp(methodNames[i].utf8Start, p, n) == 0 { return i }
        }
        return methods.count - 1
    }

    func countResponse(method: Int, status: Int, seconds: Double) {
        let key = method << 16 | status
        if lastResponse < responses.count && responses[lastResponse].key == key {
            responses[lastResponse].count += 1
        } else if let i = responses.firstIndex(where: { $0.key == key }) {
            responses[i].count += 1
            lastResponse = i
        } else {
            responses.append((key, 1))
            lastResponse = responses.count - 1
        }
        durations.observe(seconds)
    }

    var luaValue: LuaValue {
        var fields: [String: LuaValue] = [
            "name": .string(name), "accepted": .integer(accepted), "connections": .integer(connections),
            "bytes_in": .integer(bytesIn), "bytes_out": .integer(bytesOut), "errors": .integer(handlerErrors),
        ]
        if tls || tlsSucceeded + tlsFailed > 0 {
            fields["tls"] = .table(["ok": .integer(tlsSucceeded), "failed": .integer(tlsFailed)])
        }
        if http {
            fields["http"] = .array(responses.sorted { $0.key < $1.key }.map { r in
                .table(["method": .string(ServiceMetrics.methods[r.key >> 16]), "status": .integer(r.key & 0xFFFF),
                        "count": .integer(r.count)])
            })
            fields["duration"] = durations.luaValue
        }
        return .table(fields)
    }
}

/// A runtime's figures that belong to no service.
final class RuntimeMetrics {
    /// By service name: a server started again under the same name (a restart in a test,
    /// a reload) goes on counting in the same object.
    var services: [String: ServiceMetrics] = [:]
    /// gs_state.runaways as last seen after a resume, and when that run ended.
    var runawaysSeen: UInt = 0
    var lastRunawayEnded = -Double.infinity
    var loopLag = Histogram(bounds: Histogram.lagBounds)
    /// Whether services count their figures: only once something reads them (an admin
    /// listener, or a supervisor's channel), so that a process without one pays nothing.
    var collecting = false
    var lagTimer: UnsafeMutablePointer<ev_timer>?
    var lagDue = 0.0
    static let lagInterval = 0.5

    func service(_ name: String) -> ServiceMetrics {
        if let m = services[name] { return m }
        let m = ServiceMetrics(name: name)
        services[name] = m
        return m
    }
}

extension Runtime {
    /// Called after a resume whose run the watchdog found past max_run_time.
    func runawayRunEnded() {
        metrics.runawaysSeen = state.pointee.runaways
        metrics.lastRunawayEnded = gs_coarse_now()
    }

    /// Whether the loop turns: false while no fiber has blocked it past max_run_time in
    /// the last `grace` seconds. (While one blocks it, nothing on the loop can answer; a
    /// probe made then is answered when the loop comes back, with this.)
    func loopIsHealthy(grace: Double) -> Bool {
        gs_coarse_now() - metrics.lastRunawayEnded >= grace
    }

    /// Starts collecting: services started from now on count their figures, and the loop's
    /// lag is measured with a timer due every half second (once).
    func startCollecting() {
        metrics.collecting = true
        guard metrics.lagTimer == nil else { return }
        let t = UnsafeMutablePointer<ev_timer>.allocate(capacity: 1)
        gs_timer_init(t, lagTimerFired, 0)
        t.pointee.data = Unmanaged.passUnretained(self).toOpaque()
        t.pointee.repeat = RuntimeMetrics.lagInterval
        metrics.lagTimer = t
        metrics.lagDue = ev_now(loop) + RuntimeMetrics.lagInterval
        ev_timer_again(loop, t)
        ev_unref(loop)  // sampling alone does not keep the loop running
    }

    func stopLagSampler() {
        guard let t = metrics.lagTimer else { return }
        ev_ref(loop)
        ev_timer_stop(loop, t)
        t.deallocate()
        metrics.lagTimer = nil
    }

    fileprivate func lagSampled() {
        ev_now_update(loop)
        let now = ev_now(loop)
        metrics.loopLag.observe(max(0, now - metrics.lagDue))
        metrics.lagDue = now + RuntimeMetrics.lagInterval
    }
}

private func lagTimerFired(_ loop: OpaquePointer?, _ w: UnsafeMutablePointer<ev_timer>?, _ revents: Int32) {
    Unmanaged<Runtime>.fromOpaque(w!.pointee.data).takeUnretainedValue().lagSampled()
}
