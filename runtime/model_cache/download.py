"""Model downloads through s3transfer (the transfer manager boto3 ships), not hand-written range threads.

``S3Downloader.download_to(key, dest, size)`` fetches one object into ``dest``: s3transfer splits it
into ``part_size`` ranged GETs on ``concurrency`` threads, writes them in place and renames a temporary
file into ``dest`` when all parts arrived. The cache checks the manifest's sha256 afterwards (parts
arrive out of order, so the digest cannot be computed on the fly). s3transfer picks the AWS CRT client
by itself where ``awscrt`` is installed and the instance type is one it tunes for; the classic threads
otherwise. ``single_stream`` is the one-GET baseline the cache benchmark compares against.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

MiB = 1024 * 1024


class Downloader(Protocol):
    """What the model cache needs from the model store: one object into one local file."""

    def download_to(self, key: str, dest: Path, size: int) -> None: ...


class DownloadError(Exception):
    """The object could not be fetched (the cache maps it to ModelUnavailable)."""


class S3Downloader:
    """s3transfer downloads from one bucket; ``client`` is a boto3 S3 client (its pool should hold
    ``concurrency`` connections: ``max_pool_connections`` in botocore's Config)."""

    def __init__(self, client: Any, bucket: str, *, part_size: int = 16 * MiB, concurrency: int = 16) -> None:
        self.client = client
        self.bucket = bucket
        self.part_size = part_size
        self.concurrency = concurrency

    def _config(self) -> Any:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(multipart_threshold=self.part_size, multipart_chunksize=self.part_size,
                              max_concurrency=self.concurrency, use_threads=self.concurrency > 1,
                              preferred_transfer_client="auto")

    def download_to(self, key: str, dest: Path, size: int) -> None:
        try:
            self.client.download_file(self.bucket, key, str(dest), Config=self._config())
        except Exception as exc:  # botocore, s3transfer and OS errors all mean "not fetched"
            raise DownloadError(f"s3://{self.bucket}/{key}: {type(exc).__name__}: {exc}") from exc
        got = dest.stat().st_size
        if got != size:
            raise DownloadError(f"s3://{self.bucket}/{key}: {got} bytes arrived, the manifest says {size}")

    def single_stream(self, key: str, dest: Path) -> None:
        """One GET read to the end (the baseline: what a plain ``aws s3 cp`` of old or s3fs achieves)."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
            with dest.open("wb") as fh:
                for chunk in body.iter_chunks(MiB):
                    fh.write(chunk)
        except Exception as exc:
            raise DownloadError(f"s3://{self.bucket}/{key}: {exc}") from exc
