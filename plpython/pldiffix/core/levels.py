"""Access levels, from most to least privileged."""

from __future__ import annotations

from enum import StrEnum


class AccessLevel(StrEnum):
    DIRECT = "direct"
    ANONYMIZED_TRUSTED = "anonymized_trusted"
    ANONYMIZED_UNTRUSTED = "anonymized_untrusted"
    # Differentially private answers against a privacy budget (pldiffix/dp). Ranked above
    # untrusted so that a DP role can never lower itself into Diffix answers, which spend nothing.
    ANONYMIZED_DP = "anonymized_dp"
    # reads perturbed views (sql/perturb) only; the anonymizing engines refuse it
    PERTURBED = "perturbed"

    @property
    def rank(self) -> int:
        """0 for direct; higher means more restricted."""
        return _RANK[self]

    @property
    def is_anonymized(self) -> bool:
        return self is not AccessLevel.DIRECT

    @classmethod
    def parse(cls, value: str) -> AccessLevel:
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(level.value for level in cls)
            raise ValueError(f"unknown access level {value!r}; expected one of: {names}") from None


_RANK = {
    AccessLevel.DIRECT: 0,
    AccessLevel.ANONYMIZED_TRUSTED: 1,
    AccessLevel.ANONYMIZED_UNTRUSTED: 2,
    AccessLevel.ANONYMIZED_DP: 3,
    AccessLevel.PERTURBED: 4,
}


def most_restricted(*levels: AccessLevel) -> AccessLevel:
    return max(levels, key=lambda level: level.rank)
