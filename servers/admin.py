from django.contrib import admin

from .models import Configuration, Server


@admin.register(Server)
class ServerAdmin(admin.ModelAdmin):
    list_display = (
        "server_name",
        "owner",
        "port",
        "status",
        "memory_mb",
        "gamemode",
        "difficulty",
        "version",
    )
    list_filter = ("status", "gamemode", "difficulty")
    search_fields = ("server_name",)
    # A select of 100,000 users would make the page unusable: search instead.
    autocomplete_fields = ("owner",)
    list_select_related = ("owner",)
    readonly_fields = ("created_at", "updated_at")
    show_full_result_count = False
    fieldsets = (
        (None, {"fields": ("server_name", "owner", "status")}),
        ("Network and resources", {"fields": ("port", "memory_mb", "max_players")}),
        (
            "Game",
            {
                "fields": (
                    "version",
                    "gamemode",
                    "difficulty",
                    "hardcore",
                    "pvp",
                    "seed",
                    "motd",
                )
            },
        ),
        ("Dates", {"fields": ("created_at", "updated_at")}),
    )


@admin.register(Configuration)
class ConfigurationAdmin(admin.ModelAdmin):
    list_display = ("key", "short_value", "updated_by", "updated_at")
    search_fields = ("key", "value")
    readonly_fields = ("updated_by", "updated_at")
    list_select_related = ("updated_by",)

    @admin.display(description="value")
    def short_value(self, obj: Configuration) -> str:
        return obj.value if len(obj.value) <= 80 else obj.value[:77] + "..."

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user
        super().save_model(request, obj, form, change)
