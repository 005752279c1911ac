"""A minimal RFC 6455 client on the standard library, for the README checks.

    python3 .ci/ws.py ready URL                  -> prints the `ready` frame
    python3 .ci/ws.py walkthrough BASE T1 T2 C   -> the README's "Try it" steps
"""

import base64
import json
import os
import socket
import struct
import sys
import time
import urllib.parse

TIMEOUT = 15.0


class Client:
    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=TIMEOUT)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n"
        )
        self.sock.sendall(request.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise SystemExit(f"{url}: connection closed during the handshake")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" ":
            raise SystemExit(f"{url}: upgrade refused: {status.decode()}")

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("the server closed the connection")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """The next text message as JSON; pings are answered, pongs skipped."""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                (n,) = struct.unpack("!H", self._read(2))
            elif n == 127:
                (n,) = struct.unpack("!Q", self._read(8))
            payload = self._read(n)
            op = b0 & 0x0F
            if op == 0x1:
                return json.loads(payload)
            if op == 0x8:
                raise SystemExit(f"the server closed the connection: {payload!r}")
            if op == 0x9:
                self._send(0xA, payload)

    def recv_until(self, want, what):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            msg = self.recv()
            if want(msg):
                return msg
        raise SystemExit(f"timed out waiting for {what}")

    def _send(self, op, payload):
        mask = os.urandom(4)
        head = bytes([0x80 | op])
        n = len(payload)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send(self, obj):
        self._send(0x1, json.dumps(obj).encode())

    def close(self):
        self._send(0x8, struct.pack("!H", 1000))
        self.sock.close()


def ready(url):
    c = Client(url)
    msg = c.recv()
    if msg.get("type") != "ready":
        raise SystemExit(f"expected ready first, got {msg}")
    print(json.dumps(msg))
    c.close()


def walkthrough(base, sarah_token, john_token, conversation):
    """Sarah sees John come online, type, stop by himself, and go offline."""
    sarah = Client(f"{base}/ws?token={sarah_token}")
    assert sarah.recv()["type"] == "ready"
    john = Client(f"{base}/ws?token={john_token}&locale=en")
    assert john.recv()["type"] == "ready"
    online = sarah.recv_until(lambda m: m["type"] == "user_status", "John online")
    assert online["data"]["status"] == "online", online
    john.send({"type": "typing_start", "data": {"conversation_id": conversation}})
    typing = sarah.recv_until(lambda m: m["type"] == "user_typing", "John typing")
    assert typing["data"]["is_typing"] is True, typing
    assert typing["data"]["text"] == "John is typing…", typing
    stopped = sarah.recv_until(lambda m: m["type"] == "user_typing", "the lease running out")
    assert stopped["data"]["is_typing"] is False, stopped
    john.close()
    offline = sarah.recv_until(lambda m: m["type"] == "user_status", "John offline")
    assert offline["data"]["status"] == "offline", offline
    assert offline["data"]["last_seen"], offline
    sarah.close()
    print("walkthrough: online, typing, stop by lease, offline with last_seen")


if __name__ == "__main__":
    commands = {"ready": ready, "walkthrough": walkthrough}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        raise SystemExit(__doc__)
    commands[sys.argv[1]](*sys.argv[2:])
