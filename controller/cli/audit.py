"""`bioreactor audit verify RUN.sqlite`: recompute a run's audit hash chain (docs/audit.md).

Exit codes: 0 intact, 1 tampered (the first bad record is named), 2 nothing to verify (no such
file, not a historian file, no audit table, or one recorded before the chain existed).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from controller.operator.audit import AuditTrailMissing, verify_audit

EXIT_INTACT = 0
EXIT_TAMPERED = 1
EXIT_UNVERIFIABLE = 2


def add_audit_parser(sub: Any) -> argparse.ArgumentParser:
    """Add `audit` to the `bioreactor` subparsers (controller/cli/main.py)."""
    parser = sub.add_parser("audit", help="check a run's audit trail",
                            description="Commands on the audit trail of a run's historian file.")
    actions = parser.add_subparsers(dest="audit_command", required=True)
    verify = actions.add_parser(
        "verify", help="recompute the hash chain; name the first tampered record",
        description="Recompute the audit trail's hash chain. Prints 'intact: N records' and the "
                    "last hash (exit 0), or 'TAMPERED: first bad record rowid R (reason)' "
                    "(exit 1); exit 2 when there is nothing to verify.",
    )
    verify.add_argument("db", type=Path, metavar="RUN.sqlite")
    verify.add_argument("--expect-last-hash", metavar="HEX",
                        help="the last hash published earlier: also detects records cut off the "
                             "end and a chain rewritten from the start")
    verify.set_defaults(func=run_audit_verify)
    return parser


def run_audit_verify(args: argparse.Namespace) -> int:
    """Verify `args.db` (and `args.expect_last_hash`, if given); print the verdict."""
    try:
        verdict = verify_audit(args.db, getattr(args, "expect_last_hash", None))
    except (FileNotFoundError, AuditTrailMissing) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNVERIFIABLE
    if verdict.intact:
        print(f"intact: {verdict.rows} records")
        print(f"last hash: {verdict.last_hash}")
        return EXIT_INTACT
    where = (f"first bad record rowid {verdict.first_bad_rowid}"
             if verdict.first_bad_rowid is not None else "the chain's end")
    print(f"TAMPERED: {where} ({verdict.reason})")
    return EXIT_TAMPERED
