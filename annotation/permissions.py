"""DRF permission classes. Object access is checked again by the selectors."""

from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from annotation.models import Role
from annotation.selectors import user_role


class HasRole(BasePermission):
    """Allow authenticated users whose global role is one of `roles`."""

    roles: tuple[str, ...] = ()

    def has_permission(self, request: Request, view: APIView) -> bool:
        return bool(request.user and request.user.is_authenticated and user_role(request.user) in self.roles)


class IsManager(HasRole):
    roles = (Role.MANAGER,)


class IsAnyRole(HasRole):
    roles = (Role.MANAGER, Role.ANNOTATOR, Role.RESEARCHER)
