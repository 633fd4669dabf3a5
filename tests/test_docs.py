"""README is a landing page of at most 200 lines, and every relative link and anchor in README.md and
docs/*.md resolves (GitHub's heading anchors)."""

from markdown_pages import PAGES, ROOT, broken_links, headings, links, slug


def test_readme_is_a_landing_page_of_at_most_200_lines():
    n = len((ROOT / "README.md").read_text().splitlines())
    assert n <= 200, f"README.md has {n} lines; move the detail to a page in docs/"


def test_every_relative_link_and_anchor_resolves():
    assert len(PAGES) >= 8, [p.name for p in PAGES]
    bad = {p.relative_to(ROOT).as_posix(): broken_links(p) for p in PAGES}
    assert not {page: b for page, b in bad.items() if b}


def test_every_docs_page_is_linked_from_the_index():
    index = links((ROOT / "docs" / "index.md").read_text())
    pages = {p.name for p in PAGES if p.parent.name == "docs" and p.name != "index.md"}
    assert pages <= {t.partition("#")[0] for t in index}, pages - set(index)


def test_the_link_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path):
    (tmp_path / "other.md").write_text("# Other page\n\n## A heading: with `code`, and — a dash\n\n## Repeat\n\n## Repeat\n")
    page = tmp_path / "page.md"
    page.write_text("[def]: other.md#repeat\n[def2]: gone.md \"title\"\n   [1.0, 2.0]: not a definition\n\nSee [ok](other.md#a-heading-with-code-and--a-dash), [twice](other.md#repeat-1), "
                    "[web](https://example.org/x), `[code](nowhere.md)`,\n[gone](missing.md), "
                    "[bad anchor](other.md#nope) and [self](#top).\n\n# Top\n\n```\n[fenced](nowhere.md)\n```\n")
    assert slug("Precision: bfloat16 on this CPU") == "precision-bfloat16-on-this-cpu"
    assert headings((tmp_path / "other.md").read_text()) == {
        "other-page", "a-heading-with-code-and--a-dash", "repeat", "repeat-1"}
    bad = broken_links(page)
    assert [b.split(" ")[0] for b in bad] == ["missing.md", "other.md#nope", "gone.md"], bad
