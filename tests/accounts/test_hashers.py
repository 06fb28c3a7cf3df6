"""The Werkzeug hasher: Flask-era passwords verify, wrong ones do not, and a login upgrades them."""

import hashlib

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import check_password, identify_hasher

from accounts.hashers import WerkzeugPasswordHasher, check_werkzeug_hash
from accounts.models import User

PASSWORD = "creeper-aww-man"
DJANGO_DEFAULT = "django.contrib.auth.hashers.PBKDF2PasswordHasher"
WERKZEUG = "accounts.hashers.WerkzeugPasswordHasher"


def pbkdf2_hash(password: str, salt: str = "Ab3dE6gH9jK2mN5p", iterations: int = 600_000) -> str:
    """Werkzeug's generate_password_hash(password, "pbkdf2:sha256:N"), byte for byte."""
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2:sha256:{iterations}${salt}${digest}"


def scrypt_hash(password: str, salt: str = "Zx8Cv7Bn6Mq5Wr4T", n: int = 1024, r: int = 8, p: int = 1) -> str:
    """Werkzeug's generate_password_hash(password, "scrypt:n:r:p"): dklen 64, maxmem 132*n*r*p."""
    digest = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p).hex()
    return f"scrypt:{n}:{r}:{p}${salt}${digest}"


@pytest.fixture
def hashers(settings):
    # conftest keeps only MD5 for speed; these tests need ours behind a real default.
    settings.PASSWORD_HASHERS = [DJANGO_DEFAULT, WERKZEUG]


def test_settings_list_it_after_djangos_default():
    from django.conf import settings as real  # the project's settings, not the test override

    from mcmanager import settings as module

    assert module.PASSWORD_HASHERS[0] == DJANGO_DEFAULT
    assert module.PASSWORD_HASHERS[-1] == WERKZEUG
    assert real.AUTH_USER_MODEL == "accounts.User"


def test_real_pbkdf2_600000_hash_verifies(hashers):
    encoded = "werkzeug$" + pbkdf2_hash(PASSWORD)
    assert isinstance(identify_hasher(encoded), WerkzeugPasswordHasher)
    assert check_password(PASSWORD, encoded)
    assert not check_password(PASSWORD + "x", encoded)


@pytest.mark.parametrize("params", [(1024, 8, 1), (2048, 4, 2), (4096, 8, 1)])
def test_scrypt_hash_honours_its_parameters(hashers, params):
    n, r, p = params
    encoded = "werkzeug$" + scrypt_hash(PASSWORD, n=n, r=r, p=p)
    assert check_password(PASSWORD, encoded)
    assert not check_password("Creeper-aww-man", encoded)
    # The same digest under other parameters is refused: N is read from the hash.
    forged = encoded.replace(f"scrypt:{n}:", f"scrypt:{n * 2}:", 1)
    assert not check_password(PASSWORD, forged)


def test_scrypt_defaults_when_method_has_no_arguments(hashers):
    salt = "q1w2e3r4t5y6u7i8"
    digest = hashlib.scrypt(PASSWORD.encode(), salt=salt.encode(), n=32768, r=8, p=1, maxmem=132 * 32768 * 8).hex()
    assert check_password(PASSWORD, f"werkzeug$scrypt${salt}${digest}")


def test_werkzeug_cross_check():
    security = pytest.importorskip("werkzeug.security")
    for method in ("pbkdf2:sha256:1000", "scrypt:1024:8:1", "pbkdf2:sha512:2000"):
        made = security.generate_password_hash(PASSWORD, method=method)
        assert WerkzeugPasswordHasher().verify(PASSWORD, "werkzeug$" + made)
        assert not WerkzeugPasswordHasher().verify("nope", "werkzeug$" + made)
    assert security.check_password_hash(pbkdf2_hash(PASSWORD, iterations=1000), PASSWORD)
    assert security.check_password_hash(scrypt_hash(PASSWORD), PASSWORD)


@pytest.mark.parametrize(
    "bad",
    [
        "plaintext",
        "sha256$salt$abcdef",  # Werkzeug < 2.3's plain HMAC method: not carried
        "pbkdf2:md4:1000$salt$abcd",
        "pbkdf2:sha256:99999999999$salt$abcd",
        "scrypt:1073741824:8:1$salt$abcd",  # would need 1 TiB: refused, never attempted
        "scrypt:1000:8:1$salt$abcd",  # n not a power of two
        "scrypt:1024:8$salt$abcd",
        "pbkdf2:sha256:600000$salt$NOTHEX",
        "pbkdf2:sha256:600000$sa$lt$abcd",
        "",
    ],
)
def test_bad_hashes_never_verify_and_are_named(hashers, bad):
    assert check_werkzeug_hash(bad) is not None
    assert not WerkzeugPasswordHasher().verify("anything", "werkzeug$" + bad)
    assert not check_password("anything", "werkzeug$" + bad)


def test_encode_makes_the_old_format(hashers):
    encoded = WerkzeugPasswordHasher().encode(PASSWORD, "Ab3dE6gH9jK2mN5p", iterations=1000)
    assert encoded == "werkzeug$" + pbkdf2_hash(PASSWORD, iterations=1000)
    summary = WerkzeugPasswordHasher().safe_summary(encoded)
    assert summary["method"] == "pbkdf2:sha256:1000"
    assert PASSWORD not in str(summary)


@pytest.mark.django_db
def test_login_upgrades_the_hash_to_djangos_default(hashers):
    user = User.objects.create_user("steve")
    from accounts.hashers import stored_password

    User.objects.filter(pk=user.pk).update(password=stored_password(scrypt_hash(PASSWORD)))
    assert authenticate(username="steve", password="wrong") is None
    assert User.objects.get(pk=user.pk).password.startswith("werkzeug$")  # a failure changes nothing
    assert authenticate(username="steve", password=PASSWORD) is not None
    stored = User.objects.get(pk=user.pk).password
    assert stored.startswith("pbkdf2_sha256$")
    assert check_password(PASSWORD, stored)


def test_a_real_scrypt_hash_fits_djangos_column_and_verifies(hashers):
    from accounts.hashers import stored_password

    werkzeug_hash = scrypt_hash(PASSWORD, n=32768, r=8, p=1)
    assert len(werkzeug_hash) == 162  # Werkzeug's own length: more than the 128 Django stores
    stored = stored_password(werkzeug_hash)
    assert len(stored) <= 128 and werkzeug_hash.startswith(stored.removeprefix("werkzeug$"))
    assert check_password(PASSWORD, stored)
    assert not check_password(PASSWORD + "!", stored)
    # A pbkdf2 hash fits whole and is kept exactly.
    assert stored_password(pbkdf2_hash(PASSWORD)) == "werkzeug$" + pbkdf2_hash(PASSWORD)
    # Cut below 256 bits, a digest no longer counts.
    short = stored.rsplit("$", 1)[0] + "$" + stored.rsplit("$", 1)[1][:40]
    assert not check_password(PASSWORD, short)
