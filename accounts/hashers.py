"""Passwords of the Flask-era mcServerManager, still usable here.

Its users' ``password_hash`` holds a Werkzeug hash, ``method$salt$hexdigest`` with the
method ``pbkdf2:sha256:600000`` or ``scrypt:32768:8:1``. ``import_legacy`` stores it as
``werkzeug$`` + that hash, so Django's ``identify_hasher`` finds this hasher by its
algorithm name. It verifies with the standard library only (Flask is no dependency),
and ``must_update`` makes Django rehash the password with its default hasher at the
user's first successful login: the old format then disappears account by account.
"""

import hashlib
import hmac
import re
import secrets

from django.contrib.auth.hashers import BasePasswordHasher, mask_hash
from django.utils.translation import gettext_noop as _

ALGORITHM = "werkzeug"
DEFAULT_PBKDF2_ITERATIONS = 600_000
SCRYPT_DEFAULTS = (2**15, 8, 1)
# Bounds on the work a stored hash may ask for: a hash is data (an imported file), and a
# forged scrypt:2**30:... would make every login attempt allocate gigabytes.
MAX_PBKDF2_ITERATIONS = 10_000_000
MAX_SCRYPT_MEMORY = 1 << 30
PBKDF2_DIGESTS = frozenset({"sha1", "sha224", "sha256", "sha384", "sha512"})
WERKZEUG_HASH_RE = re.compile(
    r"^(?P<method>(?:pbkdf2|scrypt)(?::[A-Za-z0-9]+)*)\$(?P<salt>[^$]*)\$(?P<hash>[0-9a-f]+)\Z"
)


class WerkzeugHashError(ValueError):
    """A stored hash this hasher cannot (or will not) compute."""


def parse_method(method: str) -> tuple[str, tuple]:
    """("pbkdf2", (digest, iterations)) or ("scrypt", (n, r, p)), as Werkzeug reads the method."""
    name, *args = method.split(":")
    try:
        if name == "pbkdf2":
            if len(args) > 2:
                raise WerkzeugHashError("pbkdf2 takes at most 2 arguments")
            digest = args[0] if args else "sha256"
            iterations = int(args[1]) if len(args) == 2 else DEFAULT_PBKDF2_ITERATIONS
            if digest not in PBKDF2_DIGESTS or not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
                raise WerkzeugHashError(f"pbkdf2 with {digest} and {iterations} iterations is not supported")
            return name, (digest, iterations)
        if name == "scrypt":
            if args and len(args) != 3:
                raise WerkzeugHashError("scrypt takes 3 arguments")
            n, r, p = (int(a) for a in args) if args else SCRYPT_DEFAULTS
            if n < 2 or n & (n - 1) or r < 1 or p < 1 or scrypt_maxmem(n, r, p) > MAX_SCRYPT_MEMORY:
                raise WerkzeugHashError(f"scrypt with n={n}, r={r}, p={p} is not supported")
            return name, (n, r, p)
    except ValueError as exc:
        if isinstance(exc, WerkzeugHashError):
            raise
        raise WerkzeugHashError(f"bad arguments in {method!r}") from None
    raise WerkzeugHashError(f"unknown method {name!r}")


def scrypt_maxmem(n: int, r: int, p: int) -> int:
    # Werkzeug's bound (scrypt needs 128 * n * r * p bytes, plus a little), with room for
    # OpenSSL's own overhead, which refuses Werkzeug's exact bound for small parameters.
    return 132 * n * r * p + (1 << 20)


def check_werkzeug_hash(werkzeug_hash: str) -> str | None:
    """None when the hash is one this hasher can verify, else why not (for import's report)."""
    match = WERKZEUG_HASH_RE.match(werkzeug_hash or "")
    if match is None:
        return "not a Werkzeug pbkdf2 or scrypt hash (method$salt$hexdigest)"
    try:
        parse_method(match["method"])
    except WerkzeugHashError as exc:
        return str(exc)
    return None


def werkzeug_digest(method: str, salt: str, password: str) -> str:
    """The hex digest Werkzeug's generate_password_hash computes for this method and salt."""
    name, args = parse_method(method)
    if name == "pbkdf2":
        digest, iterations = args
        return hashlib.pbkdf2_hmac(digest, password.encode(), salt.encode(), iterations).hex()
    n, r, p = args
    return hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=scrypt_maxmem(n, r, p)).hex()


# Django's password column holds 128 characters; Werkzeug's scrypt hashes are 162 (a 64-byte
# digest in hex). A stored digest may therefore be a prefix of the real one, never shorter
# than 256 bits: the hasher compares the first bits of the digest it computes.
PASSWORD_COLUMN = 128
MIN_DIGEST_HEX = 64


def stored_password(werkzeug_hash: str) -> str:
    """``werkzeug$`` + the hash, its digest cut to 256 bits only when the whole would not fit the column."""
    encoded = f"{ALGORITHM}${werkzeug_hash}"
    excess = len(encoded) - PASSWORD_COLUMN
    if excess <= 0:
        return encoded
    method_salt, digest = werkzeug_hash.rsplit("$", 1)
    return f"{ALGORITHM}${method_salt}${digest[: max(MIN_DIGEST_HEX, len(digest) - excess)]}"


class WerkzeugPasswordHasher(BasePasswordHasher):
    """Verifies ``werkzeug$<Werkzeug hash>``; never the preferred hasher, so logins upgrade it."""

    algorithm = ALGORITHM

    def salt(self) -> str:
        # Werkzeug's salts: 16 letters and digits.
        return secrets.token_hex(8)

    def encode(self, password: str, salt: str, iterations: int | None = None) -> str:
        """A hash in the old application's current format (pbkdf2:sha256:600000), for tests and tools."""
        self._check_encode_args(password, salt)
        method = f"pbkdf2:sha256:{iterations or DEFAULT_PBKDF2_ITERATIONS}"
        return f"{self.algorithm}${method}${salt}${werkzeug_digest(method, salt, password)}"

    def decode(self, encoded: str) -> dict:
        algorithm, werkzeug_hash = encoded.split("$", 1)
        assert algorithm == self.algorithm
        match = WERKZEUG_HASH_RE.match(werkzeug_hash)
        if match is None:
            raise WerkzeugHashError("not a Werkzeug pbkdf2 or scrypt hash")
        return {"algorithm": algorithm, "method": match["method"], "salt": match["salt"], "hash": match["hash"]}

    def verify(self, password: str, encoded: str) -> bool:
        try:
            decoded = self.decode(encoded)
            computed = werkzeug_digest(decoded["method"], decoded["salt"], password)
        except (WerkzeugHashError, ValueError, MemoryError):
            return False
        stored = decoded["hash"]
        if len(stored) < min(MIN_DIGEST_HEX, len(computed)):
            return False
        return hmac.compare_digest(computed[: len(stored)], stored)

    def safe_summary(self, encoded: str) -> dict:
        try:
            decoded = self.decode(encoded)
        except WerkzeugHashError:
            return {_("algorithm"): self.algorithm, _("hash"): mask_hash(encoded.split("$", 1)[-1])}
        return {
            _("algorithm"): self.algorithm,
            _("method"): decoded["method"],
            _("salt"): mask_hash(decoded["salt"], show=2),
            _("hash"): mask_hash(decoded["hash"]),
        }

    def must_update(self, encoded: str) -> bool:
        # Always: the first successful login rehashes with Django's default hasher.
        return True

    def harden_runtime(self, password: str, encoded: str) -> None:
        # The work factor is the old application's, fixed in each hash; nothing to even out.
        return None
