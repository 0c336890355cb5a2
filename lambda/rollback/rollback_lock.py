"""The rollback record as a lock: exactly one invocation acts per endpoint, run and phase (S3 conditional puts)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from botocore.exceptions import ClientError
from rollback_model import error_code

from contracts import artifact_layout
from contracts.endpoint_tags import (
    PHASE_ROLLBACK_FAILED,
)

# The parent "rollback" logger is Powertools' (POWERTOOLS_SERVICE_NAME), so these
# records come out as structured JSON in Lambda and reach caplog in tests.
logger = logging.getLogger("rollback.logic")


_CONDITION_FAILED = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def record_key(model_name: str, run_id: str, endpoint: str, phase: str) -> str:
    """Where the rollback record (and lock) of one run lives in the artifact bucket."""
    return artifact_layout.rollback_record_key(model_name, run_id, endpoint, phase)


class RollbackLock:
    """The rollback record as a lock: conditional puts on one S3 key."""

    def __init__(self, s3: Any, bucket: str, key: str, stale_seconds: int) -> None:
        self.s3, self.bucket, self.key, self.stale_seconds = s3, bucket, key, stale_seconds
        self.uri = f"s3://{bucket}/{key}"

    def _put(self, record: dict[str, Any], **condition: str) -> None:
        self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=json.dumps(record, indent=1, sort_keys=True).encode(),
            ContentType="application/json",
            **condition,
        )

    def claim(self, record: dict[str, Any]) -> bool:
        """True if this invocation now owns the rollback (``record`` gains ``takes_over`` on a takeover)."""
        try:
            self._put(record, IfNoneMatch="*")
            return True
        except ClientError as exc:
            if error_code(exc) not in _CONDITION_FAILED:
                raise
        existing = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        previous = json.loads(existing["Body"].read())
        age = time.time() - float(previous.get("claimed_at_epoch", 0))
        # A failed invocation, a rollback that did not reach its expected state (the
        # function stays armed) or a claim whose invocation died.
        abandoned = previous.get("status") in ("failed", PHASE_ROLLBACK_FAILED) or (
            previous.get("status") == "in-progress" and age > self.stale_seconds
        )
        if not abandoned:
            logger.info("rollback already claimed", extra={"record": self.uri, "status": previous.get("status")})
            return False
        # Kept in the final record too: it shows the rollback needed a second attempt.
        record["takes_over"] = previous.get("status")
        if previous.get("autoscaling"):
            # An earlier attempt lifted the variant's autoscaling: this one puts it back.
            record["autoscaling"] = previous["autoscaling"]
        record["attempt"] = int(previous.get("attempt", 1)) + 1
        try:
            self._put(record, IfMatch=existing["ETag"])
        except ClientError as exc:
            if error_code(exc) in _CONDITION_FAILED:
                return False
            raise
        logger.warning("took over an abandoned rollback claim", extra={"record": self.uri, "previous": previous})
        return True

    def write(self, record: dict[str, Any]) -> None:
        """Overwrite with the outcome (versioning keeps the claim as the previous version)."""
        self._put(record)
