"""Who acts: the authenticated `Principal` and its `Role`, shared by every layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Role = Literal["user", "approver", "admin"]
"""What a key may do: `user` (own threads), `approver` (+ decisions), `admin` (+ state writes,
steering, assistants); every role within its own tenant only."""


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


SERVER_SET_KEYS = frozenset({"user_id", "tenant_id", "role", "requester_id"})
"""Identity keys the server puts in a run's config (and LangGraph copies into checkpoint and
event metadata): for logs and traces, never part of a public object."""


def without_identity(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """`mapping` without the server-set identity keys (`SERVER_SET_KEYS`)."""
    return {k: v for k, v in mapping.items() if k not in SERVER_SET_KEYS}
