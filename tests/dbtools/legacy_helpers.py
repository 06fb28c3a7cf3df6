"""A Flask-era mcServerManager database, built with plain sqlite3 as its SQLAlchemy models made it.

It holds good rows, one of each kind of bad row, and passwords hashed in Werkzeug's exact
format (made with hashlib): one real pbkdf2:sha256:600000 hash, and scrypt hashes with a
small N so the tests stay fast (the hasher reads N from each hash).
"""

import hashlib
import re
import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
CREATE TABLE user (
    id INTEGER NOT NULL,
    username VARCHAR(80) NOT NULL,
    password_hash VARCHAR(128),
    is_admin BOOLEAN,
    email VARCHAR(120),
    created_at DATETIME,
    last_login DATETIME,
    is_active BOOLEAN,
    PRIMARY KEY (id),
    UNIQUE (username),
    UNIQUE (email)
);
CREATE TABLE server (
    id INTEGER NOT NULL,
    server_name VARCHAR(150) NOT NULL,
    version VARCHAR(20) NOT NULL,
    port INTEGER NOT NULL,
    status VARCHAR(20),
    pid INTEGER,
    level_seed VARCHAR(100),
    gamemode VARCHAR(20),
    difficulty VARCHAR(20),
    hardcore BOOLEAN,
    pvp BOOLEAN,
    spawn_monsters BOOLEAN,
    motd VARCHAR(150),
    memory_mb INTEGER,
    owner_id INTEGER NOT NULL,
    PRIMARY KEY (id),
    UNIQUE (server_name),
    FOREIGN KEY(owner_id) REFERENCES user (id)
);
CREATE TABLE configuration (
    id INTEGER NOT NULL,
    "key" VARCHAR(100) NOT NULL,
    value TEXT NOT NULL,
    updated_at DATETIME,
    updated_by INTEGER,
    PRIMARY KEY (id),
    UNIQUE ("key"),
    FOREIGN KEY(updated_by) REFERENCES user (id)
);
"""
REVISION = "3f2a9c1d7e4b"
PASSWORDS = {"alice": "alice-old-pass-2023", "bob": "bob-scrypt-secret", "carol": "carol-likes-redstone"}


def pbkdf2_hash(password: str, salt: str, iterations: int = 600_000) -> str:
    """Werkzeug's generate_password_hash(password, "pbkdf2:sha256:N"): hex of the 32-byte key."""
    return f"pbkdf2:sha256:{iterations}${salt}${hashlib.pbkdf2_hmac('sha256', password.encode(), salt.encode(), iterations).hex()}"


def scrypt_hash(password: str, salt: str, n: int = 1024, r: int = 8, p: int = 1) -> str:
    """Werkzeug's generate_password_hash(password, "scrypt:n:r:p"): hex of the 64-byte key."""
    key = hashlib.scrypt(password.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=132 * n * r * p + (1 << 20))
    return f"scrypt:{n}:{r}:{p}${salt}${key.hex()}"


def users() -> list[tuple]:
    # id, username, password_hash, is_admin, email, created_at, last_login, is_active
    return [
        (1, "alice", pbkdf2_hash(PASSWORDS["alice"], "Ab3dE6gH9jK2mN5p"), 1, "alice@example.com",
         "2023-05-01 10:00:00.123456", "2024-02-03 04:05:06", 1),
        (2, "bob", scrypt_hash(PASSWORDS["bob"], "Zx8Cv7Bn6Mq5Wr4T"), 0, "Bob@Example.org",
         "2023-06-01 12:00:00", None, 0),
        (50, "carol_c-1", scrypt_hash(PASSWORDS["carol"], "q1w2e3r4t5y6u7i8", n=2048), 0, None,
         "2023-07-01 08:30:00", None, 1),
        (4, "dj", scrypt_hash("x", "saltsaltsaltsalt"), 0, "dj@example.com", "2023-08-01 00:00:00", None, 1),
        (5, "eve", scrypt_hash("x", "saltsaltsaltsal2"), 0, "ALICE@example.com", "2023-08-02 00:00:00", None, 1),
        (6, "fr@nk", scrypt_hash("x", "saltsaltsaltsal3"), 0, "frank@example.com", "2023-08-03 00:00:00", None, 1),
        (7, "grace", "sha1$plain$0123abcd", 0, "grace@example.com", "2023-08-04 00:00:00", None, 1),
    ]  # fmt: skip


def servers() -> list[tuple]:
    # id, server_name, version, port, status, pid, level_seed, gamemode, difficulty, hardcore, pvp,
    # spawn_monsters, motd, memory_mb, owner_id
    return [
        (1, "lobby", "1.20.1", 25565, "Running", 4242, "12345", "survival", "normal", 0, 1, 1, "Welcome!", 2048, 1),
        (2, "survival", "1.20.4", 25566, "Stopped", None, None, "creative", "hard", 1, 0, 0, None, 4096, 2),
        (60, "creative-build", "1.19.4", 25565, "Stopped", None, "-99", "adventure", "easy", 0, 1, 1, "hi", 1024, 50),
        (4, "ab", "1.20.1", 25570, "Stopped", None, None, "survival", "normal", 0, 1, 1, "", 2048, 1),
        (5, "web", "1.20.1", 80, "Stopped", None, None, "survival", "normal", 0, 1, 1, "", 2048, 1),
        (6, "dup-port", "1.20.1", 25565, "Running", 99, None, "survival", "normal", 0, 1, 1, "", 2048, 2),
        (7, "ghost-town", "1.20.1", 25580, "Stopped", None, None, "survival", "normal", 0, 1, 1, "", 2048, 99),
        (8, "djs-world", "1.20.1", 25581, "Stopped", None, None, "survival", "normal", 0, 1, 1, "", 2048, 4),
        (9, "bad name!", "1.20.1", 25582, "Stopped", None, None, "survival", "normal", 0, 1, 1, "", 2048, 1),
    ]  # fmt: skip


def configurations() -> list[tuple]:
    # id, key, value, updated_at, updated_by
    return [
        (1, "panel.title", "My panel", "2024-01-01 00:00:00", 1),
        (70, "backup.enabled", "true", "2024-01-02 00:00:00", None),
        (3, "orphan.key", "x", "2024-01-03 00:00:00", 42),
        (4, "empty.value", "", "2024-01-04 00:00:00", 1),
        (5, "bad key!", "v", "2024-01-05 00:00:00", None),
        (6, "clock.skew", "v", "2999-01-01 00:00:00", None),
    ]


# Every bad row and the rule it breaks: what the report must list, whole.
EXPECTED_PROBLEMS = {
    ("user", 4, "username_valid"),
    ("user", 5, "email_unique_ignoring_case"),
    ("user", 6, "username_valid"),
    ("user", 7, "password_hash_format"),
    ("server", 4, "server_name_valid"),
    ("server", 5, "port_range"),
    ("server", 6, "active_port_unique"),
    ("server", 7, "owner_exists"),
    ("server", 8, "owner_quarantined"),
    ("server", 9, "server_name_valid"),
    ("configuration", 3, "updated_by_exists"),
    ("configuration", 4, "value_not_empty"),
    ("configuration", 5, "key_valid"),
    ("configuration", 6, "updated_at_not_in_future"),
}
GOOD_IDS = {"user": {1, 2, 50}, "server": {1, 2, 60}, "configuration": {1, 70}}
SOURCE_ROWS = {"user": 7, "server": 9, "configuration": 6}


def flask_database(directory: Path, name: str = "mcserver.db") -> Path:
    """instance/mcserver.db of the old application, with the rows above."""
    path = directory / name
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA)
    conn.execute("INSERT INTO alembic_version VALUES (?)", [REVISION])
    conn.executemany("INSERT INTO user VALUES (?, ?, ?, ?, ?, ?, ?, ?)", users())
    conn.executemany("INSERT INTO server VALUES (" + ", ".join("?" * 15) + ")", servers())
    conn.executemany("INSERT INTO configuration VALUES (?, ?, ?, ?, ?)", configurations())
    conn.commit()
    conn.close()
    return path


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


BOOLEAN_COLUMNS = {"user": (3, 7), "server": (9, 10, 11)}


def server_schema(vendor: str) -> list[str]:
    """SCHEMA as SQLAlchemy creates it on PostgreSQL or MariaDB, one statement each.

    These servers enforce VARCHAR lengths, and Werkzeug 3's scrypt hashes are 162
    characters: an old application that used them there had widened password_hash. The
    foreign keys are left out so the same orphans as in the SQLite file can be stored.
    """
    text = SCHEMA.replace("password_hash VARCHAR(128)", "password_hash VARCHAR(255)")
    text = re.sub(r",\s*FOREIGN KEY\([a-z_]+\) REFERENCES user \(id\)", "", text)
    if vendor == "postgresql":
        text = text.replace("DATETIME", "TIMESTAMP WITHOUT TIME ZONE")
        text = text.replace("CREATE TABLE user ", 'CREATE TABLE "user" ').replace(
            "REFERENCES user ", 'REFERENCES "user" '
        )
    else:
        text = text.replace('"key"', "`key`").replace("DATETIME", "DATETIME(6)")
    return [s.strip() for s in text.split(";") if s.strip()]


def fill_server_database(conn, vendor: str) -> None:
    """The rows of flask_database(), through a DB-API connection to PostgreSQL or MariaDB."""
    cursor = conn.cursor()
    for statement in server_schema(vendor):
        cursor.execute(statement)
    user = '"user"' if vendor == "postgresql" else "user"
    key = '"key"' if vendor == "postgresql" else "`key`"

    def rows(table, data):
        flags = BOOLEAN_COLUMNS.get(table, ())
        return [tuple(bool(v) if i in flags and v is not None else v for i, v in enumerate(r)) for r in data]

    cursor.execute("INSERT INTO alembic_version VALUES (%s)", [REVISION])
    cursor.executemany(f"INSERT INTO {user} VALUES ({', '.join(['%s'] * 8)})", rows("user", users()))
    cursor.executemany(f"INSERT INTO server VALUES ({', '.join(['%s'] * 15)})", rows("server", servers()))
    cursor.executemany(
        f"INSERT INTO configuration (id, {key}, value, updated_at, updated_by) VALUES (%s, %s, %s, %s, %s)",
        configurations(),
    )
    conn.commit()
    cursor.close()
