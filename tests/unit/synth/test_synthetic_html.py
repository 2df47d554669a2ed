"""`pldiffix synthetic-report --html`: the page is well-formed, has one plot per modeled
column, and escapes every name and value (installer/pldiffix_installer/synthetic.py)."""

from __future__ import annotations

from html.parser import HTMLParser

from pldiffix_installer import synthetic

VOID = {"meta"}
HOSTILE_COLUMN = '<script>alert("c")</script>'
HOSTILE_VALUE = "<img src=x onerror=alert(1)>&\"'"


class Checker(HTMLParser):
    """Fails on a mismatched or unclosed tag; counts the tags it saw."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.seen: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.seen.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, (tag, self.stack)
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _rows() -> list[tuple]:
    return [
        ("rows", None, None, 100.0, 98.0, 0.98),
        ("tvd", "age", None, None, None, 0.01),
        ("tvd", HOSTILE_COLUMN, None, None, None, 0.02),
        ("tvd", "age", HOSTILE_COLUMN, None, None, 0.05),
        ("marginal", "age", "NULL", 0.0, 1.0, 0.0),
        ("marginal", "age", "[0, 50)", 60.0, 57.0, 1.0),
        ("marginal", "age", "[50, 100]", 40.0, 40.0, 2.0),
        ("marginal", HOSTILE_COLUMN, "NULL or other", 10.0, 8.0, 0.0),
        ("marginal", HOSTILE_COLUMN, HOSTILE_VALUE, 90.0, 90.0, 1.0),
        ("exact_match_share", None, None, None, 5.0, 0.05),
    ]


def test_the_page_is_well_formed_with_one_plot_per_column_and_escapes_everything():
    page = synthetic.render_html("twin</title><script>x</script>", _rows())
    checker = Checker()
    checker.feed(page)
    checker.close()
    assert checker.stack == []
    assert checker.seen.count("svg") == 2 and checker.seen.count("section") == 2
    assert "script" not in checker.seen and "img" not in checker.seen
    text = "".join(checker.text)
    assert HOSTILE_COLUMN in text and HOSTILE_VALUE in text  # shown, as text
    assert "<script>" not in page and "<img" not in page
    assert "&lt;script&gt;alert(&quot;c&quot;)&lt;/script&gt;" in page
    # each plot has one bar per cell and series
    age = page[page.index("<h2>age</h2>") :].split("</section>")[0]
    assert age.count("<rect") == 6


def test_the_plot_shows_shares_of_each_table():
    cells = [("marginal", "a", "x", 30.0, 10.0, 0.0), ("marginal", "a", "y", 70.0, 30.0, 1.0)]
    svg = synthetic.column_plot("a", cells)
    assert ">0.300<" in svg and ">0.250<" in svg and ">0.700<" in svg and ">0.750<" in svg
    # empty tables plot empty bars instead of failing
    assert synthetic.column_plot("a", [("marginal", "a", "x", 0.0, 0.0, 0.0)]).count("<rect") == 2
