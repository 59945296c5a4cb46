#!/usr/bin/env python3
"""Rebuild the committed seed corpus from tests/fixtures/*.txt (plus a synthetic Kerberos
token): corpus/header_value (name\\nvalue), corpus/ntlm_bytes, corpus/spnego_bytes."""
import base64
import glob
import hashlib
import os

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "tests", "fixtures")


def put(target, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
        f.write(data)


KRB5_OID = bytes([0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x12, 0x01, 0x02, 0x02])


def der_len(b):
    """Total length of the DER element at the start of b."""
    n = b[1]
    if n < 0x80:
        return 2 + n
    k = n - 0x80
    return 2 + k + int.from_bytes(b[2:2 + k], "big")


def find_kerberos(tok):
    """The Kerberos message after the krb5 OID and a TOK_ID, if any."""
    i = 0
    while True:
        i = tok.find(KRB5_OID, i)
        if i < 0:
            return None
        at = i + len(KRB5_OID) + 2
        if tok[at - 2:at] in (b"\x01\x00", b"\x02\x00", b"\x03\x00") and tok[at:at + 1] in (
                b"\x6e", b"\x6f", b"\x7e"):
            return tok[at:at + der_len(tok[at:])]
        i += 1


def find_ntlm(tok):
    i = tok.find(b"NTLMSSP\0")
    return tok[i:] if i >= 0 else None


for path in sorted(glob.glob(os.path.join(fixtures, "*.txt"))):
    for line in open(path, encoding="utf-8"):
        if line[:2] not in ("C ", "S "):
            continue
        name, _, value = line[2:].rstrip("\n").partition(": ")
        put("header_value", ("%s\n%s" % (name, value)).encode())
        if " " not in value:
            continue
        tok = base64.b64decode(value.split(" ", 1)[1])
        if tok.startswith(b"NTLMSSP\0"):
            put("ntlm_bytes", tok)
        else:
            put("spnego_bytes", tok)
            inner = find_ntlm(tok)
            if inner:
                put("ntlm_bytes", inner)
            krb = find_kerberos(tok)
            if krb:
                put("kerberos_der", krb)

# Bare GSS-API Kerberos AP-REQ framing (KRB5 OID 1.2.840.113554.1.2.2), body truncated.
krb = bytes([0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00,
             0x6E, 0x03, 0x02, 0x01, 0x05])
put("spnego_bytes", bytes([0x60, len(krb)]) + krb)
put("header_value", b"WWW-Authenticate\nBasic realm=\"a, b\", Negotiate, NTLM")


# A hand-built KRB-ERROR with every optional field (crealm, cname, e-text, e-data), which the
# MIT lab acceptor does not send.
def tlv(tag, value):
    n = len(value)
    head = bytes([n]) if n < 0x80 else bytes([0x81, n]) if n < 0x100 else bytes([0x82, n >> 8, n & 0xFF])
    return bytes([tag]) + head + value


def ctx(n, v):
    return tlv(0xA0 | n, v)


def integer(n):
    return tlv(0x02, n.to_bytes((n.bit_length() + 8) // 8 or 1, "big", signed=True))


def principal(t, parts):
    return tlv(0x30, ctx(0, integer(t)) + ctx(1, tlv(0x30, b"".join(tlv(0x1B, p) for p in parts))))


err = (ctx(0, integer(5)) + ctx(1, integer(30)) + ctx(2, tlv(0x18, b"20260102030404Z"))
       + ctx(3, integer(7)) + ctx(4, tlv(0x18, b"20260102030405Z")) + ctx(5, integer(123456))
       + ctx(6, integer(7)) + ctx(7, tlv(0x1B, b"CORP.EXAMPLE")) + ctx(8, principal(1, [b"alice"]))
       + ctx(9, tlv(0x1B, b"CORP.EXAMPLE")) + ctx(10, principal(2, [b"HTTP", b"web.corp.example"]))
       + ctx(11, tlv(0x1B, b"no such principal")) + ctx(12, tlv(0x04, b"\x30\x00")))
put("kerberos_der", tlv(0x7E, tlv(0x30, err)))
