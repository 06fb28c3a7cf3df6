"""Benchmarks only (the demo-data generator they use is production code: ``dbtools.demo``).

- ``bench.run``: ``make bench``, our commands against the database's own tools,
  with the targets of issue 8; writes BENCHMARKS.md.
- ``bench.import_legacy``: ``import_legacy`` against ``generate_demo_data``.
- ``bench.offsite``: offsite storage against a local S3 server.
"""
