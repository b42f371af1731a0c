"""The security package's entry points: users and sign-in (``users``), roles (``roles``)."""

from __future__ import annotations

from dianfei.security.roles import APPROVAL_KINDS as APPROVAL_KINDS
from dianfei.security.roles import PERMISSIONS as PERMISSIONS
from dianfei.security.roles import ROLE_PERMISSIONS as ROLE_PERMISSIONS
from dianfei.security.roles import ROLES as ROLES
from dianfei.security.roles import STAFF_ROLES as STAFF_ROLES
from dianfei.security.roles import allows as allows
from dianfei.security.roles import roles_with as roles_with
from dianfei.security.users import Principal as Principal
from dianfei.security.users import SignInRefused as SignInRefused
from dianfei.security.users import TooManyAttempts as TooManyAttempts
from dianfei.security.users import active_user as active_user
from dianfei.security.users import add_user as add_user
from dianfei.security.users import count_users as count_users
from dianfei.security.users import list_users as list_users
from dianfei.security.users import principal_for as principal_for
from dianfei.security.users import revoke as revoke
from dianfei.security.users import set_active as set_active
from dianfei.security.users import sign_in as sign_in
