"""A tiny headless-Chromium driver for the report tests (Chrome DevTools Protocol over a pipe).

Chromium started with `--remote-debugging-pipe` reads CDP commands (JSON, NUL-terminated) on
its fd 3 and writes replies and events on fd 4, so no websocket library is needed. The page is
loaded from disk (file://); the network stays off.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_chromium() -> str | None:
    env = os.environ.get("ORRERY_CHROMIUM")
    if env and Path(env).is_file():
        return env
    for name in CANDIDATES:
        p = shutil.which(name)
        if p:
            return p
    return None


class Browser:
    def __init__(self, binary: str, width: int = 1200, height: int = 900):
        self.profile = tempfile.mkdtemp(prefix="orrery-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # the child sees our pipe ends as fd 3 (commands in) and fd 4 (replies out)
        args = [
            binary, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--mute-audio", f"--user-data-dir={self.profile}", f"--window-size={width},{height}",
            "about:blank",
        ]  # fmt: skip

        def fds() -> None:  # move both ends out of the way first: either may already be 3 or 4
            import fcntl

            r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(r, 3)
            os.dup2(w, 4)

        self.proc = subprocess.Popen(args, preexec_fn=fds, pass_fds=(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, close_fds=False)  # fmt: skip
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []

    # -- protocol
    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, timeout_s: float) -> dict[str, Any]:
        import select

        deadline = time.monotonic() + timeout_s
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no reply from chromium")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict[str, Any]:  # fmt: skip
        i = self._send(method, params, session)
        while True:
            msg = self._read(timeout_s)
            if msg.get("id") == i:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout_s: float = 30.0) -> dict[str, Any]:
        for k, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(k)
        deadline = time.monotonic() + timeout_s
        while True:
            msg = self._read(max(deadline - time.monotonic(), 0.01))
            if msg.get("method") == method:
                return msg
            self.events.append(msg)

    # -- a page
    def open(self, path: Path, width: int = 1200, height: int = 900) -> Page:
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session, target)
        for domain in ("Page", "Runtime", "Log"):
            self.call(f"{domain}.enable", session=session)
        self.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.call("Page.navigate", {"url": Path(path).resolve().as_uri()}, session=session)
        self.wait_event("Page.loadEventFired", timeout_s=60)
        return page

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout_s=5)
        except Exception:  # noqa: BLE001 - it may already be gone
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    def __init__(self, browser: Browser, session: str, target: str):
        self.b, self.session, self.target = browser, session, target

    def close(self) -> None:
        self.b.call("Target.closeTarget", {"targetId": self.target})
        self.b.events = [ev for ev in self.b.events if ev.get("sessionId") != self.session]

    def eval(self, expression: str, timeout_s: float = 30.0) -> Any:
        res = self.b.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                               "awaitPromise": True}, session=self.session, timeout_s=timeout_s)  # fmt: skip
        if "exceptionDetails" in res:
            raise RuntimeError(f"page script failed: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 60.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            v = self.eval(expression)
            if v:
                return v
            time.sleep(0.1)
        raise TimeoutError(f"page never satisfied: {expression}")

    def errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far."""
        out = []
        for ev in self.b.events:
            if ev.get("sessionId") != self.session:
                continue
            m, p = ev.get("method"), ev.get("params", {})
            if m == "Runtime.exceptionThrown":
                out.append(f"exception: {p.get('exceptionDetails', {}).get('text')} "
                           f"{p.get('exceptionDetails', {}).get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console." + p["type"] + ": " + " ".join(str(a.get("value", a.get("description")))
                                                                  for a in p.get("args", [])))  # fmt: skip
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(f"log: {p['entry'].get('text')} ({p['entry'].get('url', '')})")
        return out

    def screenshot(self, path: Path, full_page: bool = True) -> Path:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            h = self.eval("Math.min(document.documentElement.scrollHeight, 16000)")
            w = self.eval("document.documentElement.scrollWidth")
            params["clip"] = {"x": 0, "y": 0, "width": w, "height": h, "scale": 1}
            params["captureBeyondViewport"] = True
        data = self.b.call("Page.captureScreenshot", params, session=self.session, timeout_s=60)["data"]
        Path(path).write_bytes(base64.b64decode(data))
        return Path(path)
