"""What the datasets page offers to copy: a badge (Markdown, HTML), a plain link, and a
bookmarklet that turns the DOI on the page one is reading into a launch link.

Their links start with :func:`public_hub_url`: the hub's address from its configuration
(``c.JupyterHub.public_url``), never from the request's ``Host:`` header (which whoever
sends the request chooses). Without ``public_url`` they are relative (``/hub/launch?...``);
the datasets page then completes them in the browser from the address it was loaded from.
"""

from __future__ import annotations

import html
import json
from urllib.parse import quote, urlparse

BADGE_PATH = "launch/badge.svg"
BADGE_ALT = "Open in oggmhub"

# A small badge in the style of BinderHub's: "launch | oggmhub"
BADGE_SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="118" height="20" role="img" aria-label="launch: oggmhub">
<title>launch: oggmhub</title>
<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="118" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="50" height="20" fill="#555"/><rect x="50" width="68" height="20" fill="#2c7fb8"/><rect width="118" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="25" y="14">launch</text><text x="84" y="14">oggmhub</text></g>
</svg>
"""


def public_hub_url(public_url, hub_prefix):
    """The hub's URL for links: ``c.JupyterHub.public_url``'s scheme and host + ``hub_prefix``
    (``https://hub.example.org/hub/``); without a public URL, ``hub_prefix`` alone (relative).

    ``public_url`` is JupyterHub's setting as its handlers hold it (a parsed URL or a
    string; empty when unset).
    """
    if public_url and isinstance(public_url, str):
        public_url = urlparse(public_url)
    if not public_url or not public_url.scheme or not public_url.netloc:
        return hub_prefix
    return f"{public_url.scheme}://{public_url.netloc}{hub_prefix}"


def launch_url(hub_url, identifier):
    """``hub_url`` (``https://host/hub/``) + ``launch?dataset=<identifier>``."""
    return f"{hub_url}launch?dataset={quote(identifier, safe='/:')}"


def snippets(hub_url, identifier):
    """{"markdown", "html", "link"} launching the dataset ``identifier`` (its DOI if it has one)."""
    url = launch_url(hub_url, identifier)
    badge = hub_url + BADGE_PATH
    return {
        "markdown": f"[![{BADGE_ALT}]({badge})]({url})",
        "html": f'<a href="{html.escape(url)}"><img src="{html.escape(badge)}" alt="{BADGE_ALT}"></a>',
        "link": url,
    }


_BOOKMARKLET = (
    "(function(){{var h={hub};var r=/10\\.[0-9]{{4,9}}\\/[^\\s\"'<>]+/;"
    "var m=document.querySelector('meta[name=\"citation_doi\" i],meta[name=\"dc.identifier\" i],"
    "meta[name=\"prism.doi\" i],meta[property=\"citation_doi\" i]');"
    "var d=m&&(m.getAttribute('content')||'').match(r);"
    "if(!d){{d=(document.body&&document.body.innerText||'').match(r);}}"
    "if(!d){{alert('No DOI found on this page');return;}}"
    "var doi=d[0].replace(/[.,;:)\\]]+$/,'');"
    "window.open(h+'launch?dataset='+encodeURIComponent(doi));}})();"
)


def bookmarklet(hub_url):
    """A ``javascript:`` URL: finds a DOI in the page's ``citation_doi``/``dc.identifier``
    meta tags, else its text, and opens the hub's launch link for it."""
    return "javascript:" + _BOOKMARKLET.format(hub=json.dumps(hub_url))
