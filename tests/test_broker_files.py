"""The broker's password and access-list files, and the reload that makes it read them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from torch.broker import Account, AccountKind, password_hash, reload, write_files

TAG = Account("BF0001", AccountKind.DEVICE, password_hash("a", b"salt-for-test", 1000))
WORKER = Account("bf-ingest", AccountKind.INGEST, password_hash("b", b"salt-for-test", 1000))


def test_files_are_written_once_and_left_alone_while_the_accounts_stand(tmp_path: Path) -> None:
    assert write_files(tmp_path, [TAG, WORKER]) is True
    passwd = (tmp_path / "passwd").read_text()
    assert passwd == f"BF0001:{TAG.password_hash}\nbf-ingest:{WORKER.password_hash}\n"
    assert (tmp_path / "passwd").stat().st_mode & 0o777 == 0o600
    before = (tmp_path / "acl").stat().st_mtime_ns
    assert write_files(tmp_path, [TAG, WORKER]) is False  # nothing to reload for
    assert (tmp_path / "acl").stat().st_mtime_ns == before
    assert write_files(tmp_path, [TAG]) is True  # the worker's account gone
    assert (tmp_path / "passwd").read_text() == f"BF0001:{TAG.password_hash}\n"
    assert write_files(tmp_path, [TAG], mode=0o640) is True  # the same text, another mode
    assert (tmp_path / "acl").stat().st_mode & 0o777 == 0o640
    if os.geteuid() == 0:  # a file the broker's user could not read is written again, its own
        os.chown(tmp_path / "passwd", 65534, 65534)
        assert write_files(tmp_path, [TAG], mode=0o640) is True
        assert (tmp_path / "passwd").stat().st_uid == tmp_path.stat().st_uid


def test_a_stale_pid_file_naming_another_process_is_not_signalled(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "30"])
    try:
        (tmp_path / "mosquitto.pid").write_text(f"{other.pid}\n")
        assert reload(tmp_path) is False
        assert other.poll() is None  # SIGHUP would have stopped it
    finally:
        other.kill()
        other.wait()
    assert reload(tmp_path) is False  # and a pid that is gone


def test_a_running_broker_is_asked_to_reload(broker) -> None:  # type: ignore[no-untyped-def]
    assert reload(broker.state) is True
    assert reload(broker.state / "missing") is False
