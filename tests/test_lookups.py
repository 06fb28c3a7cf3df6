"""The native-SQL lookups are registered by the dbtools app, not by importing a module."""

import subprocess
import sys

from django.db.models import CharField, TextField

from dbtools.lookups import InExact, OnlyChars


def test_importing_the_module_registers_nothing():
    code = (
        "from django.db.models import CharField\n"
        "import dbtools.lookups\n"
        "print(sorted(n for n in ('only_chars', 'in_exact', 'length') if n in CharField.get_lookups()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_app_registers_them_on_char_and_text_fields():
    for field_class in (CharField, TextField):
        lookups = field_class.get_lookups()
        assert lookups["only_chars"] is OnlyChars
        assert lookups["in_exact"] is InExact
        assert "length" in lookups
