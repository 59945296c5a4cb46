#!/usr/bin/env python3
"""NTLM/Negotiate HTTP clients for the ntlm-affinity lab scenarios.

Each client prints one JSON line per HTTP request on stdout:
  {"ts", "client", "run", "leg", "conn", "src", "http_version", "scheme", "status",
   "server", "user", "closed"}
  leg:    anonymous | type1 | type3 | request | kerberos
  conn:   client-side connection number within the run (a new number = a new TCP connection)
  src:    local ip:port of that connection
  server: the X-NTA-Server header of the response (the backend that answered), if any
and exits 0 when every run ran (whatever the HTTP statuses), 2 on a network error.

Clients (sub-commands):
  keepalive   all legs on one TCP connection (like curl --ntlm); --scheme NTLM|Negotiate,
              --wrap raw|spnego (Negotiate with raw NTLM or SPNEGO-wrapped NTLM),
              --then N more requests without credentials on the same connection
  reconnect   a new TCP connection for every leg
  http10      HTTP/1.0 + Connection: close; --give-up stops after the challenge
              (the connection is gone), otherwise the Type-3 goes on a new connection
  abandon     sends the Type-1, receives the Type-2, then stops (--hold SECS before close)
  kerberos    a Kerberos-looking `Negotiate YII...` token (KRB5 OID, AP-REQ shape, random
              cipher text): stateless, must never be flagged by the tracker
  anon        requests without credentials on one keep-alive connection (--requests N):
              client B of the auth_context_reuse scenario

Real Kerberos (the lab's KDC; KRB5_CONFIG from the lab; every run kinit's into a private
KRB5CCNAME under --ccache-dir, so no two clients share tickets; the SPN is
HTTP/--spn-host, default www.lab.test, while the TCP connection goes to --host):
  negotiate-browser     anonymous request -> 401 Negotiate -> AP-REQ on the same
                        connection -> 200, then --then N requests without credentials
  negotiate-preemptive  a new connection whose first request already carries
                        `Authorization: Negotiate <AP-REQ>`, then --then N requests
  curl-negotiate        real `curl --negotiate -u :` (--resolve SPN-HOST:PORT:HOST),
                        1 + --then requests in one curl process
  negotiate-fallback    SPNEGO that cannot use Kerberos and falls back to NTLM inside
                        SPNEGO: --fallback no-ticket (no ticket, NTLM account LAB\\user) or
                        --fallback spn (a ticket, but the SPN is unknown to the KDC)
  drive       continuous mixed traffic for the demo/benchmarks (--mix, --duration)

Kerberos legs print leg "kerberos"; the user field is the principal.

Lab accounts only (LAB\\alice, LAB\\bob, ... with the lab password).
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime as _dt
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import typing

import spnego
import spnego.exceptions

OUT_LOCK = threading.Lock()


def emit(rec: typing.Dict[str, typing.Any]) -> None:
    now = _dt.datetime.now(_dt.timezone.utc)
    line = {"ts": now.isoformat(timespec="microseconds").replace("+00:00", "Z")}
    line.update(rec)
    with OUT_LOCK:
        sys.stdout.write(json.dumps(line, separators=(",", ":")) + "\n")
        sys.stdout.flush()


# --------------------------------------------------------------------------- tiny HTTP client
class Response:
    def __init__(self, status: int, headers: typing.List[typing.Tuple[str, str]], body: bytes, closed: bool):
        self.status = status
        self.headers = headers
        self.body = body
        self.closed = closed

    def header(self, name: str) -> typing.Optional[str]:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def headers_named(self, name: str) -> typing.List[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Conn:
    """One TCP connection; requests are sent sequentially (no pipelining)."""

    def __init__(self, host: str, port: int, source: typing.Optional[str], timeout: float):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.rfile = self.sock.makefile("rb")
        self.host = host
        self.host_header: typing.Optional[str] = None
        self.port = port
        self.closed = False
        name = self.sock.getsockname()
        self.src = "%s:%d" % (name[0], name[1])

    def request(self, method: str, path: str, headers: typing.Sequence[typing.Tuple[str, str]],
                version: str = "HTTP/1.1") -> Response:
        lines = ["%s %s %s" % (method, path, version), "Host: %s:%d" % (self.host_header or self.host, self.port),
                 "User-Agent: nta-lab-client/1"]
        lines += ["%s: %s" % kv for kv in headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        status_line = self.rfile.readline(65537)
        if not status_line:
            self.close()
            raise ConnectionError("connection closed before the response")
        parts = status_line.decode("latin-1").split(" ", 2)
        if len(parts) < 2:
            raise ConnectionError("bad status line %r" % status_line[:80])
        status = int(parts[1])
        resp_version = parts[0]
        hdrs: typing.List[typing.Tuple[str, str]] = []
        while True:
            line = self.rfile.readline(65537)
            if not line or line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            hdrs.append((k.strip(), v.strip()))
        resp = Response(status, hdrs, b"", False)
        conn_hdr = (resp.header("Connection") or "").lower()
        will_close = "close" in conn_hdr or (
            (version == "HTTP/1.0" or resp_version == "HTTP/1.0") and "keep-alive" not in conn_hdr)
        cl = resp.header("Content-Length")
        if method == "HEAD":
            body = b""
        elif cl is not None:
            body = self.rfile.read(int(cl))
        elif will_close:
            body = self.rfile.read()
        else:
            body = b""
        resp.body = body
        if will_close:
            self.close()
        resp.closed = self.closed
        return resp

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.rfile.close()
                self.sock.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- tokens
def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        length = bytes([n])
    elif n < 0x100:
        length = bytes([0x81, n])
    else:
        length = bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + length + content


def der_int(v: int) -> bytes:
    return der(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big"))


OID_SPNEGO = bytes.fromhex("2b0601050502")
OID_KRB5 = bytes.fromhex("2a864886f712010202")
OID_MSKRB5 = bytes.fromhex("2a864882f712010202")
OID_NEGOEX = bytes.fromhex("2b06010401823702021e")
OID_NTLM = bytes.fromhex("2b06010401823702020a")


def kerberos_token(form: str = "spnego", realm: str = "LAB.TEST", spn_host: str = "www.lab.test") -> bytes:
    """A structurally valid but fake Kerberos AP-REQ in a GSS-API InitialContextToken,
    optionally inside a SPNEGO NegTokenInit whose mechTypes list (like Windows) also names
    NTLM. The cipher parts are random bytes: there is no KDC and the backend refuses it."""
    def enc_data(etype: int, size: int, kvno: typing.Optional[int] = None) -> bytes:
        parts = der(0xA0, der_int(etype))
        if kvno is not None:
            parts += der(0xA1, der_int(kvno))
        parts += der(0xA2, der(0x04, os.urandom(size)))
        return der(0x30, parts)

    principal = der(0x30, der(0xA0, der_int(2)) + der(0xA1, der(0x30, der(0x1B, b"HTTP") + der(0x1B, spn_host.encode()))))
    ticket = der(0x61, der(0x30,
                           der(0xA0, der_int(5)) + der(0xA1, der(0x1B, realm.encode()))
                           + der(0xA2, principal) + der(0xA3, enc_data(18, 1000, kvno=2))))
    ap_req = der(0x6E, der(0x30,
                           der(0xA0, der_int(5)) + der(0xA1, der_int(14))
                           + der(0xA2, der(0x03, b"\x00\x20\x00\x00\x00"))
                           + der(0xA3, ticket) + der(0xA4, enc_data(18, 300))))
    krb = der(0x60, der(0x06, OID_KRB5) + b"\x01\x00" + ap_req)
    if form == "krb5":
        return krb
    mech_types = der(0x30, b"".join(der(0x06, o) for o in (OID_MSKRB5, OID_KRB5, OID_NEGOEX, OID_NTLM)))
    init = der(0xA0, der(0x30, der(0xA0, mech_types) + der(0xA2, der(0x04, krb))))
    return der(0x60, der(0x06, OID_SPNEGO) + init)


# --------------------------------------------------------------------------- client flows
class Ctx:
    def __init__(self, args: argparse.Namespace, kind: str, run: int, source: typing.Optional[str]):
        self.args = args
        self.kind = kind
        self.run = run
        self.source = source
        self.nconn = 0

    def connect(self) -> Conn:
        self.nconn += 1
        c = Conn(self.args.host, self.args.port, self.source, self.args.timeout)
        c.num = self.nconn  # type: ignore[attr-defined]
        if self.kind.startswith("negotiate") or self.kind.startswith("curl"):
            c.host_header = self.args.spn_host
        return c

    def send(self, conn: Conn, leg: str, auth: typing.Optional[str] = None, version: str = "HTTP/1.1",
             close: bool = False, scheme: typing.Optional[str] = None,
             user: typing.Optional[str] = None, path: typing.Optional[str] = None) -> Response:
        headers: typing.List[typing.Tuple[str, str]] = []
        if auth:
            headers.append((self.args.auth_header, auth))
        if close:
            headers.append(("Connection", "close"))
        src = conn.src
        resp = conn.request(self.args.method, path or self.args.path, headers, version=version)
        emit({
            "client": self.kind, "run": self.run, "leg": leg, "conn": conn.num,  # type: ignore[attr-defined]
            "src": src, "http_version": version, "scheme": scheme, "status": resp.status,
            "server": resp.header("X-NTA-Server"), "user": (user or self.args.user) if auth else None,
            "closed": resp.closed, "persistent_auth": resp.header("Persistent-Auth"),
            "path": path or self.args.path,
        })
        return resp

    # ------------------------------------------------------------ Kerberos
    def principal(self) -> str:
        user = self.args.user.rpartition("\\")[2]
        return user if "@" in user else "%s@%s" % (user, self.args.realm)

    def kinit(self) -> str:
        """A private credential cache for this run, with a TGT for the run's principal."""
        path = os.path.join(self.args.ccache_dir, "cc-%s-%d-%d-%d" % (self.kind, os.getpid(), self.run,
                                                                     threading.get_ident()))
        ccache = "FILE:" + path
        env = dict(os.environ, KRB5CCNAME=ccache)
        r = subprocess.run(["kinit", self.principal()], input=(self.args.password + "\n").encode(),
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=self.args.timeout)
        if r.returncode != 0:
            raise ValueError("kinit %s: %s" % (self.principal(), r.stderr.decode(errors="replace").strip()))
        return ccache

    def krb_client(self, ccache: str) -> typing.Any:
        return spnego.client(spnego.KerberosCCache(ccache=ccache), hostname=self.args.spn_host,
                             service="HTTP", protocol="negotiate")

    def spnego_client(self, wrap: str) -> typing.Any:
        protocol = "negotiate" if wrap == "spnego" else "ntlm"
        return spnego.client(self.args.user, self.args.password, hostname=self.args.spn_host or self.args.host,
                             service="HTTP", protocol=protocol)


def server_token(resp: Response, scheme: str, header: str) -> typing.Optional[bytes]:
    for v in resp.headers_named(header):
        s, _, tok = v.partition(" ")
        if s.lower() == scheme.lower() and tok.strip():
            return base64.b64decode(tok.strip())
    return None


def wait_for_file(path: str, limit: float) -> None:
    """Hold the handshake until PATH exists (the test's cue: tracker attached, backend killed)."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError("%s did not appear in %.0f s" % (path, limit))
        time.sleep(0.02)


def flow_keepalive(c: Ctx) -> None:
    a = c.args
    scheme = a.scheme
    conn = c.connect()
    try:
        if a.anon_first:
            c.send(conn, "anonymous")
            if conn.closed:
                conn = c.connect()
        cli = c.spnego_client(a.wrap if scheme == "Negotiate" else "raw")
        t1 = cli.step()
        r = c.send(conn, "type1", "%s %s" % (scheme, base64.b64encode(t1).decode()), scheme=scheme)
        t2 = server_token(r, scheme, a.challenge_header)
        if r.status not in (401, 407) or t2 is None:
            return
        if a.type3_wait:
            wait_for_file(a.type3_wait, a.timeout * 6)
        if conn.closed:
            conn = c.connect()
        t3 = cli.step(t2)
        r = c.send(conn, "type3", "%s %s" % (scheme, base64.b64encode(t3).decode()), scheme=scheme)
        for _ in range(a.then):
            if conn.closed:
                conn = c.connect()
            c.send(conn, "request")
            if a.then_interval:
                time.sleep(a.then_interval)
    finally:
        conn.close()


def flow_reconnect(c: Ctx) -> None:
    a = c.args
    scheme = a.scheme
    if a.anon_first:
        conn = c.connect()
        c.send(conn, "anonymous")
        conn.close()
    cli = c.spnego_client(a.wrap if scheme == "Negotiate" else "raw")
    conn = c.connect()
    r = c.send(conn, "type1", "%s %s" % (scheme, base64.b64encode(cli.step()).decode()), scheme=scheme)
    conn.close()
    t2 = server_token(r, scheme, a.challenge_header)
    if t2 is None:
        return
    conn = c.connect()
    c.send(conn, "type3", "%s %s" % (scheme, base64.b64encode(cli.step(t2)).decode()), scheme=scheme)
    conn.close()


def flow_http10(c: Ctx) -> None:
    a = c.args
    scheme = a.scheme
    cli = c.spnego_client(a.wrap if scheme == "Negotiate" else "raw")
    conn = c.connect()
    r = c.send(conn, "type1", "%s %s" % (scheme, base64.b64encode(cli.step()).decode()),
               version="HTTP/1.0", close=True, scheme=scheme)
    conn.close()
    t2 = server_token(r, scheme, a.challenge_header)
    if t2 is None or a.give_up:
        return
    conn = c.connect()
    c.send(conn, "type3", "%s %s" % (scheme, base64.b64encode(cli.step(t2)).decode()),
           version="HTTP/1.0", close=True, scheme=scheme)
    conn.close()


def flow_abandon(c: Ctx) -> None:
    a = c.args
    scheme = a.scheme
    cli = c.spnego_client(a.wrap if scheme == "Negotiate" else "raw")
    conn = c.connect()
    c.send(conn, "type1", "%s %s" % (scheme, base64.b64encode(cli.step()).decode()), scheme=scheme)
    if a.hold:
        time.sleep(a.hold)
    conn.close()


def flow_kerberos(c: Ctx) -> None:
    a = c.args
    conn = c.connect()
    tok = kerberos_token(a.form, spn_host=a.spn_host or a.host)
    c.send(conn, "kerberos", "Negotiate %s" % base64.b64encode(tok).decode(), scheme="Negotiate")
    conn.close()


def flow_anon(c: Ctx) -> None:
    a = c.args
    conn = c.connect()
    try:
        for i in range(a.requests):
            if conn.closed:
                conn = c.connect()
            c.send(conn, "request", path=a.first_path if i == 0 and a.first_path else None)
            if a.then_interval:
                time.sleep(a.then_interval)
    finally:
        conn.close()


def _then(c: Ctx, conn: Conn) -> None:
    for _ in range(c.args.then):
        if conn.closed:
            conn = c.connect()
        c.send(conn, "request")
        if c.args.then_interval:
            time.sleep(c.args.then_interval)


def _kerberos_leg(c: Ctx, conn: Conn, cli: typing.Any) -> Response:
    tok = cli.step()
    r = c.send(conn, "kerberos", "Negotiate %s" % base64.b64encode(tok).decode(), scheme="Negotiate",
               user=c.principal())
    back = server_token(r, "Negotiate", c.args.challenge_header)
    if r.status == 200 and back:
        try:
            cli.step(back)  # mutual authentication (AP-REP); the outcome is the server's 200
        except Exception:  # noqa: BLE001 - informative only
            pass
    return r


def flow_negotiate_browser(c: Ctx) -> None:
    ccache = c.kinit()
    conn = c.connect()
    try:
        r = c.send(conn, "anonymous")
        offered = [v.split(" ")[0].lower() for v in r.headers_named(c.args.challenge_header)]
        if r.status not in (401, 407) or "negotiate" not in offered:
            return
        if conn.closed:
            conn = c.connect()
        _kerberos_leg(c, conn, c.krb_client(ccache))
        _then(c, conn)
    finally:
        conn.close()


def flow_negotiate_preemptive(c: Ctx) -> None:
    ccache = c.kinit()
    conn = c.connect()
    try:
        _kerberos_leg(c, conn, c.krb_client(ccache))
        _then(c, conn)
    finally:
        conn.close()


def flow_curl_negotiate(c: Ctx) -> None:
    a = c.args
    ccache = c.kinit()
    url = "http://%s:%d%s" % (a.spn_host, a.port, a.path)
    cmd = ["curl", "-s", "-S", "--max-time", str(int(a.timeout) + 5), "--negotiate", "-u", ":",
           "--resolve", "%s:%d:%s" % (a.spn_host, a.port, a.host),
           "-w", "%{http_code} %{num_connects} %{local_ip}:%{local_port} %header{x-nta-server}\\n"]
    if c.source:
        cmd += ["--interface", c.source]
    for _ in range(1 + a.then):
        cmd += ["-o", "/dev/null", url]
    r = subprocess.run(cmd, env=dict(os.environ, KRB5CCNAME=ccache), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=a.timeout * (2 + a.then))
    conn_no = 0
    for i, line in enumerate(r.stdout.decode(errors="replace").splitlines()):
        f = line.split()
        if len(f) < 3:
            continue
        conn_no += int(f[1]) if f[1].isdigit() else 0
        emit({"client": c.kind, "run": c.run, "leg": "kerberos" if i == 0 else "request", "conn": conn_no,
              "src": f[2], "http_version": "HTTP/1.1", "scheme": "Negotiate", "status": int(f[0]),
              "server": f[3] if len(f) > 3 else None, "user": c.principal(), "closed": None})
    if r.returncode != 0:
        raise ValueError("curl exit %d: %s" % (r.returncode, r.stderr.decode(errors="replace").strip()))


def flow_negotiate_fallback(c: Ctx) -> None:
    a = c.args
    creds: typing.List[typing.Any] = []
    spn_host = a.spn_host
    if a.fallback == "spn":
        creds.append(spnego.KerberosCCache(ccache=c.kinit()))
        spn_host = a.fallback_spn_host
    else:
        # No ticket anywhere: an empty private cache, and an NTLM-only account name.
        creds.append(spnego.KerberosCCache(ccache="FILE:" + os.path.join(a.ccache_dir, "empty-%d-%d" % (
            os.getpid(), c.run))))
    creds.append(spnego.Password(a.user, a.password))
    cli = spnego.client(creds, hostname=spn_host, service="HTTP", protocol="negotiate")
    conn = c.connect()
    try:
        r = c.send(conn, "anonymous")
        if conn.closed:
            conn = c.connect()
        t1 = cli.step()
        r = c.send(conn, "type1", "Negotiate %s" % base64.b64encode(t1).decode(), scheme="Negotiate")
        t2 = server_token(r, "Negotiate", a.challenge_header)
        if r.status not in (401, 407) or t2 is None:
            return
        if conn.closed:
            conn = c.connect()
        t3 = cli.step(t2)
        c.send(conn, "type3", "Negotiate %s" % base64.b64encode(t3).decode(), scheme="Negotiate")
        _then(c, conn)
    finally:
        conn.close()


FLOWS: typing.Dict[str, typing.Callable[[Ctx], None]] = {
    "keepalive": flow_keepalive,
    "reconnect": flow_reconnect,
    "http10": flow_http10,
    "abandon": flow_abandon,
    "kerberos": flow_kerberos,
    "anon": flow_anon,
    "negotiate-browser": flow_negotiate_browser,
    "negotiate-preemptive": flow_negotiate_preemptive,
    "curl-negotiate": flow_curl_negotiate,
    "negotiate-fallback": flow_negotiate_fallback,
}


def run_one(args: argparse.Namespace, kind: str, run: int, source: typing.Optional[str]) -> bool:
    c = Ctx(args, kind, run, source)
    try:
        FLOWS[kind](c)
        return True
    except (OSError, ConnectionError, ValueError, subprocess.SubprocessError, spnego.exceptions.SpnegoError) as exc:
        emit({"client": kind, "run": run, "leg": "error", "src": source, "error": "%s: %s" % (type(exc).__name__, exc)})
        return False


def sources_of(args: argparse.Namespace) -> typing.List[typing.Optional[str]]:
    if args.sources:
        return [s for s in args.sources.split(",") if s]
    return [args.source]


def cmd_single(args: argparse.Namespace) -> int:
    srcs = sources_of(args)
    ok = True
    jobs = [(i, srcs[i % len(srcs)]) for i in range(args.count)]
    if args.parallel <= 1:
        for i, s in jobs:
            ok &= run_one(args, args.cmd, i + 1, s)
            if args.interval:
                time.sleep(args.interval)
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.parallel) as ex:
            ok = all(ex.map(lambda j: run_one(args, args.cmd, j[0] + 1, j[1]), jobs))
    return 0 if ok else 2


def cmd_drive(args: argparse.Namespace) -> int:
    mix = [m for m in args.mix.split(",") if m]
    for m in mix:
        if m not in FLOWS:
            print("unknown client kind %r (choose from %s)" % (m, ",".join(FLOWS)), file=sys.stderr)
            return 2
    srcs = sources_of(args)
    deadline = time.monotonic() + args.duration if args.duration > 0 else None
    counter = iter(range(1, 1 << 62))
    lock = threading.Lock()
    rng = random.Random(args.seed)

    def worker() -> None:
        while deadline is None or time.monotonic() < deadline:
            with lock:
                run = next(counter)
                kind = mix[(run - 1) % len(mix)] if not args.shuffle else rng.choice(mix)
                src = srcs[(run - 1) % len(srcs)]
            run_one(args, kind, run, src)
            if args.interval:
                time.sleep(args.interval)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, args.parallel))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except KeyboardInterrupt:
        return 0
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--host", default="198.18.0.1")
        sp.add_argument("--port", type=int, default=80)
        sp.add_argument("--path", default="/")
        sp.add_argument("--method", default="GET")
        sp.add_argument("--source", help="local source address")
        sp.add_argument("--sources", help="comma-separated source addresses, used in turn")
        sp.add_argument("--user", default="LAB\\alice")
        sp.add_argument("--password", default="Passw0rd!")
        sp.add_argument("--spn-host", help="host part of the SPN (default: --host)")
        sp.add_argument("--scheme", choices=["NTLM", "Negotiate"], default="NTLM")
        sp.add_argument("--wrap", choices=["raw", "spnego"], default="raw",
                        help="Negotiate only: raw NTLM (TlRM...) or SPNEGO-wrapped NTLM (YI...)")
        sp.add_argument("--proxy", action="store_true", help="407 / Proxy-Authorization flavour")
        sp.add_argument("--count", type=int, default=1, help="runs (handshakes)")
        sp.add_argument("--parallel", type=int, default=1)
        sp.add_argument("--interval", type=float, default=0.0, help="pause between runs")
        sp.add_argument("--timeout", type=float, default=10.0)
        sp.add_argument("--anon-first", action="store_true", help="start with an anonymous request")
        sp.add_argument("--then", type=int, default=0, help="keepalive: requests without credentials after auth")
        sp.add_argument("--then-interval", type=float, default=0.0)
        sp.add_argument("--type3-wait", metavar="FILE",
                        help="keepalive: after the challenge, wait until FILE exists before the Type-3")
        sp.add_argument("--give-up", action="store_true",
                        help="http10: stop after the challenge, no Type-3 (abandoned_challenge)")
        sp.add_argument("--hold", type=float, default=0.0, help="abandon: keep the connection open SECS")
        sp.add_argument("--form", choices=["spnego", "krb5"], default="spnego", help="kerberos token form")
        sp.add_argument("--requests", type=int, default=1, help="anon: requests on the connection")
        sp.add_argument("--first-path", help="anon: path of the first request (e.g. an anonymous folder)")
        sp.add_argument("--workstation", help="NetBIOS workstation name sent in the Type-1/3")
        sp.add_argument("--realm", default="LAB.TEST", help="Kerberos realm of --user")
        sp.add_argument("--ccache-dir", help="where each run's private credential cache goes (default: a temp dir)")
        sp.add_argument("--fallback", choices=["no-ticket", "spn"], default="no-ticket",
                        help="negotiate-fallback: why Kerberos is not possible")
        sp.add_argument("--fallback-spn-host", default="nokrb.lab.test",
                        help="negotiate-fallback --fallback spn: a host name without an SPN in the KDC")

    for name in FLOWS:
        common(sub.add_parser(name))
    d = sub.add_parser("drive")
    common(d)
    d.add_argument("--mix", default="keepalive,keepalive,reconnect,http10,abandon,kerberos")
    d.add_argument("--duration", type=float, default=0.0, help="seconds; 0 = until interrupted")
    d.add_argument("--shuffle", action="store_true")
    d.add_argument("--seed", type=int, default=6)

    args = p.parse_args()
    args.auth_header = "Proxy-Authorization" if args.proxy else "Authorization"
    args.challenge_header = "Proxy-Authenticate" if args.proxy else "WWW-Authenticate"
    if args.workstation:
        os.environ["NETBIOS_COMPUTER_NAME"] = args.workstation
    tmp = None
    if not args.ccache_dir:
        tmp = tempfile.TemporaryDirectory(prefix="nta-ccache-")
        args.ccache_dir = tmp.name
    kerberos_kinds = args.cmd.startswith("negotiate") or args.cmd.startswith("curl")
    if args.cmd == "drive":
        kerberos_kinds = "negotiate" in args.mix
    if args.spn_host is None and kerberos_kinds:
        args.spn_host = "www.lab.test"
    # Never the user's default ticket cache: a private, empty one for anything not kinit'ed.
    os.environ["KRB5CCNAME"] = "FILE:" + os.path.join(args.ccache_dir, "default-%d" % os.getpid())
    try:
        if args.cmd == "drive":
            return cmd_drive(args)
        return cmd_single(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
