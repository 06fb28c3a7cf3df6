"""What the demo data looks like: the words, the weighted choices, the columns written, the batching.

Pure data and arithmetic, no Django and no database: the vendor-free generator
(``dbtools.demo.rows``) and an engine's own in-database generator
(``dbtools.engines.sqlite_demo``) draw from the same tables.
"""

from collections.abc import Callable, Iterator

Progress = Callable[[str, int, int], None]

# An unusable password (Django's marker prefix "!"): demo accounts exist to be
# counted, listed and backed up, never to log in with a known password.
DEMO_PASSWORD_HASH = "!mcmanager-demo-data-no-login"

YEARS_OF_HISTORY = 3
ACTIVE_STATUSES = ("Running", "Starting")
# Running/Starting servers never take more than this share of the free ports, so
# an operator can still start a server on the demo database.
MAX_ACTIVE_PORT_SHARE = 0.9

FIRST_NAMES = (
    "alex ana ben bea carl cleo dan dora eli emma finn fay gus gia hugo ida ivan "
    "jade jon kai kira leo lina max mia nico nora oli opal paul pia quin rosa sam "
    "sara theo tia uma vic vera walt wren xena yara zane zoe noah liam luca maya"
).split()
LAST_NAMES = (
    "smith jones brown taylor miller wilson moore clark lewis walker hall young king "
    "wright green baker adams nelson hill campbell mitchell roberts carter phillips "
    "evans turner torres parker collins edwards stewart morris murphy cook rogers "
    "morgan cooper peterson reed bailey bell kelly howard ward cox diaz richardson"
).split()
EMAIL_DOMAINS = (
    "example.com",
    "example.org",
    "example.net",
    "mail.example.com",
    "gamers.example",
    "craft.example",
)
ADJECTIVES = (
    "ancient amber blazing brave crimson crystal dark deep emerald endless frozen "
    "golden grand hidden iron jade lost lunar mighty misty mossy noble obsidian "
    "quiet radiant red rusty sapphire shadow silent silver sky stone sunny swift "
    "thunder twilight wild windy wooden"
).split()
NOUNS = (
    "realm craft lands kingdom valley peaks isles forest caves city world haven "
    "empire frontier outpost citadel grove harbor mesa tundra canyon reef castle "
    "village fortress mines plains jungle desert nether end spire"
).split()
VERSIONS = ("1.21.4",) * 6 + ("1.21.1",) * 3 + ("1.20.6", "1.20.4", "1.20.1", "1.19.4", "1.18.2", "1.16.5", "1.12.2")
MOTDS = (
    "A Minecraft Server",
    "Welcome! Be nice and have fun",
    "Survival with friends",
    "No griefing, please",
    "Creative build server",
    "Hardcore: one life only",
    "Skyblock and minigames",
    "Vanilla+ SMP",
    "Modded adventure",
    "Family friendly server",
    "PvP arena, season 4",
    "Under construction",
)
# Weighted choices as lookup tables: one random() and one index per pick.
MEMORY_TABLE = [512] * 4 + [1024] * 14 + [2048] * 30 + [3072] * 10 + [4096] * 22 + [6144] * 6
MEMORY_TABLE += [8192] * 9 + [12288] * 2 + [16384] * 2 + [32768] * 1
GAMEMODES = ["survival"] * 70 + ["creative"] * 18 + ["adventure"] * 9 + ["spectator"] * 3
DIFFICULTIES = ["normal"] * 50 + ["easy"] * 20 + ["hard"] * 25 + ["peaceful"] * 5
MAX_PLAYERS = [10] * 15 + [20] * 45 + [50] * 20 + [100] * 12 + [200] * 5 + [500] * 2 + [1000] * 1
CONFIG_SECTIONS = (
    "panel backup mail security servers network ui limits monitoring billing logging scheduler plugins worlds"
).split()
CONFIG_NAMES = (
    "enabled timeout max_items retention interval theme language host port url "
    "threshold default_memory_mb allowed_versions banner contact_email rate_limit"
).split()
CONFIG_DESCRIPTIONS = (
    "",
    "",
    "Set by the installer.",
    "Changed after the outage review.",
    "Per-tenant override.",
    "Tuned for the EU cluster.",
    "Do not lower without asking ops.",
)


# Rows in the first batch a Python generator builds (the others have batch_size).
FIRST_BATCH = 2_000

USER_FIELDS = ["id", "password", "last_login", "username", "email", "is_admin", "is_active", "date_joined"]
SERVER_FIELDS = [
    "id",
    "server_name",
    "owner",
    "port",
    "memory_mb",
    "status",
    "gamemode",
    "difficulty",
    "version",
    "motd",
    "seed",
    "max_players",
    "hardcore",
    "pvp",
    "created_at",
    "updated_at",
]
CONFIG_FIELDS = ["id", "key", "value", "description", "updated_by", "updated_at"]


def batches(total: int, batch_size: int, first: int | None = None) -> Iterator[tuple[int, int]]:
    """(offset, count) of each batch; ``first``, when given, caps the first batch's size."""
    start = 0
    size = min(batch_size, first) if first else batch_size
    while start < total:
        yield start, min(size, total - start)
        start += size
        size = batch_size
