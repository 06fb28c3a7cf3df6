"""Realistic demo data, valid by every rule, generated fast and deterministically (``manage.py generate_demo_data``).

``generator.generate()`` adds users, servers and configuration entries to a migrated
database. The data respects every constraint of the models and every rule ``validate``
checks beyond them: no two Running or Starting servers share a port (Stopped and
Stopping ones may, as real panels have many stopped servers on 25565), usernames and
emails are unique even ignoring case (an empty email is NULL), and no timestamp is in
the future. Statuses, ports, memory sizes, versions and owners vary the way a hosting
panel's do: a few users own many servers, most own a few or none. All demo users share
one precomputed, unusable password hash (demo accounts cannot log in).

Deterministic: the same seed on the same starting database gives the same rows.
Timestamps are relative to the start of the current UTC day (or ``now``), so two runs
on the same day are identical.

Modules:

- ``generator``: ``generate()``, the vendor-free orchestration;
- ``rows``: the rows built in Python, written in batches;
- ``writer``: ``BulkWriter``, rows into a table through the engine's bulk-loading methods
  (also used by ``import_legacy``), and the set-based check of a batch;
- ``spec``: the words, weighted choices and columns; ``clock``: the timestamps;
- ``result``: ``GenerationResult`` and ``GenerationError``.

The vendor-specific part is the engine's "demo data (bulk loading)" section
(``dbtools/engines/base.py``): SQLite computes the users and servers inside the
database (``engines/sqlite_demo.py``), so a seed gives other rows there than on the
other engines.
"""
