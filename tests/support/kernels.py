"""Code run in a user's kernel through their server's REST and websocket API, as a user's
own notebook would (a token of theirs, the Jupyter messaging protocol)."""

import asyncio
import json
import uuid

import requests


class KernelDied(AssertionError):
    """The kernel died while running the code (the server says it is restarting, or dead)."""


async def execute(ws_url, token, code, timeout=120):
    """Run ``code`` in a kernel over the Jupyter websocket protocol; its stdout.

    Raises ``KernelDied`` as soon as the server says the kernel is restarting or dead (a
    kill by the OOM killer, say), rather than waiting out ``timeout`` for a reply that
    cannot come."""
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    conn = await websocket_connect(HTTPRequest(ws_url, headers={"Authorization": f"token {token}"}))
    msg_id = uuid.uuid4().hex
    conn.write_message(json.dumps({
        "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "test",
                   "session": uuid.uuid4().hex, "version": "5.3", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True},
    }))
    out = []
    try:
        while True:
            msg = json.loads(await asyncio.wait_for(conn.read_message(), timeout))
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] in ("restarting", "dead"):
                raise KernelDied(f"the kernel is {msg['content']['execution_state']} while running {code[:80]!r}")
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                raise AssertionError("the kernel raised:\n" + "\n".join(msg["content"]["traceback"]))
            elif msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    finally:
        conn.close()


def kernel(hub, session, name):
    """A new kernel on ``name``'s server, with a token of theirs: (token, kernel id, websocket URL)."""
    token = hub.api(session, "POST", f"/users/{name}/tokens", json={"note": "limits"}).json()["token"]
    r = requests.post(f"{hub.url}/user/{name}/api/kernels", headers={"Authorization": f"token {token}"},
                      json={"name": "python3"}, timeout=60)
    assert r.status_code == 201, r.text
    ws = f"ws://127.0.0.1:{hub.port}/user/{name}/api/kernels/{r.json()['id']}/channels"
    return token, r.json()["id"], ws


def run(ws, token, code, timeout=120):
    """Run ``code`` in the kernel at ``ws``; its stdout."""
    return asyncio.run(execute(ws, token, code, timeout=timeout))
