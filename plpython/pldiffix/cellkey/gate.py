"""Cell-key (TBE) and Laplace tables as a mechanism of the gate (core/mechanism.py)."""

from __future__ import annotations

from pldiffix.core.mechanism import Release, Request

LABEL = "cellkey"


class CellKey:
    """Answers statements that read a table labelled 'cellkey', at every level but DP."""

    def audit_name(self, request: Request) -> str:
        return "cellkey"

    def answers(self, request: Request) -> bool:
        return bool(request.reads(LABEL))

    def answer(self, request: Request) -> Release:
        if request.dp:
            raise PermissionError(
                "differentially private queries cannot read perturbed (cell-key) tables"
                if request.explicit_dp
                else "roles at the anonymized_dp level cannot read perturbed (cell-key) tables"
            )
        from pldiffix.cellkey import engine

        return engine.answer(request.plpy, request.tree, request.reads(LABEL)[0])


MECHANISM = CellKey()
