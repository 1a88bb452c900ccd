#!/usr/bin/env python3
"""Decrypt one pgshroud-protected value without pgshroud (reference implementation).

Needs only the Python `cryptography` package (pip install cryptography). The format is
described in README.md, "Storage format and decrypting without pgshroud":

    envelope     = 0x02 | key version (u32 big-endian) | 4-byte context tag | 16-byte SIV
                   | ciphertext            (format 1, still read: no context tag, 0x01)
    context tag  = first 4 bytes of SHA-256("pgshroud/v2/context-tag/" + context)
    column key   = HKDF-SHA-256(ikm=master key, salt=none,
                                info="pgshroud/v1/column-key/" + context, length=64)
    value        = AES-256-SIV (RFC 5297), one associated-data element: the context (UTF-8)

  Per-tenant columns (format 3, needs --tenant-keys-dir):
    envelope     = 0x03 | tenant-key version (u32) | context tag | 8-byte tenant tag | SIV | ct
    tenant tag   = first 8 bytes of SHA-256("pgshroud/v3/tenant-tag/" + tenant id)
    tenant key   = AES-SIV-unwrap(KEK, <tenant-keys-dir>/<id>.toml [[versions]] wrapped,
                   AD = [tenant id, tenant-key version u32, master key version u32]),
                   KEK = HKDF-SHA-256(ikm=master key, info="pgshroud/v3/tenant-kek", length=64)
    column key   = HKDF-SHA-256(ikm=tenant key, info="pgshroud/v3/column-key/" + context, 64)
    value        = AES-256-SIV, associated data [context, tenant id]
  A forgotten tenant's file is a tombstone: its values cannot be decrypted (exit 1).

Usage:
    PGSHROUD_MASTER_KEY=<base64> pgshroud_decrypt.py <context> <hex envelope>
    pgshroud_decrypt.py --master-key-file key.b64 public.customers.email 0200000001...
    pgshroud_decrypt.py --keys-file keys.toml public.customers.email 0200000002...

The hex envelope may start with `\\x`, as psql prints bytea. With --master-key-file or
PGSHROUD_MASTER_KEY, that key must be the one of the envelope's key version (after a rotation,
the old master key for old rows). With --keys-file (pgshroud's keys file), the key of the
version the envelope names is loaded from its [[keys]] entry: file, env, command (sh -c), or
kms_key_id with wrapped/wrapped_file (KMS Decrypt through boto3, which must then be installed,
with the standard AWS credentials; kms_endpoint and kms_region are honoured). The plaintext is the
canonical form (e.g. an int8 is 8 big-endian bytes): it is printed as UTF-8 text, which suits
text columns; use --hex for other types.
"""

import argparse
import base64
import binascii
import os
import subprocess
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

import hashlib

FORMAT_V1 = 0x01
FORMAT_V2 = 0x02
FORMAT_V3 = 0x03
TENANT_TAG_LEN = 8
TENANT_TAG_PREFIX = b"pgshroud/v3/tenant-tag/"
TENANT_INFO_PREFIX = b"pgshroud/v3/column-key/"
TENANT_KEK_INFO = b"pgshroud/v3/tenant-kek"
VERSION_END = 1 + 4
CONTEXT_TAG_LEN = 4
SIV_LEN = 16
CONTEXT_TAG_PREFIX = b"pgshroud/v2/context-tag/"
INFO_PREFIX = b"pgshroud/v1/column-key/"


class DecryptError(Exception):
    """The envelope is malformed or does not authenticate; never carries key or plaintext."""


def parse_master_key(text):
    """`text` (str or bytes) is the base64 key; errors never show any of it."""
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise DecryptError("master key is not valid base64") from None
    if len(key) != 32:
        raise DecryptError(f"master key has the wrong length: expected 32 bytes, got {len(key)}")
    return key


def derive_column_key(master_key, context):
    hkdf = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                info=INFO_PREFIX + context.encode("utf-8"))
    return hkdf.derive(master_key)


def context_tag(context):
    return hashlib.sha256(CONTEXT_TAG_PREFIX + context.encode("utf-8")).digest()[:CONTEXT_TAG_LEN]


def tenant_tag(tenant):
    return hashlib.sha256(TENANT_TAG_PREFIX + tenant.encode("utf-8")).digest()[:TENANT_TAG_LEN]


def parse_envelope(stored):
    """Returns (key_version, context_tag or None, siv_and_ciphertext); format 1 and 2 only."""
    if not stored:
        raise DecryptError("stored value is empty, not a pgshroud envelope")
    if stored[0] == FORMAT_V3:
        raise DecryptError("a per-tenant (format 3) value: pass --tenant-keys-dir")
    if stored[0] == FORMAT_V2:
        header_len = VERSION_END + CONTEXT_TAG_LEN
        tag = stored[VERSION_END:header_len]
    elif stored[0] == FORMAT_V1:
        header_len, tag = VERSION_END, None
    else:
        raise DecryptError(f"stored value starts with format byte 0x{stored[0]:02x}, not 0x01 or 0x02")
    if len(stored) < header_len + SIV_LEN:
        raise DecryptError(f"stored value is {len(stored)} bytes, shorter than the "
                           f"{header_len + SIV_LEN}-byte minimum")
    return int.from_bytes(stored[1:VERSION_END], "big"), tag, stored[header_len:]


def decrypt(master_key, context, stored):
    """Plaintext bytes of `stored` (an envelope) sealed under `context` with `master_key`."""
    _version, tag, siv_and_ciphertext = parse_envelope(stored)
    if tag is not None and tag != context_tag(context):
        raise DecryptError(f"value was sealed for another key context than {context!r}")
    cipher = AESSIV(derive_column_key(master_key, context))
    try:
        # cryptography's AES-SIV takes and gives SIV || ciphertext, like the envelope body.
        return cipher.decrypt(siv_and_ciphertext, [context.encode("utf-8")])
    except InvalidTag:
        raise DecryptError(f"value does not decrypt under key context {context!r}: wrong "
                           "master key or key version, a value from another column, or tampered"
                           ) from None


def find_tenant(tenant_keys_dir, tag):
    """(tenant id, parsed file) of the tenant file in `tenant_keys_dir` whose id has `tag`."""
    import tomllib  # Python 3.11+

    for name in sorted(os.listdir(tenant_keys_dir)):
        if not name.endswith(".toml") or name.startswith("."):
            continue
        tenant = name[:-len(".toml")]
        if tenant_tag(tenant) != tag:
            continue
        with open(os.path.join(tenant_keys_dir, name), "rb") as f:
            try:
                return tenant, tomllib.load(f)
            except tomllib.TOMLDecodeError as err:
                raise DecryptError(f"tenant key file {name}: {err}") from None
    raise DecryptError(f"no tenant in {tenant_keys_dir} has tenant tag {tag.hex()}")


def unwrap_tenant_key(master_key, tenant, version, entry):
    kek = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
               info=TENANT_KEK_INFO).derive(master_key)
    ad = [tenant.encode("utf-8"), version.to_bytes(4, "big"),
          entry["master_key_version"].to_bytes(4, "big")]
    try:
        return AESSIV(kek).decrypt(base64.b64decode(entry["wrapped"]), ad)
    except (InvalidTag, ValueError, binascii.Error):
        raise DecryptError(f"tenant {tenant} key version {version} does not unwrap: wrong "
                           "master key (version), or the file was altered") from None


def decrypt_v3(context, stored, tenant_keys_dir, master_key_of):
    """Plaintext of a format-3 envelope; `master_key_of(version)` gives a master key."""
    head = 1 + 4 + CONTEXT_TAG_LEN
    if len(stored) < head + TENANT_TAG_LEN + SIV_LEN:
        raise DecryptError(f"stored value is {len(stored)} bytes, shorter than the format-3 minimum")
    version = int.from_bytes(stored[1:VERSION_END], "big")
    if stored[VERSION_END:head] != context_tag(context):
        raise DecryptError(f"value was sealed for another key context than {context!r}")
    tenant, data = find_tenant(tenant_keys_dir, stored[head:head + TENANT_TAG_LEN])
    if "forgotten_at" in data:
        raise DecryptError(f"tenant {tenant} was forgotten on {data['forgotten_at']}: its key "
                           "was destroyed, so its values cannot be decrypted")
    entries = [v for v in data.get("versions", []) if v.get("version") == version]
    if not entries:
        raise DecryptError(f"tenant {tenant} has no key version {version}")
    entry = entries[0]
    tenant_key = unwrap_tenant_key(master_key_of(entry["master_key_version"]), tenant,
                                   version, entry)
    column_key = HKDF(algorithm=hashes.SHA256(), length=64, salt=None,
                      info=TENANT_INFO_PREFIX + context.encode("utf-8")).derive(tenant_key)
    try:
        return AESSIV(column_key).decrypt(stored[head + TENANT_TAG_LEN:],
                                          [context.encode("utf-8"), tenant.encode("utf-8")])
    except InvalidTag:
        raise DecryptError(f"value does not decrypt under key context {context!r} for tenant "
                           f"{tenant}: a value from another column or tenant, or tampered") from None


def parse_hex(text):
    text = text.strip()
    if text.startswith("\\x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise DecryptError("envelope is not hex") from None


def read_master_key(args):
    if args.master_key_file:
        with open(args.master_key_file, "rb") as f:
            return parse_master_key(f.read())
    text = os.environ.get("PGSHROUD_MASTER_KEY")
    if text is None:
        raise DecryptError("no master key: set PGSHROUD_MASTER_KEY or pass --master-key-file")
    return parse_master_key(text)


def read_keys_file_key(path, version):
    """The master key of `version` from a pgshroud keys file."""
    import tomllib  # Python 3.11+

    with open(path, "rb") as f:
        try:
            keys = tomllib.load(f)
        except tomllib.TOMLDecodeError as err:
            raise DecryptError(f"keys file {path}: {err}") from None
    entries = [e for e in keys.get("keys", []) if e.get("version") == version]
    if not entries:
        raise DecryptError(f"keys file {path} has no [[keys]] entry for key version {version}, "
                           "the version this envelope was sealed with")
    entry = entries[0]
    where = f"key version {version}"
    if "file" in entry:
        with open(entry["file"], "rb") as f:
            return parse_master_key(f.read())
    if "env" in entry:
        text = os.environ.get(entry["env"])
        if text is None:
            raise DecryptError(f"{where}: environment variable {entry['env']} is not set")
        return parse_master_key(text)
    if "command" in entry:
        out = subprocess.run(["sh", "-c", entry["command"]], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, check=False)
        if out.returncode != 0:
            raise DecryptError(f"{where}: its command failed (exit {out.returncode})")
        return parse_master_key(out.stdout)
    if "kms_key_id" in entry:
        return unwrap_with_kms(entry, where)
    raise DecryptError(f"{where}: no file, env, command or kms_key_id")


def unwrap_with_kms(entry, where):
    try:
        import boto3
    except ImportError:
        raise DecryptError(f"{where} is wrapped by AWS KMS: install boto3 (pip install boto3)"
                           ) from None
    if "wrapped_file" in entry:
        with open(entry["wrapped_file"], "rb") as f:
            raw = f.read()
        try:
            blob = base64.b64decode(raw.strip(), validate=True)
        except binascii.Error:
            blob = raw
    else:
        blob = base64.b64decode(entry["wrapped"].strip())
    client = boto3.client("kms", endpoint_url=entry.get("kms_endpoint"),
                          region_name=entry.get("kms_region"))
    try:
        answer = client.decrypt(KeyId=entry["kms_key_id"], CiphertextBlob=blob)
    except Exception as err:  # botocore's errors name the KMS failure, never the key
        raise DecryptError(f"{where} (KMS key {entry['kms_key_id']}): {err}") from None
    return parse_master_key(base64.b64encode(answer["Plaintext"]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("context", help="key context, e.g. public.customers.email")
    parser.add_argument("envelope", help="stored bytea value in hex (psql's \\x... form is fine)")
    parser.add_argument("--master-key-file", help="file holding the base64 master key "
                        "(default: $PGSHROUD_MASTER_KEY)")
    parser.add_argument("--keys-file", help="pgshroud's keys file: the key of the envelope's "
                        "key version is taken from it")
    parser.add_argument("--tenant-keys-dir", help="pgshroud's tenant_keys_dir, for values of "
                        "per-tenant columns (format 3)")
    parser.add_argument("--hex", action="store_true", help="print the plaintext as hex")
    args = parser.parse_args(argv)
    try:
        stored = parse_hex(args.envelope)
        if stored[:1] == bytes([FORMAT_V3]) and args.tenant_keys_dir:
            def master_key_of(version):
                if args.keys_file:
                    return read_keys_file_key(args.keys_file, version)
                return read_master_key(args)
            plaintext = decrypt_v3(args.context, stored, args.tenant_keys_dir, master_key_of)
        elif args.keys_file:
            version, _tag, _rest = parse_envelope(stored)
            master_key = read_keys_file_key(args.keys_file, version)
            plaintext = decrypt(master_key, args.context, stored)
        else:
            plaintext = decrypt(read_master_key(args), args.context, stored)
    except (DecryptError, OSError) as err:
        print(f"pgshroud_decrypt: {err}", file=sys.stderr)
        return 1
    if args.hex:
        print(plaintext.hex())
        return 0
    try:
        print(plaintext.decode("utf-8"))
    except UnicodeDecodeError:
        print("pgshroud_decrypt: plaintext is not UTF-8 text (a non-text column?); "
              "use --hex", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
