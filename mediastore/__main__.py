"""``python -m mediastore ensure --endpoint URL --bucket NAME [--region R]``.

The keys come from ``GEMNAR_MEDIA_S3_ACCESS_KEY`` / ``GEMNAR_MEDIA_S3_SECRET_KEY`` in the
environment (never arguments: a command line is visible to every local process and in
Pulumi's failure messages). Prints only the bucket's name and whether it was created.
"""

from __future__ import annotations

import argparse
import os
import sys

from mediastore import ensure_bucket


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mediastore")
    sub = parser.add_subparsers(dest="action", required=True)
    ensure = sub.add_parser("ensure", help="create the media bucket if missing, set its policy")
    ensure.add_argument("--endpoint", required=True)
    ensure.add_argument("--bucket", required=True)
    ensure.add_argument("--region", default="us-east-1")
    args = parser.parse_args(argv)
    access = os.environ.get("GEMNAR_MEDIA_S3_ACCESS_KEY", "")
    secret = os.environ.get("GEMNAR_MEDIA_S3_SECRET_KEY", "")
    if not access or not secret:
        print("GEMNAR_MEDIA_S3_ACCESS_KEY and GEMNAR_MEDIA_S3_SECRET_KEY must be set",
              file=sys.stderr)
        return 2
    import boto3
    from botocore.config import Config

    client = boto3.client(
        "s3", endpoint_url=args.endpoint, region_name=args.region,
        aws_access_key_id=access, aws_secret_access_key=secret,
        config=Config(s3={"addressing_style": "path"}, connect_timeout=10, read_timeout=30,
                      retries={"max_attempts": 5, "mode": "standard"}),
    )
    created = ensure_bucket(client, args.bucket)
    print(f"media bucket {args.bucket}: {'created' if created else 'present'}, policy set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
