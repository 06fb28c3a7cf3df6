"""Minecraft servers and the panel's configuration. Every rule is also a database constraint."""

from django.conf import settings
from django.core.validators import (
    MaxValueValidator,
    MinLengthValidator,
    MinValueValidator,
    RegexValidator,
)
from django.db import models
from django.db.models import Q

SERVER_NAME_CHARS = "A-Za-z0-9_-"
CONFIG_KEY_CHARS = "A-Za-z0-9._-"
PORT_MIN, PORT_MAX = 1024, 65535
MEMORY_MIN, MEMORY_MAX = 512, 32768


class ServerStatus(models.TextChoices):
    RUNNING = "Running"
    STOPPED = "Stopped"
    STARTING = "Starting"
    STOPPING = "Stopping"


class Gamemode(models.TextChoices):
    SURVIVAL = "survival"
    CREATIVE = "creative"
    ADVENTURE = "adventure"
    SPECTATOR = "spectator"


class Difficulty(models.TextChoices):
    PEACEFUL = "peaceful"
    EASY = "easy"
    NORMAL = "normal"
    HARD = "hard"


class Server(models.Model):
    Status = ServerStatus
    Gamemode = Gamemode
    Difficulty = Difficulty

    server_name = models.CharField(
        max_length=150,
        unique=True,
        validators=[
            MinLengthValidator(3),
            RegexValidator(
                r"^[A-Za-z0-9_-]+\Z",
                "A server name may contain only letters, digits, underscores and hyphens.",
            ),
        ],
        help_text="3 to 150 characters: letters, digits, _ and -.",
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="servers",
        db_index=True,
    )
    port = models.PositiveIntegerField(
        default=25565,
        db_index=True,
        validators=[MinValueValidator(PORT_MIN), MaxValueValidator(PORT_MAX)],
        help_text="1024 to 65535.",
    )
    memory_mb = models.PositiveIntegerField(
        "memory (MB)",
        default=2048,
        db_index=True,
        validators=[MinValueValidator(MEMORY_MIN), MaxValueValidator(MEMORY_MAX)],
        help_text="512 to 32768 MB.",
    )
    status = models.CharField(
        max_length=10,
        choices=ServerStatus.choices,
        default=ServerStatus.STOPPED,
        db_index=True,
    )
    gamemode = models.CharField(max_length=10, choices=Gamemode.choices, default=Gamemode.SURVIVAL)
    difficulty = models.CharField(max_length=10, choices=Difficulty.choices, default=Difficulty.NORMAL)
    version = models.CharField(max_length=32, default="1.21.4", help_text="Minecraft version, e.g. 1.21.4.")
    motd = models.CharField("message of the day", max_length=255, blank=True, default="A Minecraft Server")
    seed = models.CharField(max_length=64, blank=True, default="", help_text="World seed; empty for random.")
    max_players = models.PositiveIntegerField(default=20, validators=[MinValueValidator(1), MaxValueValidator(1000)])
    hardcore = models.BooleanField(default=False)
    pvp = models.BooleanField("PvP", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["server_name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(server_name__length__gte=3)
                & Q(server_name__length__lte=150)
                & Q(server_name__only_chars=SERVER_NAME_CHARS),
                name="server_name_valid",
                violation_error_message="A server name is 3 to 150 characters: letters, digits, _ and -.",
            ),
            models.CheckConstraint(
                condition=Q(port__gte=PORT_MIN) & Q(port__lte=PORT_MAX),
                name="server_port_range",
                violation_error_message="The port must be between 1024 and 65535.",
            ),
            models.CheckConstraint(
                condition=Q(memory_mb__gte=MEMORY_MIN) & Q(memory_mb__lte=MEMORY_MAX),
                name="server_memory_range",
                violation_error_message="Memory must be between 512 and 32768 MB.",
            ),
            models.CheckConstraint(
                condition=Q(status__in_exact=list(ServerStatus.values)),
                name="server_status_valid",
                violation_error_message="Status must be Running, Stopped, Starting or Stopping.",
            ),
            models.CheckConstraint(
                condition=Q(gamemode__in_exact=list(Gamemode.values)),
                name="server_gamemode_valid",
                violation_error_message="Gamemode must be survival, creative, adventure or spectator.",
            ),
            models.CheckConstraint(
                condition=Q(difficulty__in_exact=list(Difficulty.values)),
                name="server_difficulty_valid",
                violation_error_message="Difficulty must be peaceful, easy, normal or hard.",
            ),
            models.CheckConstraint(
                condition=Q(max_players__gte=1) & Q(max_players__lte=1000),
                name="server_max_players_range",
                violation_error_message="Max players must be between 1 and 1000.",
            ),
        ]

    def __str__(self) -> str:
        return self.server_name


class Configuration(models.Model):
    """One panel setting: a dotted key and its text value."""

    key = models.CharField(
        max_length=100,
        unique=True,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9._-]+\Z",
                "A key may contain only letters, digits, dots, underscores and hyphens.",
            )
        ],
        help_text="1 to 100 characters: letters, digits, . _ and -.",
    )
    value = models.TextField(help_text="Must not be empty.")
    description = models.CharField(max_length=255, blank=True, default="")
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="configuration_changes",
        db_index=True,
    )
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    class Meta:
        ordering = ["key"]
        verbose_name = "configuration entry"
        verbose_name_plural = "configuration"
        constraints = [
            models.CheckConstraint(
                condition=Q(key__length__gte=1) & Q(key__length__lte=100) & Q(key__only_chars=CONFIG_KEY_CHARS),
                name="configuration_key_valid",
                violation_error_message="A key is 1 to 100 characters: letters, digits, . _ and -.",
            ),
            models.CheckConstraint(
                condition=Q(value__length__gte=1),
                name="configuration_value_not_empty",
                violation_error_message="The value must not be empty.",
            ),
        ]

    def __str__(self) -> str:
        return self.key
