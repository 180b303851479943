"""Looking at a user's desktop from outside: its VNC server, its windows, its processes
and what the browser's noVNC canvas shows. Used by the desktop test and benchmark."""

from __future__ import annotations

import os
import re
import subprocess

import psutil

from oggmhub.backends.local.processes import session_processes


def desktop_server(home):
    """The TigerVNC server whose X authority lives in ``home`` (one per user), or None."""
    auth = os.path.join(home, ".Xauthority")
    for proc in psutil.process_iter(["name", "cmdline"]):
        if proc.info["name"] == "Xtigervnc" and auth in (proc.info["cmdline"] or []):
            return proc
    return None


def window_names(display, home):
    """Names of the windows on ``display``, as the X server lists them (none when the
    listing fails: a window closing while xwininfo walks the tree makes it fail)."""
    listing = subprocess.run(
        ["xwininfo", "-root", "-tree"], capture_output=True, text=True,
        env={**os.environ, "DISPLAY": display, "XAUTHORITY": os.path.join(home, ".Xauthority")},
    )
    return re.findall(r'0x[0-9a-f]+ "([^"]*)"', listing.stdout) if listing.returncode == 0 else []


def marked(session):
    """``"pid name"`` of each process carrying a server session's marker."""
    return [f"{p.pid} {p.name()}" for p in session_processes(session)]


def memory_bytes(procs):
    """Memory of ``procs`` together (those still running), as PSS: each shared page counted
    once over the processes sharing it, so the sum is what the session really adds (a sum
    of RSS counts the desktop's shared libraries once per process)."""
    total = 0
    for proc in procs:
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            continue
    return total


def canvas_colours(page):
    """How many distinct colours the noVNC canvas shows (sampled on a grid): a black or
    empty framebuffer has one, a drawn desktop has many."""
    return page.evaluate("""() => {
        const canvas = document.querySelector('#screen canvas');
        if (!canvas || !canvas.width) return 0;
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        const seen = new Set();
        for (let y = 0; y < canvas.height; y += 7)
            for (let x = 0; x < canvas.width; x += 7) {
                const i = 4 * (y * canvas.width + x);
                seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
            }
        return seen.size;
    }""")
