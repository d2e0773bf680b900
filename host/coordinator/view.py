"""CoordinatorView: the narrow, thread-safe face of a running coordinator that its user
surfaces get (the control socket, the HTTP server, the MQTT bridge): reads and operator actions,
each run in the processing thread, plus the few things that are safe to touch from any thread
(the ledger, the memory database's path, settings)."""
from becomingone.errors import NotRunning

__all__ = ["CoordinatorView", "NotRunning"]


def _true():
    return True


class CoordinatorView:
    """Every method runs in the coordinator's processing thread (Coordinator.call) and takes
    the waiting options of call(): timeout (TimeoutError after it), cancel (a threading.Event:
    concurrent.futures.CancelledError once set), loop_only (NotRunning while the loop does not
    run, instead of running in the caller's thread). Raises what the operator raises
    (UserError for an unknown device or a bad value)."""

    def __init__(self, coordinator):
        self._coordinator = coordinator

    def _run(self, fn, *args, timeout=10.0, cancel=None, loop_only=False):
        return self._coordinator.call(fn, *args, timeout=timeout, cancel=cancel,
                                      loop_only=loop_only)

    def _op(self, name, *args, **wait):
        op = self._coordinator.operator
        return self._run(getattr(op, name), *args, **wait)

    # ------------------------------------------------------------------ reads
    def status(self, **wait):
        """The status object (docs/HOST.md)."""
        return self._run(self._coordinator.status_now, **wait)

    def devices(self, **wait):
        return self._op("devices", **wait)

    def device(self, device_id, **wait):
        return self._op("device", device_id, **wait)

    def windows(self, device_id, seconds=None, **wait):
        return self._op("windows", device_id, seconds, **wait)

    def sync_states(self, **wait):
        return self._op("sync_states", **wait)

    def config_listing(self, device_id, **wait):
        return self._op("command", {"cmd": "config", "device": device_id}, **wait)

    def dashboard(self, **wait):
        return self._op("dashboard", **wait)

    def alive(self, **wait):
        """True once the processing thread answers (a liveness probe: /healthz)."""
        return self._run(_true, **wait)

    def device_reads(self, **wait):
        """([session summary], {device: sync state}, {device: [window]})."""
        return self._op("device_reads", **wait)

    def device_states(self, **wait):
        return self._op("device_states", **wait)

    # ------------------------------------------------------------------ actions
    def command(self, request, **wait):
        """A control request {"cmd": NAME, ...} (docs/HOST.md, "Control socket"); "ping" is
        answered at once, from any thread."""
        if request.get("cmd") == "ping":
            return "pong"
        return self._op("command", request, **wait)

    def clear(self, device_id, **wait):
        return self._op("clear", device_id, **wait)

    # ------------------------------------------------------------------ any thread
    @property
    def ledger(self):
        """The ledger (thread-safe: reads, proofs, checkpoints), None before it is open."""
        return self._coordinator.ledger

    @property
    def memory_path(self):
        """The memory database's path, None when this coordinator keeps no memory."""
        core = self._coordinator.core
        return core.memory.path if core is not None and core.memory is not None else None

    @property
    def has_master(self):
        return self._coordinator.master is not None

    @property
    def settings(self):
        """The read-only configuration (becomingone.config.Config)."""
        return self._coordinator.cfg
