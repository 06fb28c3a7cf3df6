"""Benchmarks and the realistic data generator they share with the tests.

- ``bench.datagen``: ``generate()`` fills a database with valid demo data, fast
  (``python manage.py generate_demo_data``).
- ``bench.run``: ``make bench``, our commands against the database's own tools,
  with the targets of issue 8; writes BENCHMARKS.md.
"""
