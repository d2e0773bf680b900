"""`becomingone status [--data DIR] [--config FILE] [--json] [--verify]`: the state of a
coordinator: live through its control socket when it runs, else the last status.json it
wrote in the data folder."""
import json
import os

from rich.console import Console

from becomingone.commands.common import resolve_data_dir
from becomingone.commands.devicetable import device_table, states_of, window_lines
from becomingone.coordinator.control import SOCKET_NAME, request
from becomingone.errors import UserError
from becomingone.ledger import verify_path


def add_arguments(p):
    p.add_argument("--data", metavar="DIR", help="data folder (default as for `run`)")
    p.add_argument("--config", metavar="FILE", help="becomingone.yaml (for its data_dir)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.add_argument("--verify", action="store_true", help="also verify the ledger (chain, tree, checkpoints)")


def get_status(data_dir):
    sock = os.path.join(data_dir, SOCKET_NAME)
    if os.path.exists(sock):
        try:
            return request(sock, {"cmd": "status"}, timeout=5)
        except UserError:
            pass
    path = os.path.join(data_dir, "status.json")
    if not os.path.exists(path):
        raise UserError("no coordinator state in %s (no control socket, no status.json): start one "
                        "with `becomingone run --data %s`" % (data_dir, data_dir))
    try:
        with open(path) as f:
            st = json.load(f)
    except ValueError as e:
        raise UserError("%s is damaged (%s)" % (path, e)) from None
    st["running"] = False
    return st


def run(args):
    data = resolve_data_dir(args.data, args.config)
    st = get_status(data)
    if args.verify:
        lp = (st.get("ledger") or {}).get("path") or os.path.join(data, "ledger.sqlite")
        st["ledger"]["verify"] = verify_path(lp).to_dict()
    if args.json:
        print(json.dumps(st, sort_keys=True, default=str))
        return 0
    rej = st.get("frames_rejected", {})
    w = st.get("witness", {})
    h = st.get("health", {})
    print("coordinator  %s (pid %s), data %s" % ("running" if st.get("running") else "stopped",
                                                 st.get("pid"), st.get("data_dir")))
    for l in st.get("links", []):
        print("link         %s  %s  in %d  out %d" % (l["url"], "open" if l["open"] else "closed",
                                                     l["frames_in"], l["frames_out"]))
    print("devices      %d seen, %d online%s" % (st.get("devices_seen", 0), st.get("devices_online", 0),
                                              "" if st.get("running") else " when it stopped"))
    print("frames       %d received, %d accepted, %d before a handshake, %d rejected %s" % (
        st.get("frames_received", 0), st.get("frames_accepted", 0),
        st.get("frames_awaiting_handshake", 0), sum(rej.values()),
        ", ".join("%s %d" % kv for kv in sorted(rej.items()))))
    print("witness      %d received, %d committed, %d acked, %d rejected (pow), %d pending" % (
        w.get("received", 0), w.get("committed", 0), w.get("acked", 0), w.get("rejected_pow", 0),
        w.get("pending", 0)))
    led = st.get("ledger", {})
    line = "ledger       %s entries  %s" % (led.get("size"), led.get("path"))
    if "verify" in led:
        line += "  verify: %s" % ("ok" if led["verify"].get("ok") else "FAILED %s" % led["verify"].get("first_bad"))
    print(line)
    for line in _device_lines(st.get("sessions") or {}):
        print(line)
    print("health       lag %s ms, loss %s, inbox %s, ledger queue %s" % (
        h.get("ingest_lag_ms"), h.get("loss"), h.get("inbox_depth"), h.get("ledger_queue")))
    sessions = st.get("sessions") or {}
    if sessions:
        states = states_of(sessions, st.get("sync"), st.get("windows"))
        Console(width=100).print(device_table(states))
        for line in window_lines(states):      # C once a window exists, else its fill
            print(line)
    _mesh_lines(st.get("mesh") or {})
    mq = st.get("mqtt")
    if mq:
        print("mqtt         %s %s, base %s, %d published, %d commands, %d retained ignored, %d errors%s"
              % ("connected to" if mq.get("connected") else "NOT connected to", mq.get("broker"),
                 mq.get("base_topic"), mq.get("published", 0), mq.get("commands", 0),
                 mq.get("commands_retained_ignored", 0), mq.get("errors", 0),
                 "  (last: %s)" % mq["last_error"] if mq.get("last_error") else ""))
    return 0 if not ("verify" in led and not led["verify"].get("ok")) else 1


def _device_lines(sessions):
    """A line per device that needs a look: samples lost (HEARTBEAT), a boot after a watchdog
    reset or a crash, QUARANTINE restored at boot (HELLO)."""
    from device.latch import CAUSE_NAMES
    out = []
    for key, s in sorted(sessions.items(), key=lambda kv: int(kv[0])):
        hb = s.get("heartbeat") or {}
        h = s.get("hello") or {}
        notes = []
        if hb.get("samples_lost"):
            notes.append("%d samples lost" % hb["samples_lost"])
        rc = h.get("reset_cause")
        if rc in (2, 3):
            notes.append("booted after a %s reset" % CAUSE_NAMES[rc])
        if (h.get("boot_flags") or 0) & 2:
            notes.append("QUARANTINE restored at boot")
        if notes:
            out.append("device %-6s %s" % (key, ", ".join(notes)))
    return out


def _mesh_lines(m):
    """`mesh` of the status object (docs/MESH.md §0) in a few lines."""
    if not m.get("enabled"):
        return
    tg = m.get("t_global") or [0.0, 0.0]
    print("mesh         cell %s (%s), %s alive, T_global %.4f%+.4fj, pulse P %s, %d alert(s)%s" % (
        m.get("cell"), m.get("backend"), m.get("alive"), tg[0], tg[1], (m.get("pulse") or {}).get("P"),
        m.get("alert_count", 0), ", untrusted: " + ", ".join(m["split_views"]) if m.get("split_views") else ""))
    for cell, mb in sorted((m.get("members") or {}).items()):
        r = (m.get("replicas") or {}).get(cell)
        rep = "" if r is None else "  %s %d%s%s" % (r["mode"], r["size"], " verified" if r["verified"] else "",
                                                    " UNTRUSTED" if r.get("untrusted") else "")
        print("  %-16s %-7s inc %-3s w %.3f%s" % (cell, mb.get("state"), mb.get("incarnation"),
                                                   (m.get("weights") or {}).get(cell, 0.0), rep))
