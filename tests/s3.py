"""A real S3-compatible server for the tests: moto's standalone server, on loopback, in a thread."""

from typing import Any

import boto3
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

# Any value works against moto; set for the session so boto3's own credential chain finds them.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "verbatim-test", "AWS_SECRET_ACCESS_KEY": "verbatim-test-secret"}


def start_moto() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def client(endpoint: str, region: str = "us-east-1") -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region)


def object_keys(s3: Any, bucket: str) -> list[str]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def pending_uploads(s3: Any, bucket: str) -> list[str]:
    """Keys of multipart uploads started and neither completed nor aborted (billed, invisible)."""
    return [u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def remove_bucket(s3: Any, bucket: str) -> None:
    """Empty the bucket (objects and pending uploads) and remove it; a missing bucket is fine."""
    try:
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        for key in object_keys(s3, bucket):
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchBucket":
            raise


def served_bytes(s3: Any) -> list[int]:
    """The body length of every GetObject answer the client gets from now on: what the server sent."""
    sizes: list[int] = []

    def count(parsed: dict[str, Any], **_: Any) -> None:
        sizes.append(int(parsed.get("ContentLength", 0)))

    s3.meta.events.register("after-call.s3.GetObject", count)
    return sizes
