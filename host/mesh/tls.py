"""Mesh CA, per-cell certificates and a mutual-TLS asyncio TCP transport (stdlib ssl).

Keys are ECDSA P-256 (every TLS stack has it, including the brokers of the cluster backend;
Ed25519 certificates are not accepted by all of them). `init_mesh(folder, cells)` writes

    folder/ca.pem  folder/ca.key            the mesh CA (key mode 0600)
    folder/cells/<cell>.pem  <cell>.key     one certificate per cell, CN = SAN = the cell name,
                                            signed by the CA, for serverAuth and clientAuth

Running `init_mesh` again with new cell names signs them with the existing CA; an existing cell
is never overwritten. Copy ca.pem and the cell's own pair to each host; ca.key stays offline.

Revocation: `revoke(folder, cell)` adds the cell's certificate to `folder/crl.pem`, a CRL signed by
the CA; copy it beside ca.pem on every cell. Both ends of every connection check the peer's
certificate serial against the CRL of their folder after the handshake (`revoked(folder)`: the
file's mtime is looked at on each connection, so a new CRL takes effect without a restart) and a
running cell drops the connections it already holds to a revoked peer when it reloads
(`MeshServer.drop_revoked`, `ConnectionPool.drop_revoked`; docs/MESH.md "Trust").

Transport: one TCP connection carries request/reply frames (u32 big-endian length, then that many
bytes, at most MAX_FRAME). Both sides present a certificate and require the peer's to chain to
the mesh CA (TLS 1.3 minimum); the server learns the peer's cell name from its certificate, a
client may require a given name (`expect`). A peer without a certificate, with one from another
CA, or with an unexpected name is refused before any frame is handled.

    srv = MeshServer(folder, "cell-a", handler)      # async handler(peer_cell, payload) -> bytes
    await srv.start("127.0.0.1", 18789); ...; await srv.close()
    peer = await connect(folder, "cell-b", host, port, expect="cell-a")
    reply = await peer.request(b"..."); await peer.close()
"""
import asyncio
import datetime
import os
import re
import ssl
import struct

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from becomingone.errors import MeshError
from becomingone.util.atomic import atomic_write, write_private

DEFAULT_PORT = 18789
MAX_FRAME = 16 << 20
CRL_FILE = "crl.pem"
_CRL = {}                 # folder -> (mtime_ns, frozenset of revoked serials)


class MeshTLSError(MeshError):
    """Certificates missing or refused (the message names the file or the peer)."""


def _check_cell_name(name):
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
        raise MeshTLSError("cell name %r: use 1-63 letters, digits, '.', '_' or '-' (starting with a "
                           "letter or digit)" % (name,))
    return name


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "BecomingONE mesh")])


def init_mesh(folder, cells, days=825):
    """Create (or extend) the mesh CA in `folder` and a certificate per new cell -> {name: path}."""
    if type(days) is not int or not 1 <= days <= 3650:
        raise MeshTLSError("--days must be an integer in 1..3650, got %r" % (days,))
    cells = [_check_cell_name(c) for c in cells]
    if not cells or len(set(cells)) != len(cells):
        raise MeshTLSError("give one or more distinct cell names, got %r" % (cells,))
    folder = os.path.expanduser(folder)
    os.makedirs(os.path.join(folder, "cells"), exist_ok=True)
    ca_pem, ca_key_path = os.path.join(folder, "ca.pem"), os.path.join(folder, "ca.key")
    for c in cells:
        if os.path.exists(os.path.join(folder, "cells", c + ".pem")):
            raise MeshTLSError("cell %r already has a certificate in %s; choose a new name or remove "
                               "it first" % (c, os.path.join(folder, "cells")))
    now = datetime.datetime.now(datetime.timezone.utc)
    out = {}
    if os.path.exists(ca_pem):
        if not os.path.exists(ca_key_path):
            raise MeshTLSError("%s exists but %s does not: new cells need the CA key" % (ca_pem, ca_key_path))
        with open(ca_key_path, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), password=None)
        with open(ca_pem, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = (x509.CertificateBuilder().subject_name(_name("BecomingONE mesh CA"))
                   .issuer_name(_name("BecomingONE mesh CA")).public_key(ca_key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=3650))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False,
                                                data_encipherment=False, key_agreement=False,
                                                encipher_only=False, decipher_only=False), critical=True)
                   .sign(ca_key, hashes.SHA256()))
        write_private(ca_key_path, ca_key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        with open(ca_pem, "wb") as f:
            f.write(ca_cert.public_bytes(serialization.Encoding.PEM))
        out["ca"] = ca_pem
        out["ca_key"] = ca_key_path
    for c in cells:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(c)).issuer_name(ca_cert.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(c)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        kp = os.path.join(folder, "cells", c + ".key")
        write_private(kp, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        cp = os.path.join(folder, "cells", c + ".pem")
        with open(cp, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        out[c] = cp
    return out


def revoke(folder, cell, days=3650):
    """Revoke `cell`'s certificate: add its serial to folder/crl.pem (signed by the CA; created on
    first use) -> the CRL's path. The CA folder of `becomingone mesh init`."""
    folder = os.path.expanduser(folder)
    _check_cell_name(cell)
    ca_pem, ca_key_path = os.path.join(folder, "ca.pem"), os.path.join(folder, "ca.key")
    cert_path = os.path.join(folder, "cells", cell + ".pem")
    for p in (ca_pem, ca_key_path, cert_path):
        if not os.path.exists(p):
            raise MeshTLSError("cannot revoke %r: missing %s (revoke in the CA folder of `becomingone mesh "
                               "init`)" % (cell, p))
    with open(ca_key_path, "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), password=None)
    with open(ca_pem, "rb") as f:
        ca_cert = x509.load_pem_x509_certificate(f.read())
    with open(cert_path, "rb") as f:
        serial = x509.load_pem_x509_certificate(f.read()).serial_number
    now = datetime.datetime.now(datetime.timezone.utc)
    crl_path = os.path.join(folder, CRL_FILE)
    old = []
    if os.path.exists(crl_path):
        with open(crl_path, "rb") as f:
            old = list(x509.load_pem_x509_crl(f.read()))
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - datetime.timedelta(minutes=5)).next_update(now + datetime.timedelta(days=days)))
    for r in old:
        if r.serial_number != serial:
            b = b.add_revoked_certificate(r)
    b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(serial)
                                  .revocation_date(now).build())
    crl = b.sign(ca_key, hashes.SHA256())
    with atomic_write(crl_path, binary=True) as f:
        f.write(crl.public_bytes(serialization.Encoding.PEM))
    return crl_path


def revoked(folder):
    """Serials revoked by folder/crl.pem (verified against folder/ca.pem; re-read when the file
    changes). A CRL that does not verify is an error, never an empty list."""
    folder = os.path.expanduser(folder)
    path = os.path.join(folder, CRL_FILE)
    try:
        m = os.stat(path).st_mtime_ns
    except FileNotFoundError:
        _CRL.pop(folder, None)
        return frozenset()
    hit = _CRL.get(folder)
    if hit is not None and hit[0] == m:
        return hit[1]
    with open(path, "rb") as f:
        crl = x509.load_pem_x509_crl(f.read())
    with open(os.path.join(folder, "ca.pem"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    if not crl.is_signature_valid(ca.public_key()):
        raise MeshTLSError("%s is not signed by this mesh's CA (%s)" % (path, os.path.join(folder, "ca.pem")))
    got = frozenset(r.serial_number for r in crl)
    _CRL[folder] = (m, got)
    return got


def peer_serial(ssl_object):
    """The serial number of a verified peer's certificate."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return x509.load_der_x509_certificate(der).serial_number if der else None


def _context(folder, cell, server):
    folder = os.path.expanduser(folder)
    ca = os.path.join(folder, "ca.pem")
    cert, key = (os.path.join(folder, "cells", cell + ext) for ext in (".pem", ".key"))
    for p in (ca, cert, key):
        if not os.path.exists(p):
            raise MeshTLSError("missing %s (run `becomingone mesh init --dir %s --cells %s`)" % (p, folder, cell))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = False        # peers are named by their certificate, checked below
    return ctx


def peer_cell(ssl_object):
    """The cell name (certificate CN) of a verified peer."""
    cert = ssl_object.getpeercert() if ssl_object is not None else None
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


async def _read_frame(reader):
    n = struct.unpack(">I", await reader.readexactly(4))[0]
    if n > MAX_FRAME:
        raise MeshTLSError("frame of %d bytes exceeds the %d-byte limit" % (n, MAX_FRAME))
    return await reader.readexactly(n)


def _frame(payload):
    if len(payload) > MAX_FRAME:
        raise MeshTLSError("frame of %d bytes exceeds the %d-byte limit" % (len(payload), MAX_FRAME))
    return struct.pack(">I", len(payload)) + payload


class MeshServer:
    """One cell's mutual-TLS listener: owns the server socket and answers each framed
    request with `handler(peer_cell, payload)`. Raises MeshTLSError for a bad cell name or
    TLS material."""
    def __init__(self, folder, cell, handler):
        self.cell = _check_cell_name(cell)
        self.folder = folder
        self.ctx = _context(folder, cell, server=True)
        self.handler = handler
        self.server = None
        self.served = 0           # frames answered (failed handshakes never reach the handler)
        self.refused_revoked = 0  # connections from a revoked certificate, cut after the handshake
        self._writers = {}        # live connections (peers keep them open: ConnectionPool) -> serial

    async def start(self, host="127.0.0.1", port=DEFAULT_PORT):
        self.server = await asyncio.start_server(self._client, host, port, ssl=self.ctx)
        return self.server.sockets[0].getsockname()[1]

    async def _client(self, reader, writer):
        sslobj = writer.get_extra_info("ssl_object")
        name = peer_cell(sslobj)
        serial = peer_serial(sslobj)
        self._writers[writer] = serial
        try:
            if name is None:
                return
            if serial in revoked(self.folder):
                self.refused_revoked += 1
                return
            while True:
                try:
                    payload = await _read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                reply = await self.handler(name, payload)
                writer.write(_frame(reply or b""))
                await writer.drain()
                self.served += 1
        except (ssl.SSLError, ConnectionError, MeshTLSError):
            return
        finally:
            self._writers.pop(writer, None)
            writer.close()

    def drop_revoked(self):
        """Cut the kept connections of peers whose certificate is revoked now -> how many."""
        bad = revoked(self.folder)
        cut = [w for w, serial in self._writers.items() if serial in bad]
        for w in cut:
            w.transport.abort()
        return len(cut)

    async def close(self):
        """Stop listening and cut the connections peers keep open (Python 3.11's server
        close leaves them served)."""
        if self.server is not None:
            self.server.close()
            for w in list(self._writers):
                w.transport.abort()
            await self.server.wait_closed()


class MeshPeer:
    """One mutual-TLS connection to a peer cell (its name from the certificate);
    request(payload) -> reply. Raises MeshTLSError when the peer closes or answers out of
    frame."""
    def __init__(self, reader, writer, name):
        self.reader, self.writer, self.name = reader, writer, name
        self.serial = None

    async def request(self, payload):
        self.writer.write(_frame(payload))
        await self.writer.drain()
        try:
            return await _read_frame(self.reader)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError) as e:
            raise MeshTLSError("peer %s closed the connection (refused our certificate?): %s"
                               % (self.name, e)) from None

    async def close(self, timeout=1.0):
        """Close; a peer behind a cut link never answers the TLS close_notify, so after
        `timeout` the transport is aborted instead of waiting (asyncio would wait 30 s)."""
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), timeout)
        except (ssl.SSLError, ConnectionError, asyncio.TimeoutError):
            self.writer.transport.abort()


async def connect(folder, cell, host, port=DEFAULT_PORT, expect=None, timeout=10.0):
    """Mutual-TLS connection to a peer cell; `expect`: the peer's cell name must be this."""
    ctx = _context(folder, _check_cell_name(cell), server=False)
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), timeout)
    except ssl.SSLCertVerificationError as e:
        raise MeshTLSError("peer %s:%d is not certified by this mesh's CA (%s)" % (host, port, e.verify_message)) from None
    except (ssl.SSLError, OSError, asyncio.TimeoutError) as e:
        raise MeshTLSError("cannot connect to peer %s:%d: %s" % (host, port, e)) from None
    sslobj = writer.get_extra_info("ssl_object")
    name = peer_cell(sslobj)
    if expect is not None and name != expect:
        writer.close()
        raise MeshTLSError("peer %s:%d presents cell %r, expected %r" % (host, port, name, expect))
    serial = peer_serial(sslobj)
    if serial in revoked(folder):
        writer.transport.abort()
        raise MeshTLSError("peer %s:%d (cell %r) presents a revoked certificate (%s)"
                           % (host, port, name, os.path.join(os.path.expanduser(folder), CRL_FILE)))
    peer = MeshPeer(reader, writer, name)
    peer.serial = serial
    return peer


def connector(folder, cell, pool=None):
    """An async connect(host, port, expect=None, timeout=10.0) for this cell: through `pool`
    (a ConnectionPool, connections reused) when given, else a new connection each time."""
    if pool is not None:
        return pool.connect

    async def _connect(host, port=DEFAULT_PORT, expect=None, timeout=10.0):
        return await connect(folder, cell, host, port, expect, timeout)
    return _connect


class ConnectionPool:
    """Mutual-TLS connections kept open and reused, one per (host, port, expected cell): a
    period's SWIM probe, anti-entropy exchange and replication pull to a peer share one TLS
    session instead of a handshake each (`becomingone bench mesh`, row mesh-traffic).

        pool = ConnectionPool(folder, cell)
        conn = await pool.connect(host, port, expect=None, timeout=10.0)   # as connect()
        await conn.request(payload); await conn.close()    # close() hands it back to the pool
        await pool.close()                                  # closes every kept connection

    One request at a time per connection (a lease holds the connection's lock until close()).
    A request that fails or is cancelled (a timeout) drops the connection: the next lease
    dials again. A reused connection the peer has closed meanwhile (it restarted) is redialled
    once, transparently, within the same request (every mesh request is idempotent)."""

    def __init__(self, folder, cell):
        self.folder, self.cell = folder, cell
        self._peers = {}            # key -> MeshPeer
        self._locks = {}
        self.dials = self.reuses = 0

    async def connect(self, host, port=DEFAULT_PORT, expect=None, timeout=10.0):
        key = (host, int(port), expect)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        await asyncio.wait_for(lock.acquire(), timeout)
        try:
            peer = self._peers.get(key)
            fresh = peer is None
            if fresh:
                peer = self._peers[key] = await connect(self.folder, self.cell, host, port, expect, timeout)
                self.dials += 1
            else:
                self.reuses += 1
        except BaseException:
            lock.release()
            raise
        return _Lease(self, key, peer, lock, fresh, timeout)

    async def redial(self, key, timeout):
        await self.drop(key)
        peer = self._peers[key] = await connect(self.folder, self.cell, key[0], key[1], key[2], timeout)
        self.dials += 1
        return peer

    async def drop(self, key):
        peer = self._peers.pop(key, None)
        if peer is not None:
            peer.writer.transport.abort()

    async def drop_revoked(self):
        """Close kept connections to peers whose certificate is revoked now -> how many."""
        bad = revoked(self.folder)
        keys = [k for k, p in self._peers.items() if getattr(p, "serial", None) in bad]
        for k in keys:
            await self.drop(k)
        return len(keys)

    async def close(self):
        for key in list(self._peers):
            peer = self._peers.pop(key)
            try:
                await peer.close(timeout=0.2)
            except Exception:
                peer.writer.transport.abort()


class _Lease:
    def __init__(self, pool, key, peer, lock, fresh, timeout):
        self.pool, self.key, self.peer, self.lock = pool, key, peer, lock
        self.fresh, self.timeout, self.broken = fresh, timeout, False
        self.name = peer.name

    async def request(self, payload):
        try:
            try:
                return await self.peer.request(payload)
            except (MeshTLSError, OSError, ssl.SSLError, asyncio.IncompleteReadError):
                if self.fresh:
                    raise
                # a kept connection the peer closed (restart, idle cut): dial once more
                self.fresh = True
                self.peer = await self.pool.redial(self.key, self.timeout)
                return await self.peer.request(payload)
        except BaseException:       # failed or cancelled mid-frame: never reuse it
            self.broken = True
            raise

    async def close(self, timeout=1.0):
        if self.lock is None:
            return
        try:
            if self.broken:
                await self.pool.drop(self.key)
        finally:
            self.lock.release()
            self.lock = None

