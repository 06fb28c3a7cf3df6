"""The panel's accounts. Every rule here is also a constraint in the database."""

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.core.validators import MinLengthValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower

USERNAME_CHARS = "A-Za-z0-9_-"
USERNAME_MIN, USERNAME_MAX = 3, 80


class UserManager(BaseUserManager):
    use_in_migrations = True

    def _create(self, username: str, email: str | None, password: str | None, **extra):
        user = self.model(username=username, email=self.normalize_email(email) or None, **extra)
        user.set_password(password)
        user.full_clean(exclude=["password"])
        user.save(using=self._db)
        return user

    def create_user(
        self,
        username: str,
        email: str | None = None,
        password: str | None = None,
        **extra,
    ):
        extra.setdefault("is_admin", False)
        return self._create(username, email, password, **extra)

    def create_superuser(
        self,
        username: str,
        email: str | None = None,
        password: str | None = None,
        **extra,
    ):
        extra["is_admin"] = True
        extra.setdefault("is_active", True)
        return self._create(username, email, password, **extra)

    def get_by_natural_key(self, username):
        return self.get(**{self.model.USERNAME_FIELD: username})


class User(AbstractBaseUser):
    """A panel account. ``is_admin`` is the one flag that opens the admin."""

    username = models.CharField(
        max_length=USERNAME_MAX,
        unique=True,
        validators=[
            MinLengthValidator(USERNAME_MIN),
            RegexValidator(
                r"^[A-Za-z0-9_-]+\Z",
                "A username may contain only letters, digits, underscores and hyphens.",
            ),
        ],
        help_text="3 to 80 characters: letters, digits, _ and -.",
        error_messages={"unique": "A user with that username already exists."},
    )
    email = models.EmailField(
        max_length=254,
        unique=True,
        null=True,
        blank=True,
        help_text="Optional. Unique, ignoring case.",
        error_messages={"unique": "A user with that email address already exists."},
    )
    is_admin = models.BooleanField(default=False, db_index=True, help_text="Can log in to the admin.")
    is_active = models.BooleanField(default=True, db_index=True)
    date_joined = models.DateTimeField(auto_now_add=True)

    objects = UserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["username"]
        constraints = [
            models.CheckConstraint(
                condition=Q(username__length__gte=USERNAME_MIN)
                & Q(username__length__lte=USERNAME_MAX)
                & Q(username__only_chars=USERNAME_CHARS),
                name="user_username_valid",
                violation_error_message="A username is 3 to 80 characters: letters, digits, _ and -.",
            ),
            models.CheckConstraint(
                condition=Q(email__isnull=True)
                | (
                    Q(email__length__gte=3)
                    & Q(email__length__lte=254)
                    & Q(email__contains="@")
                    & ~Q(email__contains=" ")
                ),
                name="user_email_valid",
                violation_error_message="Enter a valid email address, or leave it empty.",
            ),
            # PostgreSQL and SQLite: unique ignoring case. MariaDB has no expression
            # indexes; there the column's case-insensitive collation makes the plain
            # unique index do the same job.
            models.UniqueConstraint(
                Lower("email"),
                name="user_email_ci_unique",
                violation_error_message="A user with that email address already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.username

    def clean(self) -> None:
        super().clean()
        # An empty email is no email: stored as NULL so many users may have none.
        if not self.email:
            self.email = None

    def save(self, *args, **kwargs) -> None:
        if not self.email:
            self.email = None
        super().save(*args, **kwargs)

    # The admin asks for is_staff and permissions; is_admin answers all of them.
    @property
    def is_staff(self) -> bool:
        return self.is_admin

    @property
    def is_superuser(self) -> bool:
        return self.is_admin

    def has_perm(self, perm, obj=None) -> bool:
        return self.is_active and self.is_admin

    def has_perms(self, perm_list, obj=None) -> bool:
        return all(self.has_perm(perm, obj) for perm in perm_list)

    def has_module_perms(self, app_label) -> bool:
        return self.is_active and self.is_admin
