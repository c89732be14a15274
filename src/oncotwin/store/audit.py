"""The append-only, hash-chained audit log: who did what, when, on which patient, and why.

Each entry's ``hash`` is sha256 over the previous entry's hash followed by the canonical JSON
(sorted keys, no spaces, UTF-8) of the entry's content; entry ``seq`` numbers run 1, 2, 3, ...
without gaps, and the ``audit_head`` row holds the newest (seq, hash). :meth:`AuditLog.verify`
recomputes the chain: an edited entry changes its hash, a deleted or inserted one breaks the
sequence or the link to its neighbour, a deleted last entry disagrees with the head. (This is
the construction of Schneier B, Kelsey J. "Secure audit logs to support computer forensics",
ACM TISSEC 1999;2:159-176, without the per-entry keys: anyone able to rewrite the whole table
and the head could forge it, so keep a copy of the head hash elsewhere and pass it as
``expect_head``.)

Appends are serialised: ``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on
PostgreSQL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, text

from oncotwin.store.repository import Store, _jsonable, _utc
from oncotwin.store.tables import AuditEntry, AuditHead

GENESIS = "0" * 64
_LOCK_AUDIT = 0x6F6E636F7477696E + 7  # PostgreSQL advisory lock key (store uses +0, +1)


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry as stored."""

    seq: int
    at: datetime
    actor: str
    role: str
    action: str
    resource: str
    patient_id: str | None
    purpose: str
    outcome: str
    detail: dict[str, Any]
    prev_hash: str
    hash: str

    def content(self) -> dict[str, Any]:
        """The hashed content (everything but the two hashes)."""
        return _content(self.seq, self.at, self.actor, self.role, self.action, self.resource,
                        self.patient_id, self.purpose, self.outcome, self.detail)  # fmt: skip


@dataclass(frozen=True)
class Verification:
    """Result of :meth:`AuditLog.verify`: ``ok`` and, if not, what is wrong where."""

    ok: bool
    n_entries: int
    head: str
    problems: list[str] = field(default_factory=list)


def _content(
    seq: int, at: datetime, actor: str, role: str, action: str, resource: str,
    patient_id: str | None, purpose: str, outcome: str, detail: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    return {
        "seq": int(seq), "at": _utc(at).isoformat(timespec="microseconds"), "actor": actor,
        "role": role, "action": action, "resource": resource, "patient_id": patient_id,
        "purpose": purpose, "outcome": outcome, "detail": dict(detail),
    }  # fmt: skip


def chain_hash(prev_hash: str, content: Mapping[str, Any]) -> str:
    """sha256 hex of ``prev_hash`` + canonical JSON of `content`."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode()).hexdigest()


class AuditLog:
    """Append to, read and verify the audit log of a store.

    Args:
        store: an open store (schema revision 0003 or newer).
    """

    def __init__(self, store: Store) -> None:
        self.store = store

    def append(
        self,
        *,
        actor: str,
        role: str,
        action: str,
        resource: str,
        patient_id: str | None = None,
        purpose: str = "",
        outcome: str = "ok",
        detail: Mapping[str, Any] | None = None,
    ) -> AuditRecord:
        """Add one entry at the end of the chain (one transaction) and return it.

        Args:
            actor, role: who (user name and role).
            action: what kind: "read", "write", "compute", "export", "admin", "login", ...
            resource: what, e.g. "GET /api/patients/{patient_id}/forecasts".
            patient_id: on which patient, if any.
            purpose: why (e.g. "care", "research", "administration").
            outcome: "ok", "denied" or "failed".
            detail: small JSON-able facts (counts, versions); never health data.
        """
        detail = dict(_jsonable(dict(detail or {})))
        with self.store._tx("append audit entry", write=True) as s:
            if self.store._dialect == "postgresql":
                s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_AUDIT})
            head = s.get(AuditHead, 1)
            seq, prev = (head.seq + 1, head.hash) if head is not None else (1, GENESIS)
            at = self.store._now()
            # Stored timestamps keep microseconds on both backends; hash what will be read back.
            content = _content(seq, at, actor, role, action, resource, patient_id, purpose,
                               outcome, detail)  # fmt: skip
            h = chain_hash(prev, content)
            s.add(AuditEntry(seq=seq, at=at, actor=actor, role=role, action=action,
                             resource=resource, patient_id=patient_id, purpose=purpose,
                             outcome=outcome, detail=detail, prev_hash=prev, hash=h))  # fmt: skip
            if head is None:
                s.add(AuditHead(id=1, seq=seq, hash=h))
            else:
                head.seq, head.hash = seq, h
        return AuditRecord(seq, _utc(at), actor, role, action, resource, patient_id, purpose,
                           outcome, detail, prev, h)  # fmt: skip

    def entries(
        self, *, patient_id: str | None = None, actor: str | None = None, limit: int | None = None,
        newest_first: bool = False,
    ) -> list[AuditRecord]:  # fmt: skip
        """Entries in chain order (or newest first), optionally of one patient or actor."""
        q = select(AuditEntry)
        if patient_id is not None:
            q = q.where(AuditEntry.patient_id == patient_id)
        if actor is not None:
            q = q.where(AuditEntry.actor == actor)
        q = q.order_by(AuditEntry.seq.desc() if newest_first else AuditEntry.seq)
        if limit is not None:
            q = q.limit(int(limit))
        with self.store._tx("read audit log") as s:
            return [_record(e) for e in s.scalars(q)]

    def verify(self, expect_head: str | None = None) -> Verification:
        """Recompute the whole chain; report every broken link, edited entry or gap.

        Args:
            expect_head: a head hash kept outside the database (optional): it must be the
                hash of some entry of the chain (entries appended after it are fine).
        """
        problems: list[str] = []
        prev, n, expected_seq = GENESIS, 0, 1
        seen_expected = expect_head is None
        with self.store._tx("verify audit log") as s:
            head = s.get(AuditHead, 1)
            for e in s.scalars(select(AuditEntry).order_by(AuditEntry.seq)).yield_per(1000):
                r = _record(e)
                n += 1
                if r.seq != expected_seq:
                    problems.append(f"entry seq {r.seq}: expected seq {expected_seq} "
                                    f"(entries {expected_seq}..{r.seq - 1} deleted?)")  # fmt: skip
                if r.prev_hash != prev:
                    problems.append(f"entry seq {r.seq}: does not link to the entry before it")
                if chain_hash(r.prev_hash, r.content()) != r.hash:
                    problems.append(f"entry seq {r.seq}: content does not match its hash (edited)")
                if r.hash == expect_head:
                    seen_expected = True
                prev, expected_seq = r.hash, r.seq + 1
        if head is None and n:
            problems.append("the audit head is missing")
        elif head is not None and (head.seq != expected_seq - 1 or head.hash != prev):
            problems.append(f"the head says the last entry is seq {head.seq}, the log ends at "
                            f"seq {expected_seq - 1} (last entries deleted?)")  # fmt: skip
        if not seen_expected:
            problems.append("the expected head hash is not in the chain")
        return Verification(not problems, n, prev, problems)


def _record(e: AuditEntry) -> AuditRecord:
    return AuditRecord(int(e.seq), _utc(e.at), e.actor, e.role, e.action, e.resource,
                       e.patient_id, e.purpose, e.outcome, dict(e.detail), e.prev_hash,
                       e.hash)  # fmt: skip
