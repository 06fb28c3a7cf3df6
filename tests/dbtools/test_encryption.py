"""age encryption as backups use it: streaming both ways, and interchangeable with the age tool."""

import hashlib
import io
import shutil
import subprocess

import pytest

from dbtools.encryption import (
    EncryptingWriter,
    decrypting_reader,
    is_encrypted,
    load_identities,
    parse_recipients,
)
from dbtools.errors import VerificationFailed

AGE = shutil.which("age")
AGE_KEYGEN = shutil.which("age-keygen")


@pytest.fixture
def keypair(tmp_path):
    """(public key, key file) made with pyrage, written as age-keygen writes them."""
    from pyrage import x25519

    identity = x25519.Identity.generate()
    key_file = tmp_path / "backup.agekey"
    key_file.write_text(f"# created: test\n# public key: {identity.to_public()}\n{identity}\n")
    key_file.chmod(0o600)
    return str(identity.to_public()), key_file


def _payload(n: int = 3 * (1 << 20) + 12345) -> bytes:
    return hashlib.shake_256(b"mcmanager").digest(n)


def _encrypt(data: bytes, recipients: list[str]) -> bytes:
    out = io.BytesIO()
    writer = EncryptingWriter(out, recipients)
    for i in range(0, len(data), 100_000):
        writer.write(data[i : i + 100_000])
    writer.close()
    return out.getvalue()


def test_round_trip_streams(keypair):
    public, key_file = keypair
    data = _payload()
    encrypted = _encrypt(data, [public])
    assert is_encrypted(encrypted) and data[:1000] not in encrypted
    reader = decrypting_reader(io.BytesIO(encrypted), key_file)
    assert reader.read() == data


def test_the_age_tool_reads_ours_and_we_read_its(tmp_path, keypair):
    if not AGE:
        pytest.skip("the age command line tool is not installed (apt-get install age)")
    public, key_file = keypair
    data = _payload(500_000)
    ours = tmp_path / "ours.age"
    ours.write_bytes(_encrypt(data, [public]))
    done = subprocess.run([AGE, "-d", "-i", str(key_file), str(ours)], capture_output=True, check=True)
    assert done.stdout == data
    theirs = subprocess.run([AGE, "-r", public], input=data, capture_output=True, check=True).stdout
    assert decrypting_reader(io.BytesIO(theirs), key_file).read() == data


def test_a_key_made_by_age_keygen_works(tmp_path):
    if not AGE_KEYGEN:
        pytest.skip("age-keygen is not installed (apt-get install age)")
    key_file = tmp_path / "k.txt"
    subprocess.run([AGE_KEYGEN, "-o", str(key_file)], capture_output=True, check=True)
    public = subprocess.run([AGE_KEYGEN, "-y", str(key_file)], capture_output=True, text=True, check=True).stdout
    encrypted = _encrypt(b"hello", parse_recipients(public))
    assert decrypting_reader(io.BytesIO(encrypted), key_file).read() == b"hello"


def test_several_recipients_each_can_decrypt(tmp_path, keypair):
    from pyrage import x25519

    public, key_file = keypair
    other = x25519.Identity.generate()
    other_file = tmp_path / "other.agekey"
    other_file.write_text(f"{other}\n")
    encrypted = _encrypt(b"rows", parse_recipients(f"{public}, {other.to_public()}"))
    assert decrypting_reader(io.BytesIO(encrypted), key_file).read() == b"rows"
    assert decrypting_reader(io.BytesIO(encrypted), other_file).read() == b"rows"


def test_a_wrong_key_is_one_clear_error(tmp_path, keypair):
    from pyrage import x25519

    public, _ = keypair
    wrong = tmp_path / "wrong.agekey"
    wrong.write_text(f"{x25519.Identity.generate()}\n")
    encrypted = _encrypt(_payload(200_000), [public])
    with pytest.raises(VerificationFailed, match="not one of the backup's recipients"):
        decrypting_reader(io.BytesIO(encrypted), wrong).read()


@pytest.mark.parametrize("damage", ["truncated", "flipped"])
def test_a_damaged_file_never_yields_all_its_plaintext(keypair, damage):
    public, key_file = keypair
    data = _payload(300_000)
    encrypted = bytearray(_encrypt(data, [public]))
    if damage == "truncated":
        encrypted = encrypted[: len(encrypted) - 100]
    else:
        encrypted[len(encrypted) // 2] ^= 0x01
    with pytest.raises(VerificationFailed, match="does not decrypt"):
        decrypting_reader(io.BytesIO(bytes(encrypted)), key_file).read()


def test_recipients_from_a_file_and_bad_ones(tmp_path, keypair):
    public, _ = keypair
    listed = tmp_path / "recipients.txt"
    listed.write_text(f"# the backup key\n{public}\n")
    assert parse_recipients(str(listed)) == [public]
    assert parse_recipients("") == []
    with pytest.raises(ValueError, match="not an age public key"):
        parse_recipients("age1notakey")
    with pytest.raises(ValueError, match="cannot read"):
        parse_recipients(str(tmp_path / "missing" / "recipients.txt"))


def test_key_file_problems_are_one_line(tmp_path):
    with pytest.raises(VerificationFailed, match="cannot read the decryption key file"):
        load_identities(tmp_path / "missing.agekey")
    empty = tmp_path / "empty.agekey"
    empty.write_text("# nothing here\n")
    with pytest.raises(VerificationFailed, match="holds no age secret key"):
        load_identities(empty)
    with pytest.raises(VerificationFailed, match="no decryption key is set"):
        decrypting_reader(io.BytesIO(b"age-encryption.org/v1\n"), "")
