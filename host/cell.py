"""The composition root: a cell is one coordinator and its devices, with the user surfaces wired
to it (docs/ARCHITECTURE.md). `becomingone run` and `becomingone emulate` start one.

    cell = Cell(cfg, links=["udp://0.0.0.0:5005"], http=None, ready_file=None)
    cell.start()             # HTTP bound first, MQTT settings checked, then the coordinator's
                             # stores, the mesh, its links; MQTT and HTTP serve last
    cell.run(duration=None)  # the processing loop in this thread (shutdown at its end)
    cell.stop(); cell.status(); cell.ready_info()

Each surface gets the coordinator's narrow CoordinatorView (HTTP, MQTT) or the ports it needs
(the mesh bridge); none of them sees the Coordinator itself.
"""

import importlib

from becomingone.coordinator.service import Coordinator
from becomingone.http.server import HttpServer
from becomingone.http.settings import resolve_settings

__all__ = ["Cell", "PARTS"]

# The parts a cell wires only when its config asks for them, imported then (a lazy registry, as
# links/ keeps its backends): the mesh brings the TLS stack (~4 MB resident), MQTT brings paho.
PARTS = {"mesh": "becomingone.mesh.bridge:MeshBridge",
         "mqtt": "becomingone.mqtt.bridge:MqttBridge"}


def part_class(name):
    """The class of an optional part (PARTS), imported on first use."""
    module, cls = PARTS[name].split(":")
    return getattr(importlib.import_module(module), cls)


class Cell:
    """Owns a Coordinator (`coordinator`) and the parts wired to it: `http` (HttpServer or
    None), `mqtt` (MqttBridge or None), `mesh` (MeshBridge or None). http: None = the config
    and BECOMINGONE_HTTP decide, False = off, "HOST:PORT" = on there. Raises from start() what
    the parts raise, after closing whatever it had opened: UserError (HTTP port in use, TLS
    material missing), ConfigError (MQTT files), LinkError, LedgerError."""

    def __init__(self, cfg, links=None, ready_file=None, control=True, http=None, master=True):
        self.cfg = cfg
        self._http_arg = http
        self.coordinator = Coordinator(cfg, links=links, ready_file=ready_file, control=control,
                                       master=master)
        self.view = self.coordinator.view
        self.http = None
        self.mqtt = None
        self.mesh = None

    def start(self, integration=True):
        c = self.coordinator
        settings = resolve_settings(self.cfg, self._http_arg)
        if settings is not None:
            # bound first: a port in use (or a missing token) fails before anything else opens
            self.http = HttpServer(self.view, settings)
        try:
            self._start(integration)
        except BaseException:
            if self.http is not None:
                self.http.close()
                self.http = None
            raise
        if self.http is not None:
            self.http.start()
            c.attach("http", self.http.close, status=self.http.stats)
        c.write_status()
        c.announce(self.ready_info())
        return self

    def _start(self, integration):
        c, cfg = self.coordinator, self.cfg
        if cfg.integrations.mqtt.enabled:      # checks its files first: ConfigError, nothing open
            self.mqtt = part_class("mqtt")(self.view, cfg.integrations.mqtt, cfg.becomingone.name)
        c.open_stores(integration)
        if cfg.ledger.witnesses:               # checkpoints go out to be cosigned
            from becomingone.ledger.cosigner import CosignRounds, Cosigner, witness_refs
            rounds = CosignRounds(Cosigner(c.ledger, witness_refs(cfg.to_dict()["ledger"]["witnesses"])),
                                  cfg.ledger.witness_interval).start()
            c.attach("witnesses", rounds.stop, status=rounds.status)
        if cfg.sync.mesh_enabled:              # TLS material checked first: UserError naming the fix
            try:
                self.mesh = self._mesh().start()      # own thread and asyncio loop
            except BaseException:
                c.close_stores()
                raise
            c.attach("mesh", self.mesh.stop, tick=self.mesh.tick, status=self.mesh.status)
        try:
            c.listen()
        except BaseException:
            if self.mesh is not None:
                self.mesh.stop()
            raise
        if self.mqtt is not None:
            c.witness.subscribe(self.mqtt.on_witness)   # a decision change: published at once
            self.mqtt.start()                 # own threads; never blocks processing
            c.attach("mqtt", self.mqtt.stop, status=self.mqtt.stats)

    def _mesh(self):
        c = self.coordinator
        core = c.core
        return part_class("mesh")(
            self.cfg, c.data_dir, c.ledger, submit=c.submit, micro=c.micro,
            sync=core.sync if core is not None else None,
            memory=core.memory if core is not None else None,
            configure_devices=c.operator.configure_online)

    def ready_info(self):
        """What `becomingone run` prints as `ready {json}` (and --ready-file holds)."""
        info = self.coordinator.ready_info()
        info["http"] = self.http.url if self.http is not None else None
        return info

    def run(self, duration=None):
        self.coordinator.run(duration)

    def stop(self):
        self.coordinator.stop()

    def reload(self):
        """SIGHUP: the parts that reload live (the mesh's trust files and revocation list)."""
        if self.mesh is not None:
            self.mesh.reload()

    def status(self):
        return self.coordinator.status()
