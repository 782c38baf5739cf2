// TobyTCP server statistics exported to Prometheus: swift-metrics
// bootstrapped with swift-prometheus, a TobyMetricsReporter, one echo.
import Metrics
import Prometheus
import TobyTCP
import TobyTCPMetrics

let registry = PrometheusCollectorRegistry()
MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))

let server = try TobyServer.serve(host: "127.0.0.1", port: 0) { connection in
    for try await batch in connection.batches {
        try await connection.send(contentsOf: batch)
    }
}
let reporter = TobyMetricsReporter(server: server)  // MetricsSystem.factory
reporter.start(every: .seconds(1))  // what a service does; here one report below suffices

let messenger = try TobyMessenger.connect(host: "127.0.0.1", port: server.port)
let replies = try messenger.start()
try messenger.send("toby is a good dog")
_ = try replies.receive()
try messenger.close()
_ = try replies.receive()  // the server's end of stream: the connection is over

reporter.report()
reporter.stop()
print(registry.emitToString(), terminator: "")  // what a /metrics endpoint would serve
server.close(gracePeriod: .zero)
