"""Housekeeping the worker does now and then: tables that would otherwise only grow are pruned."""

from __future__ import annotations

import logging

from kb.db.store import keys as key_store
from kb.db.store.rate_limits import forget_idle_buckets
from kb.runtime import Runtime

log = logging.getLogger(__name__)

# A bucket idle this long has refilled completely (the slowest limit refills in a minute): forgetting it is free.
IDLE_BUCKET_SECONDS = 3600


def prune(rt: Runtime) -> None:
    """Delete usage log rows past `usage_retention_days` and rate-limit buckets nobody used for an hour."""
    with rt.db.session() as session:
        usage_rows = key_store.prune_usage(session, older_than_days=rt.settings.usage_retention_days)
        session.commit()
    buckets = forget_idle_buckets(rt.db, IDLE_BUCKET_SECONDS)
    if usage_rows or buckets:
        log.info("Pruned %d old usage log rows and %d idle rate-limit buckets", usage_rows, buckets)
