"""Client-side encryption of backup files: chunked AES-256-GCM (the STREAM construction).

Why this and not age or gpg: Debian's age 1.1 reads a passphrase only from a terminal, and an
age identity derived from the stack secret would still need code of our own; gpg's symmetric
mode authenticates only at the very end of the stream and cannot tell a wrong key from a damaged
file. Here every 1 MiB chunk is sealed with AES-GCM from ``cryptography`` (a maintained library,
OpenSSL underneath) under a nonce made of a random prefix, the chunk counter and a last-chunk
flag, the construction age and Tink use for streams: reordered, dropped or truncated chunks fail
authentication, and nothing unauthenticated is ever written out.

File layout: header = MAGIC | salt (16) | nonce prefix (7) | key check (16); then the chunks,
each plaintext chunk + 16-byte tag, the last one possibly shorter (an empty file is one empty
final chunk). The file key is HKDF-SHA256(master key, salt), so nonces never repeat across
files; the key check (HMAC of the file key) separates "wrong key" from "damaged file".
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Iterator
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"GEMNARB1"
CHUNK = 1 << 20
TAG = 16
_SALT = 16
_PREFIX = 7
_CHECK = 16
HEADER_SIZE = len(MAGIC) + _SALT + _PREFIX + _CHECK


class DecryptError(Exception):
    """A file that cannot be decrypted: the message says whether the key or the data is bad."""


def master_key_from_secret(secret: str) -> bytes:
    """The 32-byte master key from the backup secret delivered to the host (hex or text)."""
    if len(secret) < 32:
        raise ValueError("the backup encryption secret is shorter than 32 characters")
    return hashlib.sha256(b"gemnar-backup-master/" + secret.encode()).digest()


def _file_key(master: bytes, salt: bytes) -> bytes:
    return HKDF(hashes.SHA256(), 32, salt, b"gemnar-backup v1 file key").derive(master)


def _key_check(file_key: bytes) -> bytes:
    return hmac.new(file_key, b"gemnar-backup key check", hashlib.sha256).digest()[:_CHECK]


def _nonce(prefix: bytes, counter: int, last: bool) -> bytes:
    if counter >= 1 << 32:
        raise ValueError("file too large for one stream (4 PiB)")
    return prefix + counter.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _read_full(source: BinaryIO, size: int) -> bytes:
    parts = []
    remaining = size
    while remaining:
        part = source.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def encrypt_stream(master: bytes, source: BinaryIO, sink: BinaryIO) -> None:
    """Encrypt everything ``source`` yields into ``sink``."""
    salt, prefix = os.urandom(_SALT), os.urandom(_PREFIX)
    key = _file_key(master, salt)
    header = MAGIC + salt + prefix + _key_check(key)
    sink.write(header)
    aead = AESGCM(key)
    counter = 0
    current = _read_full(source, CHUNK)
    while True:
        following = _read_full(source, CHUNK) if len(current) == CHUNK else b""
        last = not following
        sink.write(aead.encrypt(_nonce(prefix, counter, last), current, header))
        if last:
            return
        counter += 1
        current = following


def decrypt_chunks(master: bytes, source: BinaryIO) -> Iterator[bytes]:
    """Authenticated plaintext chunks of an encrypted stream; raises ``DecryptError``."""
    header = _read_full(source, HEADER_SIZE)
    if len(header) < HEADER_SIZE or not header.startswith(MAGIC):
        raise DecryptError("not a gemnar backup file (bad or missing header)")
    salt = header[len(MAGIC) : len(MAGIC) + _SALT]
    prefix = header[len(MAGIC) + _SALT : len(MAGIC) + _SALT + _PREFIX]
    key = _file_key(master, salt)
    if not hmac.compare_digest(_key_check(key), header[-_CHECK:]):
        raise DecryptError(
            "wrong key: this backup was encrypted with another key (check the stack secret "
            "the backup key is derived from)"
        )
    aead = AESGCM(key)
    counter = 0
    current = _read_full(source, CHUNK + TAG)
    while True:
        following = _read_full(source, CHUNK + TAG) if len(current) == CHUNK + TAG else b""
        last = not following
        try:
            plain = aead.decrypt(_nonce(prefix, counter, last), current, header)
        except InvalidTag:
            where = f"chunk {counter}" + (" (the last one present)" if last else "")
            raise DecryptError(
                f"damaged or truncated data: authentication failed at {where}"
            ) from None
        yield plain
        if last:
            return
        counter += 1
        current = following


def decrypt_stream(master: bytes, source: BinaryIO, sink: BinaryIO) -> None:
    """Decrypt ``source`` into ``sink``; on ``DecryptError`` the sink holds only verified data
    and the caller must discard it."""
    for chunk in decrypt_chunks(master, source):
        sink.write(chunk)


def encrypted_size(plain_size: int) -> int:
    """The size of the encrypted file for a plaintext of ``plain_size`` bytes."""
    chunks = max(1, -(-plain_size // CHUNK))
    return HEADER_SIZE + plain_size + chunks * TAG
