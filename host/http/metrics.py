"""`/metrics`: Prometheus text exposition through prometheus-client's custom Collector API.

Nothing is counted twice: at scrape time the collector reads the coordinator's own counters
and state (one CoordinatorView.dashboard(): status, sync states, Master windows), the ledger's size and latest checkpoint, and the ledger timeline's decision counts.
The metric names are listed in docs/HTTP.md.
"""
import platform

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (CounterMetricFamily as Cn, GaugeMetricFamily as G,
                                   HistogramMetricFamily as Hg, InfoMetricFamily)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

import becomingone
from becomingone.devices.state import device_state
from shared.protocol import DECISION_NAMES, VERSION as PROTOCOL_VERSION

__all__ = ["CoordinatorCollector", "Metrics"]

P = "becomingone_"


class CoordinatorCollector:
    """prometheus-client collector that builds every metric at scrape time from one
    dashboard read of the coordinator's view."""
    def __init__(self, api):
        self.api = api

    def describe(self):
        return []          # described at collect time (the label sets depend on the devices)

    def collect(self):
        api = self.api
        st, sync, windows = api.ask(api.view.dashboard)

        def counter(name, doc, value):
            m = Cn(P + name, doc)
            m.add_metric([], float(value or 0))
            return m

        def gauge(name, doc, value):
            m = G(P + name, doc)
            m.add_metric([], float(value or 0))
            return m

        info = InfoMetricFamily(P + "build", "The coordinator's build: version, Python, protocol")
        info.add_metric([], {"version": becomingone.__version__, "python": platform.python_version(),
                             "protocol": str(PROTOCOL_VERSION), "cell": str(api.view.settings.becomingone.name)})
        yield info
        yield gauge("uptime_seconds", "Seconds since the coordinator started", st.get("uptime_s"))
        yield counter("frames_received", "Frames received on every link", st.get("frames_received"))
        yield counter("frames_accepted", "Frames admitted (decoded, authenticated, in sequence)",
                      st.get("frames_accepted"))
        yield counter("frames_sent", "Frames the host sent to devices", st.get("frames_sent"))
        rej = Cn(P + "frames_rejected", "Frames refused, by reason", labels=["reason"])
        for reason, n in sorted((st.get("frames_rejected") or {}).items()):
            rej.add_metric([reason], float(n))
        yield rej
        # a gauge: held frames of a handshake that expires unproven move to frames_rejected
        yield gauge("frames_awaiting_handshake", "Frames devices sent before their session "
                    "handshake completed (held, not rejections)",
                    st.get("frames_awaiting_handshake") or 0)
        yield counter("beats", "TELEMETRY beats integrated", st.get("beats"))
        yield gauge("devices_seen", "Devices with a current session", st.get("devices_seen"))
        yield gauge("devices_online", "Devices heard from within devices.session_timeout_s",
                    st.get("devices_online"))
        w = st.get("witness") or {}
        wit = Cn(P + "witness", "WITNESS records, by outcome", labels=["outcome"])
        for k in ("received", "committed", "acked", "duplicate", "rejected_pow", "observed"):
            wit.add_metric([k], float(w.get(k) or 0))
        yield wit
        yield gauge("witness_pending", "WITNESS records waiting for their ledger commit", w.get("pending"))
        h = st.get("health") or {}
        yield gauge("ingest_lag_seconds", "Age of the last receive batch when it was processed",
                    (h.get("ingest_lag_ms") or 0) / 1000.0)
        yield gauge("inbox_depth", "Receive batches queued for the processing thread", h.get("inbox_depth"))
        yield gauge("inbox_frames", "Frames queued for the processing thread", h.get("inbox_frames"))
        yield gauge("inbox_frames_limit", "Frames the link readers may queue before they shed "
                    "(overload): 0.35 s of the processing thread's throughput", h.get("inbox_frames_limit"))

        per = {name: G(P + "device_" + name, doc, labels=["device"]) for name, doc in (
            ("online", "1 when the device was heard from recently"),
            ("coherence", "The device's Emissary coherence C (last TELEMETRY, 0..1)"),
            ("threat", "Entropy-model threat (last TELEMETRY, 0..1)"),
            ("pid_error", "PID error (last TELEMETRY, -1..1)"),
            ("pid_output", "PID output (last TELEMETRY, 0..1)"),
            ("quarantined", "1 while the device is latched in QUARANTINE (until a CLEAR)"),
            ("sync_coherence", "Sync layer |T_sync|^2 (Master vs Emissary)"),
            ("sync_collapsed", "1 while the device is in a sync-layer collapse"),
            ("last_seen_age_seconds", "Seconds since the device was last heard from"))}
        cnt = {name: Cn(P + "device_" + name, doc, labels=["device"]) for name, doc in (
            ("frames", "Frames accepted from the device's current session"),
            ("frames_lost", "Sequence gaps of the device's current session (frames never received)"),
            ("frames_duplicate", "Duplicate frames of the current session (refused)"),
            ("witness", "WITNESS records of the current session"),
            ("samples_lost", "Samples the device's sampler lost since boot (HEARTBEAT: ring "
             "overruns and missed sample instants; 0 on a healthy device)"))}
        decision = G(P + "device_decision", "The device's effective decision, 1 for the current "
                     "one (QUARANTINE while latched, else the last beat's decision)",
                     labels=["device", "decision"])
        late = Hg(P + "device_lateness_seconds", "How late the device's beats started (every "
                  "accepted TELEMETRY beat of the current session)", labels=["device"])
        mw = G(P + "master_coherence", "C of the device's Master window", labels=["device", "window"])
        mf = G(P + "master_window_fill", "Fraction of the Master window's span, in device time, "
               "that it holds from a working sensor (0..1; C is evaluated from 0.9)",
               labels=["device", "window"])
        for key, s in sorted((st.get("sessions") or {}).items(), key=lambda kv: int(kv[0])):
            dev = str(key)
            x = device_state(s, sync=sync.get(int(key)), windows=windows.get(int(key)))
            per["online"].add_metric([dev], 1.0 if x["online"] else 0.0)
            if x["age_s"] is not None:
                per["last_seen_age_seconds"].add_metric([dev], x["age_s"])
            for name, field in (("frames", "frames"), ("frames_lost", "lost"),
                                ("frames_duplicate", "duplicates"), ("witness", "witness")):
                cnt[name].add_metric([dev], float(max(0, x[field] or 0)))
            if x.get("samples_lost") is not None:
                cnt["samples_lost"].add_metric([dev], float(x["samples_lost"]))
            if x["decision"] is not None:
                for name in ("coherence", "threat", "pid_error", "pid_output"):
                    per[name].add_metric([dev], float(x[name]))
                per["quarantined"].add_metric([dev], 1.0 if x["quarantined"] else 0.0)
                for name in DECISION_NAMES:
                    decision.add_metric([dev, name], 1.0 if x["decision"] == name else 0.0)
            h = x["lateness_histogram"]
            if h and h["count"]:
                late.add_metric([dev], [("%g" % b, float(c)) for b, c in
                                        zip(h["bounds_s"], h["counts"][:-1])]
                                + [("+Inf", float(h["counts"][-1]))], h["sum_s"])
            if x["sync"] is not None and x["sync"]["C_sync"] is not None:
                per["sync_coherence"].add_metric([dev], float(x["sync"]["C_sync"]))
                per["sync_collapsed"].add_metric([dev], 1.0 if x["sync"]["collapsed"] else 0.0)
            for w in x["windows"]:
                if w["C"] is not None:
                    mw.add_metric([dev, w["window"]], w["C"])
                if w["fill"] is not None:
                    mf.add_metric([dev, w["window"]], w["fill"])
        yield from per.values()
        yield from cnt.values()
        yield decision
        yield late
        yield mw
        yield mf
        integ = st.get("integration") or {}
        yield counter("sync_collapses", "Sync-layer collapse events", integ.get("collapses"))
        yield counter("sync_releases", "Sync-layer collapse ends", integ.get("releases"))
        dec = Cn(P + "ledger_decision_records", "Decision records read from the ledger (its last "
                 "20000 entries at server start, then every new one), by decision or event",
                 labels=["decision"])
        for k, n in sorted(api.hub.decision_counts().items()):
            dec.add_metric([str(k)], float(n))
        yield dec
        led = api.view.ledger
        yield gauge("ledger_entries", "Entries in the ledger", led.size if led is not None else 0)
        cp = api.hub.checkpoint()
        yield gauge("ledger_checkpoint_size", "Tree size of the latest signed checkpoint",
                    cp["size"] if cp else 0)
        mesh = st.get("mesh") or {}
        yield gauge("mesh_enabled", "1 when this coordinator runs the mesh", 1 if mesh and
                    mesh.get("enabled", True) else 0)
        view = mesh.get("members") or mesh.get("view") or mesh.get("peers")
        if isinstance(view, dict):
            peers = G(P + "mesh_peers", "Mesh members by SWIM state", labels=["state"])
            counts = {}
            for v in view.values():
                state = v[0] if isinstance(v, (list, tuple)) and v else v.get("state") \
                    if isinstance(v, dict) else v
                counts[str(state)] = counts.get(str(state), 0) + 1
            for k, n in sorted(counts.items()):
                peers.add_metric([k], float(n))
            yield peers
        tg = mesh.get("t_global")
        if isinstance(tg, (list, tuple)) and len(tg) == 2:
            yield gauge("mesh_t_global_magnitude", "|T_global| of the mesh", abs(complex(*tg)))
        req = Cn(P + "http_requests", "HTTP requests answered, by status", labels=["code"])
        for code, n in sorted(api.server.stats()["requests"].items()):
            req.add_metric([code], float(n))
        yield req


class Metrics:
    """The /metrics endpoint of one Api: owns its collector registry (made on the first
    scrape); render() -> (body bytes, content type)."""

    def __init__(self, api):
        self.api = api
        self._registry = None

    def render(self):
        if self._registry is None:
            reg = CollectorRegistry(auto_describe=False)
            reg.register(CoordinatorCollector(self.api))
            self._registry = reg
        return generate_latest(self._registry), CONTENT_TYPE_LATEST
