from django.http import HttpRequest

from annotation.selectors import user_role


def roles(request: HttpRequest) -> dict[str, str | None]:
    """Expose the user's global role to templates (menus only; views check permissions)."""
    return {"arbiter_role": user_role(request.user) if hasattr(request, "user") else None}
