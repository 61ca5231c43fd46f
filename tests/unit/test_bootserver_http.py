"""The boot server's HTTP side for real, on loopback addresses standing for the LAN: a node's
preseed (and its install token) goes to that node only and only while it is armed; the callback
counts only from the node, once; idle connections are bounded and time out; what a client sends
reaches the event stream escaped; a failed rebuild of the tree leaves the node armed."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from installer import bootserver, pxe
from installer.bootstate import INSTALL, INSTALLED, BootStates
from installer.errors import OnehciError
from installer.waiting import Pending, wait_until

NODE_IP, OTHER_IP = "127.0.0.11", "127.0.0.99"  # loopback addresses standing for lab1 and a stranger


@pytest.fixture
def serving(boot_server):
    server = boot_server
    server.by_ip = {NODE_IP: "lab1"}  # lab1's planned address, here on loopback
    httpd = bootserver._HttpServer(("127.0.0.1", 0), server._handler())
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    server.port = httpd.server_address[1]
    yield server
    httpd.shutdown()
    httpd.server_close()


def get(server, path: str, source: str = NODE_IP) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10, source_address=(source, 0))
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def test_a_preseed_goes_to_its_node_only_and_only_while_armed(serving):
    status, body = get(serving, "/preseed/lab1.cfg")
    assert status == 200 and b"token-lab1" in body
    assert get(serving, "/preseed/lab1.cfg", OTHER_IP)[0] == 403
    assert get(serving, "/preseed/lab2.cfg")[0] == 403  # lab1 asking for lab2's
    refused = [(e.kind, e.detail) for e in serving.events if e.kind.endswith("-refused")]
    assert refused == [("http-refused", f"preseed/lab1.cfg asked by {OTHER_IP}, which is no node of the site"),
                       ("preseed-refused", f"lab2's preseed asked by {NODE_IP}, which is not lab2's address")]
    # installed: the preseed and its token are no longer served, even to the node
    assert get(serving, "/installed/lab1?token=token-lab1")[0] == 200
    assert BootStates(serving.states_dir).get("lab1").state == INSTALLED
    assert get(serving, "/preseed/lab1.cfg")[0] == 403
    assert "installed, not armed" in serving.events[-1].detail


@pytest.mark.parametrize("boot_server", ["image"], indirect=True)
def test_image_install_settings_go_to_their_node_only_and_only_while_armed(serving, fake_image):
    status, body = get(serving, "/install/lab1.conf")
    assert status == 200 and b"token=token-lab1" in body and b"HOSTNAME='lab1'" in body
    assert get(serving, "/install/lab1.conf", OTHER_IP)[0] == 403
    assert get(serving, "/install/lab2.conf")[0] == 403  # lab1 asking for lab2's
    assert ("settings-refused", f"lab2's install settings asked by {NODE_IP}, which is not lab2's address") in \
        [(e.kind, e.detail) for e in serving.events]
    # the image: the same bytes for every node of the site, streamed, to no one else
    status, body = get(serving, "/image/root.tar.zst")
    assert status == 200 and body == (fake_image / "root.tar.zst").read_bytes()
    wait_until(lambda: any(e.kind == "image" and e.detail.startswith("image/root.tar.zst sent in") for e in serving.events)
               or Pending("not said"), timeout=10, every=0.05, timed_out=lambda _: "the image was never said sent")
    assert get(serving, "/image/root.tar.zst", OTHER_IP)[0] == 403
    assert get(serving, "/installed/lab1?token=token-lab1")[0] == 200
    assert get(serving, "/install/lab1.conf")[0] == 403
    assert "installed, not armed: its install settings are not served" in serving.events[-1].detail


def test_the_callback_counts_from_the_node_once(serving):
    assert get(serving, "/installed/lab1?token=token-lab1", OTHER_IP)[0] == 403  # the right token, another host
    assert BootStates(serving.states_dir).get("lab1").state == INSTALL
    assert get(serving, "/installed/lab1?token=token-lab1")[0] == 200
    assert get(serving, "/installed/lab1?token=token-lab1")[0] == 403  # spent
    assert get(serving, "/onehci/finish.sh", OTHER_IP)[0] == 403  # the boot files are for the site's nodes
    assert get(serving, "/onehci/finish.sh")[0] == 200


def test_a_failed_rebuild_leaves_the_node_armed(serving, monkeypatch):
    def broken_build(*_a, **_k):
        raise OnehciError("no space left on the boot tree's disk")

    monkeypatch.setattr(pxe, "build", broken_build)
    with pytest.raises(OnehciError):
        serving.complete("lab1", "token-lab1")
    boot = BootStates(serving.states_dir).get("lab1")
    assert (boot.state, boot.token) == (INSTALL, "token-lab1")  # the callback can come again


def test_escape_bytes_from_a_client_reach_the_event_stream_escaped(serving):
    with socket.create_connection(("127.0.0.1", serving.port), timeout=10, source_address=(NODE_IP, 0)) as sock:
        sock.sendall(b"GET /nothing\x1b[2J HTTP/1.0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.0 404")
    serving.syslog_message(NODE_IP, "<13>onehci: disk \x1b]0;owned\x07 found")
    lines = [e.line() for e in serving.events]
    assert not any("\x1b" in line or "\x07" in line for line in lines), lines
    assert any("\\x1b]0;owned\\x07" in line for line in lines)


def test_idle_connections_are_bounded_and_time_out(serving, monkeypatch):
    idle = []
    try:
        for _ in range(bootserver.MAX_CLIENTS + 8):  # silent clients hold no more than MAX_CLIENTS threads
            sock = socket.create_connection(("127.0.0.1", serving.port), timeout=5)
            idle.append(sock)
        assert threading.active_count() <= bootserver.MAX_CLIENTS + 10
        # the extra ones were closed at once: reading gives end of file, not a wait
        closed = 0
        for sock in idle[-8:]:
            sock.settimeout(5)
            try:
                closed += sock.recv(1) == b""
            except ConnectionResetError:
                closed += 1
        assert closed == 8
    finally:
        for sock in idle:
            sock.close()
    # the slots come back as the server's threads see the closes (asynchronous: a busy machine is slower)
    def served():
        try:
            return get(serving, "/onehci/finish.sh")[0] == 200 or Pending("not 200")
        except (ConnectionError, http.client.HTTPException) as exc:
            return Pending(str(exc))

    wait_until(served, timeout=10, every=0.1, timed_out=lambda left: f"no slot came back in 10 s: {left}")


def test_a_silent_connection_is_closed_after_the_idle_timeout(serving, monkeypatch):
    monkeypatch.setattr(bootserver, "IDLE_TIMEOUT", 1.0)
    httpd = bootserver._HttpServer(("127.0.0.1", 0), serving._handler())  # a handler made with the short timeout
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with socket.create_connection(("127.0.0.1", httpd.server_address[1]), timeout=10) as sock:
            sock.sendall(b"GET /onehci/fin")  # half a request line, then nothing
            assert sock.recv(100) == b""  # closed by the server well before our own 10 s
    finally:
        httpd.shutdown()
        httpd.server_close()
