"""The ingest worker's Prometheus metrics.

Counts come from what each committed batch held; lag is measured for every fix, at
commit, from the fix's own time (how far behind the tags the database is) and from the
moment the worker took it off the broker (the worker's own share of that). Per-fix lags
are counted into buckets with numpy, a batch at a time: at 15,000 fixes a second,
observing them one by one would cost the worker a few per cent of a core.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from torch.intake import Batch
from torch.store.ingest import Written

LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000)
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class LagHistogram(Collector):
    """A histogram with one label, `since`, filled from arrays of values at once."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self._name, self._doc = name, documentation
        self._edges = np.array([*buckets, np.inf])
        self._counts: dict[str, np.ndarray] = {}
        self._sums: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, since: str, values: np.ndarray) -> None:
        if not len(values):
            return
        counts = np.bincount(
            np.searchsorted(self._edges, values, side="left"), minlength=len(self._edges)
        )
        with self._lock:
            self._counts[since] = self._counts.get(since, 0) + counts
            self._sums[since] = self._sums.get(since, 0.0) + float(values.sum())

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self._name, self._doc, labels=["since"])
        with self._lock:
            for since, counts in sorted(self._counts.items()):
                cumulative = np.cumsum(counts)
                buckets = [
                    ("+Inf" if np.isinf(le) else repr(float(le)), float(c))
                    for le, c in zip(self._edges, cumulative, strict=True)
                ]
                family.add_metric([since], buckets, self._sums[since])
        yield family


class IngestMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.fixes = Counter("torch_fixes_stored", "new fixes stored", registry=r)
        self.duplicates = Counter(
            "torch_fix_duplicates", "fixes received again and stored once", registry=r
        )
        self.events = Counter("torch_events_stored", "device events stored", registry=r)
        self.dead_letters = Counter(
            "torch_dead_letters",
            "messages or items dead-lettered, by reason",
            ["reason"],
            registry=r,
        )
        self.batch_size = Histogram(
            "torch_ingest_batch_messages", "messages in a committed batch", buckets=BATCH_BUCKETS,
            registry=r,
        )  # fmt: skip
        self.commit_seconds = Histogram(
            "torch_ingest_commit_seconds",
            "time to store a batch and commit it (waits for the database included)",
            buckets=COMMIT_BUCKETS,
            registry=r,
        )
        self.lag = LagHistogram(
            "torch_ingest_lag_seconds",
            "from a fix's time (since=fix) or its receipt by the worker (since=receipt) to its"
            " commit",
            LAG_BUCKETS,
        )
        r.register(self.lag)
        self.alerts_published = Counter(
            "torch_alerts_published",
            "alerts published on MQTT, by type (escalations again)",
            ["type"],
            registry=r,
        )
        self.alerts_open = Gauge(
            "torch_alerts_open", "alerts not closed, by type and status", ["type", "status"],
            registry=r,
        )  # fmt: skip
        self.broker_connected = Gauge(
            "torch_broker_connected", "1 while the worker's MQTT session is up", registry=r
        )
        self.alert_link_connected = Gauge(
            "torch_alert_link_connected",
            "1 while the worker's MQTT connection for publishing alerts is up",
            registry=r,
        )
        self.inbox = Gauge(
            "torch_ingest_inbox_messages", "messages received and not yet in a batch", registry=r
        )
        self._open_labels: set[tuple[str, str]] = set()

    def stored(
        self, messages: int, batches: Sequence[Batch], written: Written, seconds: float
    ) -> None:
        """A batch of `messages` messages committed in `seconds`, as these batches."""
        self.batch_size.observe(messages)
        self.commit_seconds.observe(seconds)
        self.fixes.inc(written.fixes)
        self.duplicates.inc(written.duplicates)
        self.events.inc(written.events)
        now = time.time()
        fix_times, receipts = [], []
        for batch in batches:
            for letter in batch.dead_letters:
                self.dead_letters.labels(letter.code.value).inc()
            for s in batch.fixes:
                fix_times.append(s.fix.ts.timestamp())
                receipts.append(s.received_at.timestamp())
        self.lag.add("fix", now - np.array(fix_times))
        self.lag.add("receipt", now - np.array(receipts))

    def open_alerts(self, counts: dict[tuple[str, str], int]) -> None:
        """The alerts not closed now, by (type, status); a pair no longer open drops to 0."""
        for labels in list(self._open_labels):
            if labels not in counts:
                self.alerts_open.labels(*labels).set(0)
        for labels, n in counts.items():
            self.alerts_open.labels(*labels).set(n)
        self._open_labels = set(counts) | self._open_labels

    def alert_published(self, payload: str) -> None:
        self.alerts_published.labels(json.loads(payload).get("type", "unknown")).inc()
