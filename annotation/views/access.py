"""Access to campaign pages: one decorator checks login, membership and role, so pages never repeat it."""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from annotation.errors import ForbiddenError, NotFoundError
from annotation.selectors import campaign_get_for_user


def campaign_page(*roles: str):
    """Require login and membership with one of `roles`; pass the campaign to the view."""

    def decorator(view):
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, campaign_id: int, *args, **kwargs) -> HttpResponse:
            try:
                campaign = campaign_get_for_user(user=request.user, campaign_id=campaign_id, roles=roles)
            except NotFoundError as exc:
                raise Http404(exc.message) from exc
            except ForbiddenError:
                return render(request, "403.html", status=403)
            return view(request, campaign, *args, **kwargs)

        return wrapped

    return decorator
