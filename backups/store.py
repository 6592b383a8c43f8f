"""Where backup files go: a local directory and an S3 bucket, behind one small interface.

Why boto3 and not restic or rclone: the files are already encrypted and checksummed by us
(``crypto``, the manifest), so what is needed from the transport is upload with checksums,
listing and deletion, which boto3 (AWS's own, maintained SDK, spoken by every S3-compatible
server) does through s3transfer's multipart uploads; restic would add a second encryption and
repository format to restore through, and rclone a config file and a binary to drive.

Every upload is verified: the server's SHA-256 (full or multipart composite) must equal ours;
a server that reports none gets the object read back and hashed.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

PART_SIZE = 16 * 1024 * 1024


class StoreError(Exception):
    """An upload, download, listing or deletion failed."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def composite_sha256(path: Path, part_size: int) -> str:
    """S3's checksum of a multipart object: SHA-256 over the parts' SHA-256 digests."""
    digests = []
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(part_size), b""):
            digests.append(hashlib.sha256(block).digest())
    return base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()


class Store(Protocol):
    name: str

    def put(self, key: str, path: Path, sha256: str) -> None: ...
    def get(self, key: str, path: Path) -> None: ...
    def keys(self, prefix: str) -> list[str]: ...
    def delete(self, keys: Iterable[str]) -> None: ...


@dataclass
class LocalStore:
    """Backup files under a root directory, written atomically (temp file, then rename)."""

    root: Path
    name: str = "local"

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"key {key!r} escapes the backup directory")
        return path

    def put(self, key: str, path: Path, sha256: str) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temp = target.with_name(target.name + ".partial")
        shutil.copyfile(path, temp)
        if sha256_file(temp) != sha256:
            temp.unlink()
            raise StoreError(f"{self.name}: {key}: copy does not match its checksum")
        os.replace(temp, target)

    def get(self, key: str, path: Path) -> None:
        source = self._path(key)
        if not source.exists():
            raise StoreError(f"{self.name}: {key} does not exist")
        shutil.copyfile(source, path)

    def keys(self, prefix: str) -> list[str]:
        if not self.root.exists():
            return []
        found = []
        for path in self.root.rglob("*"):
            if path.is_file() and not path.name.endswith(".partial"):
                key = path.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return sorted(found)

    def delete(self, keys: Iterable[str]) -> None:
        for key in keys:
            path = self._path(key)
            path.unlink(missing_ok=True)
            # Empty set directories go too, up to the root.
            parent = path.parent
            while parent != self.root.resolve() and parent.exists() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


@dataclass(frozen=True)
class S3Location:
    """An S3 bucket (and key prefix) and how to reach it."""

    endpoint: str
    bucket: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = "us-east-1"
    prefix: str = ""
    # "SHA256" asks the server to check and keep a SHA-256 per object; "" for servers that
    # reject flexible checksums (each upload is then read back and hashed instead).
    checksum_algorithm: str = "SHA256"


class S3Store:
    """Backup files in an S3 bucket through boto3."""

    def __init__(self, location: S3Location, name: str = "offsite") -> None:
        self.location = location
        self.name = name
        mode = "when_supported" if location.checksum_algorithm else "when_required"
        self.client: Any = boto3.client(
            "s3",
            endpoint_url=location.endpoint,
            aws_access_key_id=location.access_key,
            aws_secret_access_key=location.secret_key,
            region_name=location.region,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
                request_checksum_calculation=mode,
                response_checksum_validation=mode,
            ),
        )
        self.transfer = TransferConfig(
            multipart_threshold=PART_SIZE, multipart_chunksize=PART_SIZE, max_concurrency=4
        )

    def _key(self, key: str) -> str:
        return f"{self.location.prefix}{key}"

    def ensure_bucket(self) -> bool:
        """Create the bucket if it does not exist (the provider has no bucket resource);
        True when it was created."""
        bucket = self.location.bucket
        try:
            self.client.head_bucket(Bucket=bucket)
            return False
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket"):
                raise StoreError(f"{self.name}: bucket {bucket}: {error}") from error
        except BotoCoreError as error:
            raise StoreError(f"{self.name}: bucket {bucket}: {error}") from error
        extra: dict[str, Any] = {}
        if self.location.region != "us-east-1":
            extra["CreateBucketConfiguration"] = {"LocationConstraint": self.location.region}
        try:
            self.client.create_bucket(Bucket=bucket, **extra)
        except (BotoCoreError, ClientError) as error:
            raise StoreError(f"{self.name}: creating bucket {bucket} failed: {error}") from error
        return True

    def put(self, key: str, path: Path, sha256: str, content_type: str | None = None) -> None:
        extra: dict[str, Any] = {"Metadata": {"sha256": sha256}}
        if content_type:
            extra["ContentType"] = content_type
        if self.location.checksum_algorithm:
            extra["ChecksumAlgorithm"] = self.location.checksum_algorithm
        try:
            self.client.upload_file(str(path), self.location.bucket, self._key(key),
                                    ExtraArgs=extra, Config=self.transfer)
            self._verify(key, path, sha256)
        except (BotoCoreError, ClientError) as error:
            raise StoreError(f"{self.name}: upload of {key} failed: {error}") from error

    def _verify(self, key: str, path: Path, sha256: str) -> None:
        head = self.client.head_object(
            Bucket=self.location.bucket, Key=self._key(key), ChecksumMode="ENABLED"
        )
        size = path.stat().st_size
        if int(head["ContentLength"]) != size:
            raise StoreError(
                f"{self.name}: {key}: stored {head['ContentLength']} bytes, sent {size}"
            )
        reported = str(head.get("ChecksumSHA256") or "").split("-")[0]
        if reported:
            single = base64.b64encode(bytes.fromhex(sha256)).decode()
            expected = single if size <= PART_SIZE else composite_sha256(path, PART_SIZE)
            if reported != expected:
                raise StoreError(f"{self.name}: {key}: the server's SHA-256 differs from ours")
            return
        with_read_back = hashlib.sha256()
        body = self.client.get_object(Bucket=self.location.bucket, Key=self._key(key))["Body"]
        for block in iter(lambda: body.read(1 << 20), b""):
            with_read_back.update(block)
        if with_read_back.hexdigest() != sha256:
            raise StoreError(f"{self.name}: {key}: read back, its SHA-256 differs from ours")

    def get(self, key: str, path: Path) -> None:
        try:
            self.client.download_file(self.location.bucket, self._key(key), str(path),
                                      Config=self.transfer)
        except (BotoCoreError, ClientError) as error:
            raise StoreError(f"{self.name}: download of {key} failed: {error}") from error

    def _pages(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        yield from paginator.paginate(Bucket=self.location.bucket, Prefix=self._key(prefix))

    def keys(self, prefix: str) -> list[str]:
        try:
            return sorted(
                obj["Key"][len(self.location.prefix):]
                for page in self._pages(prefix)
                for obj in page.get("Contents", [])
            )
        except (BotoCoreError, ClientError) as error:
            raise StoreError(f"{self.name}: listing {prefix} failed: {error}") from error

    def listing(self, prefix: str = "") -> dict[str, tuple[int, str]]:
        """Key -> (size, ETag) of every object under ``prefix``."""
        try:
            return {
                obj["Key"][len(self.location.prefix):]: (int(obj["Size"]), str(obj["ETag"]))
                for page in self._pages(prefix)
                for obj in page.get("Contents", [])
            }
        except (BotoCoreError, ClientError) as error:
            raise StoreError(f"{self.name}: listing {prefix} failed: {error}") from error

    def delete(self, keys: Iterable[str]) -> None:
        batch = [self._key(k) for k in keys]
        try:
            for start in range(0, len(batch), 1000):
                chunk = batch[start : start + 1000]
                answer = self.client.delete_objects(
                    Bucket=self.location.bucket,
                    Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True},
                )
                if answer.get("Errors"):
                    raise StoreError(f"{self.name}: deleting failed: {answer['Errors'][:3]}")
        except (BotoCoreError, ClientError) as error:
            raise StoreError(f"{self.name}: deleting failed: {error}") from error
