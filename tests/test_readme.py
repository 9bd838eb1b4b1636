"""The README's usage example runs as written (a broken example is a broken promise)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_every_python_example_in_the_readme_runs():
    blocks = python_blocks()
    assert blocks, "README.md has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


ROOT = README.parent
CITED_FILE = re.compile(
    r"\b((?:docs|bench|impls|tests|reports)/[\w./-]+\.(?:md|py|j2)|[\w-]+\.md)\b"
)


def test_every_document_the_code_cites_is_in_the_repository():
    """A reference to a design note or module that is not there leaves a reader with nothing."""
    sources = [*ROOT.glob("bench/**/*.py"), *ROOT.glob("impls/*.py"), *ROOT.glob("tests/*.py")]
    sources += [README, *ROOT.glob("docs/*.md")]
    cited = {
        (source.relative_to(ROOT), name)
        for source in sources
        for name in CITED_FILE.findall(source.read_text())
    }
    assert any(name == "docs/design.md" for _, name in cited)
    missing = [
        f"{source} cites {name}"
        for source, name in sorted(cited)
        if not (ROOT / name).exists() and not (source.parent / name).exists()
    ]
    assert not missing, missing


def test_the_readme_lists_every_property_as_the_schema_words_it():
    """The README's property table is the one users read; the schema is what messages use."""
    from bench.common.schema import PROPERTIES

    rows = dict(re.findall(r"^\| (P\d) \| (.+?) \|$", README.read_text(), flags=re.M))
    assert rows == PROPERTIES
