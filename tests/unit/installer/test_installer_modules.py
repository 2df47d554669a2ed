"""The installer's pure pieces: the modules it deploys, the tables it prints."""

from __future__ import annotations

from pldiffix_installer.modules import server_modules
from pldiffix_installer.tables import format_table


def test_deployed_modules_include_pldiffix_and_sqlglot_packages():
    names = {module.name: module for module in server_modules()}
    assert names["pldiffix"].is_package and not names["pldiffix.server"].is_package
    assert names["sqlglot"].is_package and "sqlglot.dialects.postgres" in names
    assert not any("test" in name.split(".")[0] for name in names)


def test_format_table_aligns_numbers_right_and_text_left():
    assert format_table(["city", "n"], [["Berlin", 7], ["Rome", 12]]).splitlines() == [
        "  city   |  n",
        "  -------+---",
        "  Berlin |  7",
        "  Rome   | 12",
    ]
