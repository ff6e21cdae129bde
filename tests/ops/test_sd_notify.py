"""sd_notify against a real AF_UNIX datagram socket (filesystem path and abstract namespace)."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from ampgate.daemon import systemd


@pytest.fixture(params=["path", "abstract"])
def listener(request, tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        path = str(tmp_path / "notify.sock")
        sock.bind(path)
        env_value = path
    else:
        name = f"ampgate-test-{uuid.uuid4().hex}"
        sock.bind(b"\0" + name.encode())
        env_value = "@" + name
    sock.settimeout(2)
    try:
        yield sock, {"NOTIFY_SOCKET": env_value}
    finally:
        sock.close()


def test_each_notification_arrives_as_one_datagram(listener):
    sock, env = listener
    assert systemd.notify_ready("polling 3 devices", environ=env)
    assert sock.recv(4096) == b"READY=1\nSTATUS=polling 3 devices"
    assert systemd.notify_watchdog(environ=env)
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert systemd.notify_status("2/3 up\nmeter stale", environ=env)
    assert sock.recv(4096) == b"STATUS=2/3 up meter stale"
    assert systemd.notify_reloading(environ=env)
    assert sock.recv(4096) == b"RELOADING=1"
    assert systemd.notify_stopping(environ=env)
    assert sock.recv(4096) == b"STOPPING=1"


def test_outside_systemd_everything_is_a_silent_no_op():
    for env in ({}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "relative/path"}):
        assert systemd.notify_ready(environ=env) is False
        assert systemd.notify_watchdog(environ=env) is False


def test_a_vanished_socket_does_not_raise(tmp_path):
    env = {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}
    assert systemd.notify_watchdog(environ=env) is False


def test_watchdog_interval_only_for_this_process():
    me = str(os.getpid())
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": me}) == 30.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "15000000"}) == 15.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}) is None
    assert systemd.watchdog_interval({}) is None
