"""Headless Firefox for the report tests, driven over Marionette (Firefox's own remote protocol, built in; no
geckodriver): load a file from disk, run a script in the page, take a screenshot, and read what the page wrote
to the browser console (script errors, CSP refusals)."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NAMES = ("firefox-esr", "firefox")
# The console messages a page caused: errors (flag 0) and exceptions of scripts or policies from file: URLs.
_PAGE_ERRORS = """
return Services.console.getMessageArray()
  .filter(m => m instanceof Ci.nsIScriptError && !(m.flags & Ci.nsIScriptError.warningFlag)
               && ((m.sourceName || '').startsWith('file:') || m.category === 'CSP'))
  .map(m => m.category + ': ' + m.errorMessage);
"""


def firefox() -> str | None:
    """The Firefox binary on PATH, else None."""
    return next((found for found in map(shutil.which, NAMES) if found), None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Marionette:
    """One headless Firefox and a Marionette session in it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer, self.next_id = sock, b"", 0
        self._read()  # the server's greeting: {"applicationType": "gecko", "marionetteProtocol": 3}
        self.call("WebDriver:NewSession", {"capabilities": {"alwaysMatch": {"acceptInsecureCerts": True}}})

    def _read(self) -> Any:
        while b":" not in self.buffer:
            self.buffer += self._recv()
        size, _, rest = self.buffer.partition(b":")
        while len(rest) < int(size):
            rest += self._recv()
        self.buffer = rest[int(size) :]
        return json.loads(rest[: int(size)])

    def _recv(self) -> bytes:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("Firefox closed the Marionette connection")
        return chunk

    def call(self, command: str, params: dict[str, Any] | None = None) -> Any:
        self.next_id += 1
        body = json.dumps([0, self.next_id, command, params or {}]).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body)
        _, _, error, result = self._read()
        if error:
            raise RuntimeError(f"{command}: {error.get('error')}: {error.get('message')}")
        return result

    def script(self, source: str, *args: Any) -> Any:
        return self.call("WebDriver:ExecuteScript", {"script": source, "args": list(args)})["value"]

    def open(self, page: Path, *, width: int = 1280, height: int = 1000) -> None:
        self.call("WebDriver:SetWindowRect", {"width": width, "height": height})
        self.call("WebDriver:Navigate", {"url": page.resolve().as_uri()})  # returns once the page has loaded

    def screenshot(self, out: Path) -> Path:
        out.write_bytes(base64.b64decode(self.call("WebDriver:TakeScreenshot", {"full": False})["value"]))
        return out

    def console_errors(self) -> list[str]:
        self.call("Marionette:SetContext", {"value": "chrome"})
        try:
            return self.script(_PAGE_ERRORS)
        finally:
            self.call("Marionette:SetContext", {"value": "content"})


@contextlib.contextmanager
def session(timeout: float = 60) -> Iterator[Marionette]:
    """A headless Firefox with a fresh profile, and its Marionette session; both gone on exit."""
    binary = firefox()
    if binary is None:
        raise RuntimeError("no firefox binary on PATH")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="redaes-firefox-") as profile:
        prefs = {
            "marionette.port": port,
            "browser.shell.checkDefaultBrowser": False,
            "datareporting.policy.dataSubmissionEnabled": False,
        }
        Path(profile, "user.js").write_text(
            "".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in prefs.items())
        )
        proc = subprocess.Popen(
            [binary, "--headless", "--marionette", "--remote-allow-system-access", "--no-remote", "--profile", profile],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise RuntimeError(f"Firefox did not open Marionette on port {port}") from None
                    time.sleep(0.2)
            with sock:
                driver = Marionette(sock)
                yield driver
                with contextlib.suppress(RuntimeError, OSError):
                    driver.call("Marionette:Quit", {"flags": ["eForceQuit"]})
        finally:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
