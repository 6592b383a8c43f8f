"""The encrypted file format: round trips at every size that matters, and every way a file can
be wrong is refused with a message saying which (wrong key, damage, truncation)."""

from __future__ import annotations

import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backups import crypto
from backups.crypto import CHUNK, DecryptError, decrypt_stream, encrypt_stream, encrypted_size

KEY = crypto.master_key_from_secret("k" * 40)
OTHER = crypto.master_key_from_secret("o" * 40)


def seal(data: bytes, key: bytes = KEY) -> bytes:
    sink = io.BytesIO()
    encrypt_stream(key, io.BytesIO(data), sink)
    return sink.getvalue()


def unseal(blob: bytes, key: bytes = KEY) -> bytes:
    sink = io.BytesIO()
    decrypt_stream(key, io.BytesIO(blob), sink)
    return sink.getvalue()


SIZES = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 2 * CHUNK + 5]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip_at_chunk_boundaries(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + bytes(size % 256)
    blob = seal(data)
    assert len(blob) == encrypted_size(size)
    assert unseal(blob) == data


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=3000))
def test_round_trip_property(data: bytes) -> None:
    assert unseal(seal(data)) == data


def test_two_encryptions_differ() -> None:
    # A fresh salt and nonce prefix per file: equal plaintexts do not show as equal files.
    assert seal(b"same") != seal(b"same")


def test_wrong_key_is_named() -> None:
    with pytest.raises(DecryptError, match="wrong key"):
        unseal(seal(b"secret data"), OTHER)


@pytest.mark.parametrize("cut", [CHUNK + crypto.TAG, 2 * (CHUNK + crypto.TAG), 100])
def test_truncation_is_detected_even_at_a_chunk_boundary(cut: int) -> None:
    blob = seal(bytes(3 * CHUNK))
    truncated = blob[: crypto.HEADER_SIZE + cut]
    with pytest.raises(DecryptError, match="damaged or truncated"):
        unseal(truncated)


@pytest.mark.parametrize("where", [crypto.HEADER_SIZE + 5, -1])
def test_a_flipped_bit_is_detected(where: int) -> None:
    blob = bytearray(seal(bytes(CHUNK + 100)))
    blob[where] ^= 0x01
    with pytest.raises(DecryptError, match="damaged or truncated"):
        unseal(bytes(blob))


def test_swapped_chunks_are_detected() -> None:
    blob = seal(bytes(range(256)) * (3 * CHUNK // 256))
    size = CHUNK + crypto.TAG
    head, body = blob[: crypto.HEADER_SIZE], blob[crypto.HEADER_SIZE :]
    first, second, rest = body[:size], body[size : 2 * size], body[2 * size :]
    with pytest.raises(DecryptError):
        unseal(head + second + first + rest)


def test_not_a_backup_file() -> None:
    with pytest.raises(DecryptError, match="not a gemnar backup"):
        unseal(b"PGDMP\x01\x0e" + bytes(100))


def test_short_secrets_are_refused() -> None:
    with pytest.raises(ValueError):
        crypto.master_key_from_secret("short")
