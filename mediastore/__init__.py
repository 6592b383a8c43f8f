"""The media bucket's one-time setup: create it if missing and set its read policy.

Nginx on the controller reads objects anonymously (open-source Nginx cannot sign S3 requests),
so the bucket policy allows exactly ``s3:GetObject`` on its objects to anyone and nothing
else: no listing, no writes, no ACL reads. Object names are generated (128 random bits), so
an object is reachable only by whoever was given its URL. The app writes with the bucket's
keys. ``python -m mediastore ensure`` runs this from the deployer (``components.media_storage``).
"""

from __future__ import annotations

import json
from typing import Any

POLICY_SID = "GemnarNginxReadsObjects"


def read_policy(bucket: str) -> dict[str, Any]:
    """Anyone may GET an object by its name; nothing else is granted (pure)."""
    return {
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": POLICY_SID,
            "Effect": "Allow",
            "Principal": "*",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:aws:s3:::{bucket}/*"],
        }],
    }


def ensure_bucket(client: Any, bucket: str) -> bool:
    """Create ``bucket`` unless it exists, then (re)set its read policy. True if created."""
    import botocore.exceptions

    created = False
    try:
        client.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
            raise
        client.create_bucket(Bucket=bucket)
        created = True
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(read_policy(bucket)))
    return created
