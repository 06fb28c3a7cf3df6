from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.urls import reverse

from .models import User


class UserCreateForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("username", "email", "is_admin", "is_active")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = ("username", "email", "is_admin", "is_active")


# Access is one flag, is_admin: groups and permissions are not used, so not shown.
admin.site.unregister(Group)


def owned_servers_message(user: User, count: int) -> str:
    noun = "server" if count == 1 else "servers"
    return f"User “{user.username}” owns {count} {noun} and cannot be deleted. Reassign or delete those servers first."


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreateForm
    list_display = (
        "username",
        "email",
        "is_admin",
        "is_active",
        "server_count",
        "date_joined",
    )
    list_filter = ("is_admin", "is_active")
    search_fields = ("username", "email")
    ordering = ("username",)
    filter_horizontal = ()
    readonly_fields = ("last_login", "date_joined")
    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Contact", {"fields": ("email",)}),
        ("Access", {"fields": ("is_admin", "is_active")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "username",
                    "email",
                    "password1",
                    "password2",
                    "is_admin",
                    "is_active",
                ),
            },
        ),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_server_count=Count("servers"))

    @admin.display(description="servers", ordering="_server_count")
    def server_count(self, obj: User) -> int:
        return obj._server_count

    def delete_view(self, request, object_id, extra_context=None):
        # Deleting an owner never cascades (the database refuses it too): say why, plainly.
        user = self.get_object(request, object_id)
        if user is not None:
            count = user.servers.count()
            if count:
                self.message_user(request, owned_servers_message(user, count), messages.ERROR)
                return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
        return super().delete_view(request, object_id, extra_context)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Delete selected users (refused for users who own servers)")
    def delete_users_without_servers(self, request, queryset):
        owners = queryset.annotate(n=Count("servers")).filter(n__gt=0)
        for user in owners:
            self.message_user(request, owned_servers_message(user, user.n), messages.ERROR)
        deletable = queryset.exclude(pk__in=[u.pk for u in owners])
        count = deletable.count()
        if count:
            deletable.delete()
            self.message_user(request, f"Deleted {count} user(s).", messages.SUCCESS)

    actions = ["delete_users_without_servers"]
