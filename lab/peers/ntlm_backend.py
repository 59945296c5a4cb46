#!/usr/bin/env python3
"""IIS/HTTP.sys-like NTLM/Negotiate acceptor for the ntlm-affinity lab.

Behaviour (what the lab relies on):
  * The security context lives on the TCP connection (like HTTP.sys kernel-mode auth).
  * Anonymous request on an unauthenticated connection -> 401 with
    `WWW-Authenticate: Negotiate` and `WWW-Authenticate: NTLM`.
  * Type-1 -> 401 with the Type-2; Type-3 -> 200 (or 401 with a reason in the log).
  * Once a connection is authenticated, later requests on it *without* credentials are
    served as that user (IIS authPersistNonNTLM / NTLM connection auth): the
    auth_context_reuse risk. `--persist-single-request` re-challenges instead.
  * `--kerberos`: a real Kerberos `Negotiate` token (SPNEGO or raw GSS krb5) is accepted
    with the keytab of KRB5_KTNAME (one round trip, `client_principal` is the user).
    `--persistent-auth on|off|single-request` is IIS's authPersistNonNTLM /
    authPersistSingleRequest: `on` keeps the Kerberos logon on the connection and answers
    `Persistent-Auth: true`; `off` answers `Persistent-Auth: false` and keeps nothing (an
    anonymous request on that connection gets a 401); `single-request` keeps no logon for
    any scheme (NTLM included): every request re-authenticates.
  * Threaded, HTTP/1.1 keep-alive, honours HTTP/1.0 and `Connection: close`.

Ground truth: one JSON line per outcome in --log (see README in this directory for the
fields). Never logs NT/LM responses, session keys, MICs or raw tokens: only names,
message types, the challenge's MsvAvTimestamp (public, on the wire in the Type-2) and
the outcome.

Accounts come from NTLM_USER_FILE (lines `DOMAIN:USER:PASSWORD`, lab accounts only).
"""

from __future__ import annotations

import argparse
import base64
import datetime as _dt
import http.server
import itertools
import json
import os
import socket
import struct
import sys
import threading
import typing

import spnego
import spnego.exceptions

NTLMSSP = b"NTLMSSP\x00"
KRB5_OIDS = (
    bytes.fromhex("06092a864886f712010202"),  # 1.2.840.113554.1.2.2 (Kerberos 5)
    bytes.fromhex("06092a864882f712010202"),  # 1.2.840.48018.1.2.2 (MS Kerberos 5)
)
AV_NB_COMPUTER = 1
AV_NB_DOMAIN = 2
AV_DNS_COMPUTER = 3
AV_TIMESTAMP = 7
AV_TARGET_NAME = 9
AV_CHANNEL_BINDINGS = 10

HOSTNAME = socket.gethostname()
NB_NAME = HOSTNAME.upper()


# --------------------------------------------------------------------------- NTLM parsing
def _field(msg: bytes, at: int) -> bytes:
    """A (len u16, maxlen u16, offset u32) payload field, bounds-checked."""
    if len(msg) < at + 8:
        return b""
    length, _maxlen, offset = struct.unpack_from("<HHI", msg, at)
    if offset + length > len(msg):
        return b""
    return msg[offset : offset + length]


def ntlm_type(raw: bytes) -> typing.Optional[int]:
    """NTLM message type of a raw token or of the NTLM message inside a SPNEGO token."""
    i = raw.find(NTLMSSP)
    if i < 0 or len(raw) < i + 12:
        return None
    return struct.unpack_from("<I", raw, i + 8)[0]


def ntlm_message(raw: bytes) -> bytes:
    i = raw.find(NTLMSSP)
    return raw[i:] if i >= 0 else b""


def av_pairs(data: bytes) -> typing.Dict[int, bytes]:
    out: typing.Dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(data):
        av_id, av_len = struct.unpack_from("<HH", data, pos)
        pos += 4
        if av_id == 0:
            break
        if pos + av_len > len(data):
            break
        out.setdefault(av_id, data[pos : pos + av_len])
        pos += av_len
    return out


def _u16(b: typing.Optional[bytes]) -> typing.Optional[str]:
    if b is None:
        return None
    try:
        return b.decode("utf-16-le")
    except UnicodeDecodeError:
        return None


def _text(msg: bytes, b: bytes) -> str:
    flags = struct.unpack_from("<I", msg, 60)[0] if len(msg) >= 64 else 1
    if flags & 1:
        try:
            return b.decode("utf-16-le")
        except UnicodeDecodeError:
            return ""
    return b.decode("latin-1")


def challenge_info(type2: bytes) -> typing.Dict[str, typing.Any]:
    """Names + timestamp from a Type-2 we issued (for the log)."""
    m = ntlm_message(type2)
    av = av_pairs(_field(m, 40))
    ts = av.get(AV_TIMESTAMP)
    return {
        "nb_computer_name": _u16(av.get(AV_NB_COMPUTER)),
        "timestamp": struct.unpack("<Q", ts)[0] if ts and len(ts) == 8 else None,
    }


def authenticate_info(type3: bytes) -> typing.Dict[str, typing.Any]:
    """Public facts of a Type-3: user, domain, workstation, and -- for NTLMv2 -- the server
    names and MsvAvTimestamp of the challenge it answers. Credential material (NT/LM
    responses, session key, MIC) is read only to find the AV pairs and never returned."""
    m = ntlm_message(type3)
    info: typing.Dict[str, typing.Any] = {
        "user": _text(m, _field(m, 36)),
        "domain": _text(m, _field(m, 28)),
        "workstation": _text(m, _field(m, 44)),
        "ntlm_version": None,
        "challenge_server": None,
        "challenge_dns": None,
        "challenge_ts": None,
        "target_name": None,
        "channel_bindings": False,
    }
    nt = _field(m, 20)
    if len(nt) == 24:
        info["ntlm_version"] = 1
    elif len(nt) > 16 + 28:
        info["ntlm_version"] = 2
        av = av_pairs(nt[16 + 28 :])
        info["challenge_server"] = _u16(av.get(AV_NB_COMPUTER))
        info["challenge_dns"] = _u16(av.get(AV_DNS_COMPUTER))
        ts = av.get(AV_TIMESTAMP)
        info["challenge_ts"] = struct.unpack("<Q", ts)[0] if ts and len(ts) == 8 else None
        info["target_name"] = _u16(av.get(AV_TARGET_NAME))
        cb = av.get(AV_CHANNEL_BINDINGS)
        info["channel_bindings"] = bool(cb and cb != b"\x00" * 16)
    return info


def looks_kerberos(raw: bytes) -> bool:
    return NTLMSSP not in raw and any(oid in raw[:64] for oid in KRB5_OIDS)


SPNEGO_OID = bytes.fromhex("06062b0601050502")
MECH_NAMES = {
    "1.2.840.113554.1.2.2": "kerberos",
    "1.2.840.48018.1.2.2": "ms-kerberos",
    "1.3.6.1.4.1.311.2.2.10": "ntlm",
    "1.3.6.1.4.1.311.2.2.30": "negoex",
}


def spnego_mechs(raw: bytes) -> typing.Optional[typing.List[str]]:
    """The mechTypes a SPNEGO NegTokenInit offers (names; OIDs when unknown), else None."""
    if not raw.startswith(b"\x60") or SPNEGO_OID not in raw[:16]:
        return None
    try:
        from spnego._spnego import NegTokenInit, unpack_token  # noqa: PLC0415

        tok = unpack_token(raw)
    except Exception:  # malformed input: the field is informative only
        return None
    if not isinstance(tok, NegTokenInit):
        return None
    return [MECH_NAMES.get(m, m) for m in tok.mech_types]


# --------------------------------------------------------------------------- ground truth
class TruthLog:
    def __init__(self, path: str) -> None:
        self._lock = threading.Lock()
        self._fd = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, **rec: typing.Any) -> None:
        now = _dt.datetime.now(_dt.timezone.utc)
        line = {"ts": now.isoformat(timespec="microseconds").replace("+00:00", "Z"), "server": HOSTNAME}
        line.update(rec)
        data = json.dumps(line, sort_keys=False, separators=(",", ":"))
        with self._lock:
            self._fd.write(data + "\n")
            self._fd.flush()


# challenge MsvAvTimestamp -> connection that received it (this server only); lets the
# log say which connection a connection_split Type-3 should have used.
CHALLENGES: typing.Dict[int, str] = {}
CHALLENGES_LOCK = threading.Lock()
CONN_IDS = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Microsoft-IIS/10.0"
    sys_version = ""

    # set by main()
    truth: TruthLog
    args: argparse.Namespace

    # ---------------------------------------------------------------- per-connection state
    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn_id = next(CONN_IDS)
        self.peer = "%s:%d" % self.client_address[:2]
        self.ctx: typing.Any = None  # pyspnego acceptor of the handshake in progress
        self.ctx_scheme: typing.Optional[str] = None
        self.pending: typing.Optional[typing.Dict[str, typing.Any]] = None  # our Type-2
        self.auth_user: typing.Optional[str] = None
        self.auth_client: typing.Optional[typing.Tuple[typing.Optional[str], typing.Optional[str]]] = None
        self.auth_scheme: typing.Optional[str] = None
        self.auth_kind: typing.Optional[str] = None  # "ntlm" | "kerberos" of the logon
        self.req_no = 0

    def log_message(self, format: str, *args: typing.Any) -> None:  # noqa: A002
        if self.args.verbose:
            sys.stderr.write("%s %s\n" % (self.peer, format % args))

    # ---------------------------------------------------------------- helpers
    @property
    def auth_header(self) -> str:
        return "Proxy-Authorization" if self.args.proxy_auth else "Authorization"

    @property
    def challenge_header(self) -> str:
        return "Proxy-Authenticate" if self.args.proxy_auth else "WWW-Authenticate"

    @property
    def deny_status(self) -> int:
        return 407 if self.args.proxy_auth else 401

    def _drain_body(self) -> None:
        length = self.headers.get("Content-Length")
        if length:
            try:
                n = int(length)
            except ValueError:
                n = 0
            while n > 0:
                chunk = self.rfile.read(min(n, 65536))
                if not chunk:
                    break
                n -= len(chunk)

    def _reply(self, status: int, body: str, auth_values: typing.Sequence[str] = (),
               extra: typing.Sequence[typing.Tuple[str, str]] = ()) -> None:
        data = body.encode()
        self.send_response(status)
        for v in auth_values:
            self.send_header(self.challenge_header, v)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-NTA-Server", HOSTNAME)
        if self.close_connection:
            self.send_header("Connection", "close")
        elif self.request_version == "HTTP/1.0":
            self.send_header("Connection", "keep-alive")
        # Headers and body go out in one write (one segment, like HTTP.sys) when the
        # request is done -- after its ground-truth line is written, so that a client that
        # has its response can rely on the log containing it.
        self._headers_buffer.append(b"\r\n")
        if self.command != "HEAD":
            self._headers_buffer.append(data)

    def _offer(self) -> typing.List[str]:
        return ["Negotiate", "NTLM"]

    def _client(self) -> typing.Tuple[typing.Optional[str], typing.Optional[str]]:
        return self.headers.get("X-Forwarded-For"), self.headers.get("X-Client-Port")

    def _log(self, outcome: str, status: int, **extra: typing.Any) -> None:
        xff, cport = self._client()
        rec: typing.Dict[str, typing.Any] = {
            "conn": self.peer,
            "conn_id": self.conn_id,
            "req_no": self.req_no,
            "xff": xff,
            "client_port": cport,
            "method": self.command,
            "path": self.path,
            "http_version": self.request_version,
            "outcome": outcome,
            "status": status,
        }
        rec.update(extra)
        self.truth.write(**rec)

    def _reset_ctx(self) -> None:
        self.ctx = None
        self.ctx_scheme = None
        self.pending = None

    # ---------------------------------------------------------------- request handling
    def do_GET(self) -> None:
        try:
            self._handle()
        finally:
            self.flush_headers()

    do_POST = do_GET
    do_HEAD = do_GET
    do_PUT = do_GET
    do_OPTIONS = do_GET

    def _handle(self) -> None:
        self.req_no += 1
        self._drain_body()
        if self.path == "/nta-health":
            self._reply(200, "ok\n")
            return

        value = (self.headers.get(self.auth_header) or "").strip()
        scheme, _, token_b64 = value.partition(" ")
        scheme_l = scheme.lower()

        if scheme_l not in ("ntlm", "negotiate") or not token_b64.strip():
            if self.args.anonymous_path and self.path.startswith(self.args.anonymous_path):
                # IIS anonymous authentication on this folder: served as nobody, whatever the
                # connection's logon; the connection's state is left alone.
                self._reply(200, "hello anonymous from %s\n" % HOSTNAME)
                self._log("anonymous_allowed", 200)
                return
            self._no_credentials(scheme or None)
            return
        canon = "NTLM" if scheme_l == "ntlm" else "Negotiate"
        try:
            raw = base64.b64decode(token_b64.strip(), validate=True)
        except (ValueError, base64.binascii.Error):
            self._reset_ctx()
            self._reply(self.deny_status, "invalid token\n", self._offer())
            self._log("failure", self.deny_status, scheme=canon, reason="invalid_base64")
            return

        mtype = ntlm_type(raw)
        mech = "ntlm" if raw.startswith(NTLMSSP) else ("spnego-ntlm" if mtype is not None else "other")
        if canon == "Negotiate" and looks_kerberos(raw) and self.args.kerberos:
            self._kerberos(raw)
            return
        if canon == "Negotiate" and looks_kerberos(raw):
            # No KDC / keytab in this lab: like IIS without a usable SPN, refuse with a fresh
            # offer. Stateless: no context is created, nothing about the connection changes.
            self._reply(self.deny_status, "kerberos not available\n", self._offer())
            self._log("failure", self.deny_status, scheme=canon, mech="kerberos", reason="kerberos_not_configured")
            return

        if mtype == 1 or (mtype is None and canon == "Negotiate"):
            self._type1(canon, raw, mech, mtype)
        elif mtype == 3:
            self._type3(canon, raw, mech)
        else:
            self._reset_ctx()
            self._reply(self.deny_status, "unexpected token\n", self._offer())
            self._log("failure", self.deny_status, scheme=canon, mech=mech, ntlm_type=mtype, reason="unexpected_message")

    def _no_credentials(self, scheme: typing.Optional[str]) -> None:
        if self.auth_user is not None and self.args.persistent_auth != "single-request":
            xff, cport = self._client()
            auth_xff, auth_cport = self.auth_client or (None, None)
            same = xff == auth_xff and (cport is None or auth_cport is None or cport == auth_cport)
            self._reply(200, "hello %s from %s (connection context)\n" % (self.auth_user, HOSTNAME))
            self._log(
                "reused_context",
                200,
                user=self.auth_user,
                scheme=self.auth_scheme,
                auth_scheme=self.auth_kind,
                realm=self.auth_realm(),
                persisted_logon=True,
                auth_xff=auth_xff,
                auth_client_port=auth_cport,
                same_client=same,
            )
            return
        self._reset_ctx()
        self._reply(self.deny_status, "authentication required\n", self._offer())
        self._log("anonymous", self.deny_status, reason="no_credentials", offered_scheme=scheme)

    def auth_realm(self) -> typing.Optional[str]:
        if self.auth_kind == "kerberos" and self.auth_user and "@" in self.auth_user:
            return self.auth_user.rpartition("@")[2]
        return None

    def _forget_logon(self) -> None:
        self.auth_user = None
        self.auth_client = None
        self.auth_kind = None

    def _kerberos(self, raw: bytes) -> None:
        """A Kerberos AP-REQ (in SPNEGO or raw): one round trip, no state between requests
        except the logon IIS keeps on the connection when authPersistNonNTLM is on."""
        self._reset_ctx()
        self._forget_logon()
        facts: typing.Dict[str, typing.Any] = {"scheme": "Negotiate", "mech": "kerberos", "auth_scheme": "kerberos"}
        mechs = spnego_mechs(raw)
        if mechs is not None:
            facts["spnego_mechs"] = mechs
        try:
            ctx = spnego.server(service="HTTP", protocol="negotiate")
            out = ctx.step(raw)
        except Exception as exc:  # gssapi / pyspnego raise many types; never log the token
            facts["reason"] = "kerberos_failed"
            facts["detail"] = type(exc).__name__
            self._fail(facts)
            return
        if not ctx.complete or not ctx.client_principal:
            facts["reason"] = "incomplete"
            self._fail(facts)
            return
        principal = str(ctx.client_principal)
        persist = self.args.persistent_auth == "on"
        value = "true" if persist else "false"
        if persist:
            self.auth_user = principal
            self.auth_client = self._client()
            self.auth_scheme = "Negotiate"
            self.auth_kind = "kerberos"
        facts.update(user=principal, realm=principal.rpartition("@")[2] or None, persistent_auth=value)
        values = ["Negotiate %s" % base64.b64encode(out).decode()] if out else []
        self._reply(200, "hello %s from %s\n" % (principal, HOSTNAME), values, [("Persistent-Auth", value)])
        self._log("success", 200, **facts)

    def _type1(self, canon: str, raw: bytes, mech: str, mtype: typing.Optional[int]) -> None:
        # A new handshake on a connection drops any previous logon of the connection.
        self._reset_ctx()
        self._forget_logon()
        mechs = spnego_mechs(raw)
        protocol = "ntlm" if canon == "NTLM" else "negotiate"
        try:
            ctx = spnego.server(service="HTTP", protocol=protocol)
            out = ctx.step(raw)
        except Exception as exc:  # pyspnego raises several exception types
            self._reply(self.deny_status, "bad negotiate\n", self._offer())
            self._log("failure", self.deny_status, scheme=canon, mech=mech, ntlm_type=mtype,
                      reason="invalid_negotiate", detail=type(exc).__name__)
            return
        if not out:
            self._reply(self.deny_status, "no challenge\n", self._offer())
            self._log("failure", self.deny_status, scheme=canon, mech=mech, ntlm_type=mtype, reason="no_challenge")
            return
        info = challenge_info(out)
        self.ctx, self.ctx_scheme = ctx, canon
        self.pending = info
        if info["timestamp"] is not None:
            with CHALLENGES_LOCK:
                CHALLENGES[info["timestamp"]] = "%s#%d" % (self.peer, self.conn_id)
                if len(CHALLENGES) > 200000:
                    CHALLENGES.clear()
        self._reply(self.deny_status, "challenge\n", ["%s %s" % (canon, base64.b64encode(out).decode())])
        extra = {"spnego_mechs": mechs} if mechs is not None else {}
        self._log("challenge", self.deny_status, scheme=canon, mech=mech, ntlm_type=1, auth_scheme="ntlm",
                  challenge_server=info["nb_computer_name"], challenge_ts=info["timestamp"], **extra)

    def _type3(self, canon: str, raw: bytes, mech: str) -> None:
        info = authenticate_info(raw)
        user = "%s\\%s" % (info["domain"], info["user"]) if info["domain"] else info["user"]
        pending = self.pending
        ctx, ctx_scheme = self.ctx, self.ctx_scheme
        self._reset_ctx()
        self._forget_logon()
        facts = {
            "scheme": canon,
            "mech": mech,
            "auth_scheme": "ntlm",
            "ntlm_type": 3,
            "user": user,
            "workstation": info["workstation"],
            "ntlm_version": info["ntlm_version"],
            "challenge_server": info["challenge_server"],
            "challenge_ts": info["challenge_ts"],
        }
        if info["channel_bindings"]:
            facts["channel_bindings"] = True

        answers_ours = (
            pending is not None
            and info["challenge_ts"] is not None
            and info["challenge_ts"] == pending["timestamp"]
            and (info["challenge_server"] or "").upper() == (pending["nb_computer_name"] or "").upper()
        )
        if ctx is None or not answers_ours and info["ntlm_version"] == 2:
            self._split_failure(facts, pending)
            return
        if ctx_scheme != canon:
            facts["reason"] = "scheme_changed"
            self._fail(facts)
            return
        try:
            out = ctx.step(raw)
        except spnego.exceptions.SpnegoError as exc:
            msg = str(exc)
            if "Failed to find any matching credential" in msg:
                facts["reason"] = "unknown_user"
            elif "Invalid NTLM response" in msg:
                facts["reason"] = "bad_password" if answers_ours else "invalid_token"
            elif "MIC" in msg:
                facts["reason"] = "bad_mic"
            elif "bindings" in msg.lower():
                facts["reason"] = "channel_binding_mismatch"
            else:
                facts["reason"] = "invalid_token"
            facts["detail"] = type(exc).__name__
            self._fail(facts)
            return
        except Exception as exc:  # malformed input can raise struct/Value errors
            facts["reason"] = "invalid_token"
            facts["detail"] = type(exc).__name__
            self._fail(facts)
            return
        if not ctx.complete:
            facts["reason"] = "incomplete"
            self._fail(facts)
            return
        principal = ctx.client_principal or user
        self.auth_user = principal
        self.auth_client = self._client()
        self.auth_scheme = canon
        self.auth_kind = "ntlm"
        facts["user"] = principal
        values = ["%s %s" % (canon, base64.b64encode(out).decode())] if out else []
        if self.args.persistent_auth == "single-request":
            # authPersistSingleRequest: the logon covers this request only.
            self._forget_logon()
        self._reply(200, "hello %s from %s\n" % (principal, HOSTNAME), values)
        self._log("success", 200, **facts)

    def _split_failure(self, facts: typing.Dict[str, typing.Any], pending: typing.Optional[dict]) -> None:
        """A Type-3 this connection did not challenge: IIS answers 401 1 2148074248
        (SEC_E_INVALID_TOKEN). Say which server/connection issued the challenge."""
        server = facts["challenge_server"]
        facts["win32_status"] = 2148074248
        facts["pending_challenge"] = pending is not None
        if server is None:
            facts["reason"] = "no_challenge_on_connection" if pending is None else "challenge_unknown"
            facts["split"] = None
        elif server.upper() != NB_NAME:
            facts["reason"] = "challenge_from_other_server"
            facts["split"] = "server"
        else:
            facts["reason"] = "challenge_from_other_connection"
            facts["split"] = "connection"
            with CHALLENGES_LOCK:
                facts["challenge_conn"] = CHALLENGES.get(facts["challenge_ts"] or -1)
        self._fail(facts)

    def _fail(self, facts: typing.Dict[str, typing.Any]) -> None:
        self._reply(self.deny_status, "logon failed\n", self._offer())
        self._log("failure", self.deny_status, **facts)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", default="0.0.0.0")
    p.add_argument("--port", type=int, default=80)
    p.add_argument("--log", required=True, help="ground-truth NDJSON file (appended)")
    p.add_argument("--proxy-auth", action="store_true", help="behave like a proxy: 407 / Proxy-Authenticate")
    p.add_argument("--persist-single-request", action="store_true",
                   help="IIS authPersistSingleRequest: re-challenge every request on an authenticated connection "
                        "(same as --persistent-auth single-request)")
    p.add_argument("--persistent-auth", choices=["on", "off", "single-request"], default="on",
                   help="on: IIS default (authPersistNonNTLM=true, Kerberos logon kept, Persistent-Auth: true); "
                        "off: authPersistNonNTLM=false (Kerberos logon not kept, Persistent-Auth: false); "
                        "single-request: authPersistSingleRequest=true (no logon kept for any scheme)")
    p.add_argument("--anonymous-path", metavar="PREFIX",
                   help="requests without credentials under PREFIX are served 200 anonymously "
                        "(IIS anonymous authentication on a folder, e.g. /public)")
    p.add_argument("--kerberos", action="store_true",
                   help="accept real Kerberos Negotiate tokens with the keytab of KRB5_KTNAME")
    p.add_argument("--ready-file", help="touch this file once listening")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args()
    if args.persist_single_request:
        args.persistent_auth = "single-request"

    if not os.environ.get("NTLM_USER_FILE"):
        print("ntlm_backend: NTLM_USER_FILE is not set", file=sys.stderr)
        return 2
    if args.kerberos and not os.environ.get("KRB5_KTNAME"):
        print("ntlm_backend: --kerberos needs KRB5_KTNAME (the service keytab)", file=sys.stderr)
        return 2
    Handler.truth = TruthLog(args.log)
    Handler.args = args
    srv = Server((args.bind, args.port), Handler)
    print("ntlm_backend %s listening on %s:%d" % (HOSTNAME, args.bind, args.port), file=sys.stderr, flush=True)
    if args.ready_file:
        with open(args.ready_file, "w", encoding="utf-8") as fd:
            fd.write(str(os.getpid()))
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
