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

# Bare GSS-API Kerberos AP-REQ framing (KRB5 OID 1.2.840.113554.1.2.2), body truncated.
krb = bytes([0x06, 0x09, 0x2A, 0x86, 0x48, 0x86, 0xF7, 0x12, 0x01, 0x02, 0x02, 0x01, 0x00,
             0x6E, 0x03, 0x02, 0x01, 0x05])
put("spnego_bytes", bytes([0x60, len(krb)]) + krb)
put("header_value", b"WWW-Authenticate\nBasic realm=\"a, b\", Negotiate, NTLM")
