import Daemon
import Foundation
import Metrics
import Wire

/// Starts the submitter and runs passes until SIGTERM.
nonisolated func runSubmitter() -> Never {
    let configuration = ServiceLifecycle.configure(component: "meter-submitter", usage: SubmitterConfiguration.usage) {
        (settings: inout Settings) throws(SettingsError) in try SubmitterConfiguration(settings: &settings)
    }
    let submitter = Submitter(configuration: configuration)
    let endpoint = ServiceLifecycle.starting { () throws(StartupFailure) in
        try MetricsEndpoint.serve(
            configuration.metrics, component: "meter-submitter", home: configuration.home, registry: submitterMetrics.registry)
    }
    let done = DispatchSemaphore(value: 0)
    Thread {
        submitter.run()
        done.signal()
    }.start()
    let ready =
        "reporting to \(configuration.marketplaceURL.absoluteString) as \(configuration.credentials), every \(configuration.interval) s"
    Systemd.notifyReady(status: ready)
    Log.info("ready: \(ready)")
    ServiceLifecycle.runUntilTerminated(stopping: "finishing the batch in flight") {
        endpoint?.stop()
        submitter.stop()
        // The batch in flight finishes (its outcomes are appended) unless it takes too long;
        // anything cut short is resent by the next start.
        _ = done.wait(timeout: .now() + 30)
    }
}
