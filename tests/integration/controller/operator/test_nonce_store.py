"""The replay guard's durable store: a real SQLite file, as a restarted controller or the next
run of the same reactor finds it."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from controller.operator.nonce_store import RETENTION_S, NonceStore
from controller.operator.replay import ReplayGuard

NOW = 1_767_225_600.0
NONCE = "00112233445566778899aabbccddeeff"


def test_a_nonce_accepted_by_one_run_is_a_replay_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "replay_nonces.sqlite"  # the folder is made when needed
    first = ReplayGuard(30.0, store=NonceStore(path, "hsc-1"), now_wall_s=NOW)
    assert first.remember(NONCE, NOW, NOW)
    second = ReplayGuard(30.0, store=NonceStore(path, "hsc-1"), now_wall_s=NOW + 20)
    assert second.remembered == 1
    assert not second.remember(NONCE, NOW, NOW + 20)
    # Keyed by reactor: another reactor sharing the folder has its own nonces.
    other = ReplayGuard(30.0, store=NonceStore(path, "hsc-2"), now_wall_s=NOW + 20)
    assert other.remember(NONCE, NOW, NOW + 20)
    assert first.store_failures == second.store_failures == other.store_failures == 0


def test_the_window_of_the_loading_run_decides_what_is_loaded(tmp_path: Path) -> None:
    path = tmp_path / "replay_nonces.sqlite"
    ReplayGuard(30.0, store=NonceStore(path, "hsc-1"), now_wall_s=NOW).remember(NONCE, NOW, NOW)
    # 100 s later a 30 s window refuses the command as stale anyway: nothing to load.
    assert ReplayGuard(30.0, store=NonceStore(path, "hsc-1"),
                       now_wall_s=NOW + 100).remembered == 0
    # A run configured with a 120 s window would still take it as fresh: it is loaded.
    wide = ReplayGuard(120.0, store=NonceStore(path, "hsc-1"), now_wall_s=NOW + 100)
    assert not wide.remember(NONCE, NOW, NOW + 100)


def test_rows_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    path = tmp_path / "replay_nonces.sqlite"
    store = NonceStore(path, "hsc-1")
    store.add(NONCE, NOW, NOW)
    store.add("ff" * 16, NOW + RETENTION_S + 1, NOW + RETENTION_S + 1)
    with sqlite3.connect(path) as con:
        assert [n for (n,) in con.execute("SELECT nonce FROM nonces")] == ["ff" * 16]


def test_a_store_that_cannot_be_written_still_lets_this_run_refuse_replays(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the store's folder should be")
    guard = ReplayGuard(30.0, store=NonceStore(blocker / "replay_nonces.sqlite", "hsc-1"),
                        now_wall_s=NOW)
    assert guard.store_failures == 1 and "not_a_folder" in guard.last_store_error
    assert guard.remember(NONCE, NOW, NOW)  # the command is not lost ...
    assert not guard.remember(NONCE, NOW, NOW + 1)  # ... and its replay still refused here
    assert guard.store_failures == 2
