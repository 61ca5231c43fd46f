"""SHA-512 crypt hashes through the system's libcrypt (libxcrypt on Debian).

Python's `crypt` module is gone in 3.13; the C library it wrapped is still on
every Debian system, and it is the same code that checks the hash at login.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import secrets
import string

from installer.errors import OnehciError

_SALT_ALPHABET = "./" + string.digits + string.ascii_uppercase + string.ascii_lowercase


def _libcrypt() -> ctypes.CDLL:
    name = ctypes.util.find_library("crypt") or "libcrypt.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise OnehciError("libcrypt is missing; install it with `apt-get install libcrypt1`") from None
    lib.crypt.restype = ctypes.c_char_p
    lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    return lib


def crypt(password: str, setting: str) -> str:
    """crypt(3): hash `password` with the method and salt of `setting` (a salt or a full hash)."""
    result = _libcrypt().crypt(password.encode("utf-8"), setting.encode("ascii"))
    if not result or result.startswith(b"*"):
        raise OnehciError("libcrypt refused to hash the password")
    return result.decode("ascii")


def sha512_crypt(password: str) -> str:
    """A `$6$` hash with a fresh 16-character salt."""
    if not password:
        raise OnehciError("an empty password cannot be hashed")
    if "\0" in password:  # crypt(3) would stop there and hash only the start
        raise OnehciError("the password holds a NUL byte, which crypt(3) cannot take")
    salt = "".join(secrets.choice(_SALT_ALPHABET) for _ in range(16))
    return crypt(password, f"$6${salt}$")


def verify(password: str, hashed: str) -> bool:
    return secrets.compare_digest(crypt(password, hashed), hashed)
