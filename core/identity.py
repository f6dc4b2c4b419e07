"""Who acts: the authenticated `Principal` and its `Role`, shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["user", "approver", "admin"]
"""What a key may do: `user` (own threads), `approver` (+ decisions), `admin` (+ all tenants'
approvals list filter)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, from a verified API key."""

    key_id: str
    user_id: str
    tenant_id: str
    role: Role

    @property
    def is_approver(self) -> bool:
        """True for roles that may decide approvals (`approver`, `admin`)."""
        return self.role in ("approver", "admin")

    @property
    def is_admin(self) -> bool:
        """True for `admin`."""
        return self.role == "admin"

    def can_see(self, owner_id: str, tenant_id: str) -> bool:
        """Whether a resource owned by `owner_id` in `tenant_id` is visible to this caller."""
        if tenant_id != self.tenant_id:
            return False
        return self.role != "user" or owner_id == self.user_id
