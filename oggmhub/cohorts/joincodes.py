"""Join codes: short random codes an organiser hands out; only their hash is stored.

A code is 12 characters of Crockford base32 in three groups (``K7QF-3MZP-WX2D``, 60 bits
of randomness). Students may type it in any case, with or without dashes or spaces;
``O`` and ``I``/``L`` are read as ``0`` and ``1``. The hub keeps a salted SHA-256 of the
normalised code (``sha256$SALT$HEX``): 60 random bits need no slow hash, and checking a
code against every cohort stays cheap on the hub's event loop.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32: no I, L, O, U
_READ_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
GROUPS, GROUP_LENGTH = 3, 4


def new_code():
    """A fresh random code, e.g. ``K7QF-3MZP-WX2D``."""
    chars = "".join(secrets.choice(ALPHABET) for _ in range(GROUPS * GROUP_LENGTH))
    return "-".join(chars[i:i + GROUP_LENGTH] for i in range(0, len(chars), GROUP_LENGTH))


def normalize(code):
    """The canonical form of what a student typed (upper case, no separators)."""
    return "".join(str(code or "").upper().split()).replace("-", "").translate(_READ_AS)


def hash_code(code, salt=None):
    """``sha256$SALT$HEX`` of the normalised code; what the hub stores."""
    salt = salt or secrets.token_hex(8)
    digest = hashlib.sha256(f"{salt}:{normalize(code)}".encode()).hexdigest()
    return f"sha256${salt}${digest}"


def verify(code, hashed):
    """Whether ``code`` matches ``hashed`` (constant-time comparison)."""
    try:
        scheme, salt, _ = str(hashed).split("$")
    except ValueError:
        return False
    return scheme == "sha256" and bool(normalize(code)) and hmac.compare_digest(hash_code(code, salt), hashed)
