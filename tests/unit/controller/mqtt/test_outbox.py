"""Outbox: durable FIFO, replay after restart, acks, no count limit, typed full-disk error."""
from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.mqtt.outbox import Outbox, OutboxFullError


def test_only_committed_messages_are_visible_oldest_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        a = ob.append("t/a", b"1")
        b = ob.append("t/b", b"2", qos=0, retain=True)
        assert ob.peek(10) == [] and ob.depth == 2
        assert ob.commit() == 2
        msgs = ob.peek(10)
        assert [(m.seq, m.topic, m.payload, m.qos, m.retain) for m in msgs] == [
            (a, "t/a", b"1", 1, False), (b, "t/b", b"2", 0, True)]
        assert [m.seq for m in ob.peek(10, after=a)] == [b]
        assert ob.size_bytes == len("t/a") + 1 + len("t/b") + 1


def test_ack_removes_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        seqs = [ob.append("t", str(i).encode()) for i in range(10)]
        ob.commit()
        for s in seqs[:4]:
            ob.ack(s)
        assert ob.depth == 6
        assert [m.seq for m in ob.peek(3)] == seqs[4:7]
    with Outbox(path) as ob:  # next process: unacked replayed in order, seq continues
        assert ob.depth == 6
        assert [m.payload for m in ob.peek(100)] == [str(i).encode() for i in range(4, 10)]
        assert ob.append("t", b"x") > seqs[-1]


def test_uncommitted_appends_are_not_durable(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path)
    ob.append("t", b"committed")
    ob.commit()
    ob.append("t", b"lost in a crash")
    ob.close()
    with Outbox(path) as ob2:
        assert [m.payload for m in ob2.peek(10)] == [b"committed"]


def test_no_count_limit(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db") as ob:
        for _ in range(20):
            for _ in range(5000):
                ob.append("bioreactor/r1/telemetry", b"x" * 50)
            ob.commit()
        assert ob.depth == 100_000


def test_full_disk_raises_typed_error_and_keeps_batch(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    ob = Outbox(path, max_page_count=40)  # ~160 KiB file: a stand-in for a full disk
    with pytest.raises(OutboxFullError, match="full"):
        for _ in range(1000):
            ob.append("t", b"y" * 1000)
            ob.commit()
    kept = ob.depth
    stored = ob.committed_depth
    assert kept > stored  # the failed batch is still in memory
    for m in ob.peek(stored):  # the link recovers and drains: room again
        ob.ack(m.seq)
    ob.flush_acks()
    ob.commit()  # the buffered batch now fits
    assert ob.committed_depth == kept - stored
    ob.close()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3)), max_size=40))
def test_fifo_model(tmp_path_factory: pytest.TempPathFactory,
                    ops: list[tuple[bool, int]]) -> None:
    """Against a list model: commits add to the tail, acks of the head remove; reopen keeps all."""
    path = tmp_path_factory.mktemp("fifo") / "o.db"
    model: list[bytes] = []
    ob = Outbox(path)
    n = 0
    for is_append, k in ops:
        if is_append:
            for _ in range(k):
                n += 1
                model.append(str(n).encode())
                ob.append("t", model[-1])
            ob.commit()
        else:
            for m in ob.peek(k):
                ob.ack(m.seq)
                model.pop(0)
        assert [m.payload for m in ob.peek(1000)] == model
    ob.close()
    with Outbox(path) as ob:
        assert [m.payload for m in ob.peek(1000)] == model
        assert ob.depth == len(model)


def test_messages_left_by_an_earlier_process_are_marked_inherited(tmp_path: Path) -> None:
    path = tmp_path / "new" / "folder" / "outbox.sqlite"  # the folder is created
    with Outbox(path) as ob:
        assert ob.inherited_through_seq == 0
        for i in range(3):
            ob.append("t", b"%d" % i)
        ob.commit()
        ob.ack(1)
    with Outbox(path) as ob:
        assert ob.inherited_through_seq == 3
        assert ob.append("t", b"new") == 4
    emptied = Outbox(tmp_path / "emptied.sqlite")
    emptied.append("t", b"x")
    emptied.commit()
    emptied.ack(1)
    emptied.close()
    with Outbox(tmp_path / "emptied.sqlite") as ob:
        assert ob.inherited_through_seq == 0



def test_a_writer_without_wal_checkpoints_leaves_them_to_the_other_process(
        tmp_path: Path) -> None:
    """The controller's side commits without ever copying the log into the file (a commit
    that checkpoints takes milliseconds, between a fleet's ticks); the publisher's side
    copies it with a passive checkpoint, and every message is still there, in order."""
    path = tmp_path / "outbox.sqlite"
    with Outbox(path, wal_checkpoints=False) as writer, Outbox(path) as reader:
        for k in range(1500):  # past SQLite's automatic checkpoint at 1,000 pages
            writer.append("bioreactor/r/telemetry", b"x" * 4000)
            if k % 100 == 99:
                writer.commit()
        busy, frames, copied = reader.checkpoint_wal()
        assert busy == 0 and frames > 1000  # nothing was copied by the writer's commits
        assert copied == frames
        assert [m.seq for m in reader.peek(2000)] == list(range(1, 1501))
    with Outbox(path) as again:  # and the file alone holds them after both closed
        assert again.depth == 1500
