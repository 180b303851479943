"""Usage records in a SQLite file of their own (``c.Usage.db_path``, in the hub's data
directory): one row per server session, Dask cluster or tool-task run.

A row is keyed by what identifies the session for good (a local server's session marker,
kept in the hub's state across restarts; a pod's uid; a task run's id), so writing it
again never makes a second row. Measured figures are cumulative counters (a cgroup's CPU
time, its memory peak) and are only ever raised (``MAX``): a sample taken again after a
hub restart, or twice, counts nothing twice. A stop, once written, stays.

The hub and the tasks service (another process) both write: WAL mode, and a busy timeout.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from oggmhub.usage.units import GIB

FIELDS = ("id", "kind", "user", "cohort", "project", "environment", "size", "cpu_limit", "mem_limit", "gpus",
          "start", "stop", "updated", "cpu_seconds", "mem_peak", "cpu_base", "busy_since", "last_activity",
          "warned_at", "source")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, user TEXT NOT NULL, cohort TEXT NOT NULL DEFAULT '',
    project TEXT NOT NULL DEFAULT '', environment TEXT NOT NULL DEFAULT '', size TEXT NOT NULL DEFAULT '',
    cpu_limit REAL NOT NULL DEFAULT 0, mem_limit REAL NOT NULL DEFAULT 0, gpus INTEGER NOT NULL DEFAULT 0,
    start REAL NOT NULL, stop REAL, updated REAL, cpu_seconds REAL NOT NULL DEFAULT 0,
    mem_peak REAL NOT NULL DEFAULT 0, cpu_base REAL NOT NULL DEFAULT 0, busy_since REAL,
    last_activity REAL, warned_at REAL, source TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS records_start ON records (start);
CREATE INDEX IF NOT EXISTS records_user ON records (user, start);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

GROUPS = ("user", "cohort", "project", "environment", "kind")


class UsageStore:
    """The records file (see the module's docstring). Thread-safe; one per process and path."""

    def __init__(self, path):
        self.path = path
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        new = not os.path.exists(path)
        self._db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        if new:
            os.chmod(path, 0o600)  # who used what is the admin's
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _run(self, sql, args=()):
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- writing ---------------------------------------------------------------------------

    def open(self, record):
        """Insert ``record`` (a mapping with at least id, kind, user, start) unless a row with its
        id exists (then nothing changes: a record is written once). True if it was new."""
        row = {k: record[k] for k in FIELDS if k in record}
        row.setdefault("updated", row["start"])
        cols = ", ".join(row)
        with self._lock:
            cur = self._db.execute(f"INSERT OR IGNORE INTO records ({cols}) VALUES ({', '.join('?' * len(row))})",
                                   tuple(row.values()))
            return cur.rowcount == 1

    def sample(self, record_id, cpu_seconds=None, mem_peak=None, now=None, last_activity=None, busy_since=...):
        """Raise the record's cumulative figures to what was measured now (never lower them)."""
        now = time.time() if now is None else now
        sets, args = ["updated = MAX(COALESCE(updated, 0), ?)"], [now]
        if cpu_seconds is not None:
            sets.append("cpu_seconds = MAX(cpu_seconds, ? - cpu_base)")
            args.append(cpu_seconds)
        if mem_peak is not None:
            sets.append("mem_peak = MAX(mem_peak, ?)")
            args.append(mem_peak)
        if last_activity is not None:
            sets.append("last_activity = MAX(COALESCE(last_activity, 0), ?)")
            args.append(last_activity)
        if busy_since is not ...:
            sets.append("busy_since = ?")
            args.append(busy_since)
        self._run(f"UPDATE records SET {', '.join(sets)} WHERE id = ? AND stop IS NULL", (*args, record_id))

    def close(self, record_id, stop=None):
        """Write the record's stop (now by default) unless it has one."""
        stop = time.time() if stop is None else stop
        self._run("UPDATE records SET stop = MAX(start, ?), updated = MAX(COALESCE(updated, 0), ?) "
                  "WHERE id = ? AND stop IS NULL", (stop, stop, record_id))

    def set_warned(self, record_id, when):
        self._run("UPDATE records SET warned_at = ? WHERE id = ? AND warned_at IS NULL", (when, record_id))

    def put(self, record):
        """Insert or update a record whose figures come whole from elsewhere (a pod's lifetime
        read from the Kubernetes API): the same id again replaces, never adds."""
        row = {k: record[k] for k in FIELDS if k in record}
        row.setdefault("updated", row.get("stop") or row["start"])
        cols = ", ".join(row)
        updates = ", ".join(f"{k} = excluded.{k}" for k in row if k != "id")
        self._run(f"INSERT INTO records ({cols}) VALUES ({', '.join('?' * len(row))}) "
                  f"ON CONFLICT(id) DO UPDATE SET {updates}", tuple(row.values()))

    # --- reading ---------------------------------------------------------------------------

    def get(self, record_id):
        rows = self._run("SELECT * FROM records WHERE id = ?", (record_id,))
        return dict(rows[0]) if rows else None

    def records(self, begin=None, end=None, user=None, users=None, open_only=False, now=None):
        """Records overlapping [begin, end] (all if None), oldest first, as dicts."""
        now = time.time() if now is None else now
        where, args = [], []
        if end is not None:
            where.append("start < ?")
            args.append(end)
        if begin is not None:
            where.append("COALESCE(stop, ?) > ?")
            args += [now, begin]
        if user is not None:
            where.append("user = ?")
            args.append(user)
        if users is not None:
            users = list(users)
            where.append(f"user IN ({', '.join('?' * len(users))})")
            args += users
        if open_only:
            where.append("stop IS NULL")
        sql = "SELECT * FROM records" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY start, id"
        return [dict(r) for r in self._run(sql, args)]

    def totals(self, begin, end, by="user", user=None, users=None, now=None):
        """``[{by: value, "records", "hours", "core-hours", "gib-hours", "gpu-hours",
        "peak_gib"}]`` over [begin, end], one row per value of ``by`` (one of GROUPS), in one
        query (the units' rules: :mod:`oggmhub.usage.units`)."""
        if by not in GROUPS:
            raise ValueError(f"by: one of {', '.join(GROUPS)}")
        now = time.time() if now is None else now
        where, args = "", []
        if user is not None:
            where, args = " AND user = ?", [user]
        elif users is not None:
            users = list(users)
            where, args = f" AND user IN ({', '.join('?' * len(users))})", users
        sql = f"""
            SELECT {by} AS grp, COUNT(*) AS n, SUM(h) AS hours,
                   SUM(cpu_seconds * MIN(1.0, h / life)) / 3600.0 AS core, SUM(mem_limit * h) / {GIB}.0 AS gib,
                   SUM(gpus * h) AS gpu, MAX(mem_peak) / {GIB}.0 AS peak
            FROM (SELECT *, MAX(0.0, MIN(s, ?) - MAX(start, ?)) / 3600.0 AS h,
                            MAX(s - start, 1e-6) / 3600.0 AS life
                  FROM (SELECT *, COALESCE(stop, MAX(?, COALESCE(updated, start))) AS s FROM records
                        WHERE start < ? AND COALESCE(stop, ?) > ?{where}))
            GROUP BY grp ORDER BY grp"""
        rows = self._run(sql, (end, begin, now, end, now, begin, *args))
        return [{by: r["grp"], "records": r["n"], "hours": r["hours"] or 0.0, "core-hours": r["core"] or 0.0,
                 "gib-hours": r["gib"] or 0.0, "gpu-hours": r["gpu"] or 0.0, "peak_gib": r["peak"] or 0.0}
                for r in rows]

    def meta(self, key, value=None):
        """Read (``value`` None) or write a small fact kept with the records."""
        if value is None:
            rows = self._run("SELECT value FROM meta WHERE key = ?", (key,))
            return rows[0]["value"] if rows else None
        self._run("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                  (key, str(value)))


_STORES = {}
_STORES_LOCK = threading.Lock()


def store_at(path):
    """The process's :class:`UsageStore` for ``path`` (opened once)."""
    path = os.path.abspath(path)
    with _STORES_LOCK:
        if path not in _STORES:
            _STORES[path] = UsageStore(path)
        return _STORES[path]
