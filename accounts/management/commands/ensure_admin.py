"""Create an admin login when the database has none, and say how to log in."""

import secrets
import string

from django.core.management.base import BaseCommand
from django.db import DEFAULT_DB_ALIAS

from accounts.models import User


class Command(BaseCommand):
    help = (
        "Create the admin login 'admin' with a random password if no active admin exists, "
        "and print how to log in. Does nothing to existing accounts."
    )

    def add_arguments(self, parser):
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)
        parser.add_argument(
            "--username",
            default="admin",
            help="Username of the admin to create (default: admin).",
        )
        parser.add_argument(
            "--url",
            default="http://127.0.0.1:8000/admin/",
            help="Where the admin is served.",
        )

    def handle(self, *args, **options):
        users = User.objects.db_manager(options["database"])
        existing = users.filter(is_admin=True, is_active=True).order_by("pk").first()
        if existing is not None:
            self.stdout.write(
                f"Log in at {options['url']} as {existing.username} "
                f"(forgot the password? python manage.py changepassword {existing.username})"
            )
            return
        # Letters and digits only: nothing a shell or a copy from the terminal could misread.
        alphabet = string.ascii_letters + string.digits
        password = "".join(secrets.choice(alphabet) for _ in range(16))
        users.create_superuser(options["username"], password=password)
        self.stdout.write(
            self.style.SUCCESS(
                f"Created the admin login. Log in at {options['url']} as {options['username']} / {password}"
            )
        )
        self.stdout.write("This password is shown once; change it with: python manage.py changepassword admin")
