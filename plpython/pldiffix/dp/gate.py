"""Differential privacy as a mechanism of the gate (core/mechanism.py)."""

from __future__ import annotations

from pldiffix.core.mechanism import Release, Request

LABEL = "personal"


class Dp:
    """Answers diffix.dp_query_json, and statements over personal tables at the DP level."""

    def audit_name(self, request: Request) -> str:
        return "dp"

    def answers(self, request: Request) -> bool:
        return request.explicit_dp or (request.dp and bool(request.reads(LABEL)))

    def answer(self, request: Request) -> Release:
        from pldiffix.core import catalog
        from pldiffix.dp import engine

        epsilon, delta = request.epsilon, request.delta
        if not request.explicit_dp:  # query_json, query, the proxy: the session's settings
            values = catalog.effective_settings(request.plpy)
            epsilon, delta = float(values["dp_epsilon"]), float(values["dp_delta"])
        result = engine.run(
            request.plpy,
            request.sql,
            epsilon,
            delta,
            list(request.search_path) or ["public"],
            explicit=request.explicit_dp,
        )
        report = result["dp"]
        return Release(
            "dp",
            result["query"],
            rows=len(report["rows"]),
            report=report,
            epsilon=report["epsilon"],
            delta=report["delta"],
        )


MECHANISM = Dp()
