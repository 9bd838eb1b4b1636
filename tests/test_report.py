"""The HTML report, built from small fixture result files (complete and partial).

It checks what a reader relies on: every section is there or says which command fills it, the
matrix cells carry their outcome and link to their evidence, the answer follows the numbers, the
figures exist as PNG and SVG and are inlined, values from the files are escaped, and the page
renders in a real browser when one is installed.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import report_fixtures as fx

from bench.__main__ import main as bench_main
from bench.report.command import build_report
from bench.report.figures import phase_table
from bench.report.recommend import Setup, recommend, recommend_all
from bench.report.sources import load_sources, memory_phrase, speed_phrase

SECTIONS = (
    "answer", "verification", "performance", "realdata", "newtokens", "strength", "environment",
)  # fmt: skip
WD_DENSE_SINGLE = Setup(weight_decay=True, sparse=False, distributed=False)
NO_WD_DENSE_SINGLE = Setup(weight_decay=False, sparse=False, distributed=False)


VOID_ELEMENTS = {"meta", "img", "br", "hr", "link", "input"}


class Tags(HTMLParser):
    """Every start tag of a page with its attributes, in document order, and the end tags that
    do not close the element last opened (an unbalanced page renders unpredictably)."""

    def __init__(self, page: str):
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.open: list[str] = []
        self.misnested: list[tuple[str, tuple[int, int]]] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        if tag not in VOID_ELEMENTS:
            self.open.append(tag)

    def handle_endtag(self, tag):
        if self.open and self.open[-1] == tag:
            self.open.pop()
        elif tag not in VOID_ELEMENTS:
            self.misnested.append((tag, self.getpos()))

    def with_id(self, element_id: str) -> tuple[str, dict[str, str]]:
        found = [t for t in self.tags if t[1].get("id") == element_id]
        assert len(found) == 1, f"expected one element with id {element_id!r}, found {len(found)}"
        return found[0]


def matrix_part(page: str) -> str:
    start = page.index('<table class="matrix">')
    return page[start : page.index("</table>", start)]


def sources_of(directory: Path):
    sources = load_sources(directory)
    return sources["verification"].frame, sources["results"].frame


@pytest.fixture(scope="module")
def complete(tmp_path_factory) -> tuple[str, Path]:
    """The report built from all three fixture files: (page, output folder)."""
    root = tmp_path_factory.mktemp("complete")
    fx.write_all(
        root / "in",
        verification=fx.verification_records(),
        results=fx.results_records(),
        realdata=fx.realdata_records(),
        newtokens=fx.newtokens_records(),
        mutation=fx.mutation_records(),
    )
    built = build_report(root / "in", root / "out")
    assert built.problems == []
    return built.path.read_text(), root / "out"


def test_complete_report_has_every_section_and_no_missing_notes(complete):
    page, _ = complete
    tags = Tags(page)
    assert tags.misnested == [] and tags.open == []
    for section in SECTIONS:
        assert tags.with_id(section)[0] == "section"
    assert "not found" not in page
    assert "python -m bench report --in" in page
    assert fx.ENV["commit"] in page


def test_matrix_has_one_cell_per_property_coloured_by_outcome(complete):
    page, _ = complete
    cells = [
        attrs["class"].split()
        for tag, attrs in Tags(matrix_part(page)).tags
        if tag in ("a", "span") and "cell" in attrs.get("class", "").split()
    ]
    records = fx.verification_records()
    assert len(cells) == len(records)
    outcomes = pd.Series([r["outcome"] for r in records]).value_counts().to_dict()
    for outcome, count in outcomes.items():
        assert sum(outcome in c for c in cells) == count


def test_violated_cell_links_to_its_explanation_and_counterexample(complete):
    page, _ = complete
    link = [
        a for t, a in Tags(matrix_part(page)).tags if a.get("href") == "#cell-grad-zero-adamw-p1"
    ]
    assert len(link) == 1 and link[0]["class"].split() == ["cell", "violated"]
    assert Tags(page).with_id("cell-grad-zero-adamw-p1")[0] == "div"
    start = page.index('id="cell-grad-zero-adamw-p1"')
    evidence = page[start : page.index("</div>", start)]
    assert "AdamW decays every row, zero gradient or not" in evidence
    assert "# grad_zero adamw" in evidence  # the pasteable counterexample
    assert "<details>" in evidence


def test_cell_that_differs_from_its_expectation_is_marked(complete):
    page, _ = complete
    marked = [
        a for t, a in Tags(matrix_part(page)).tags if "unexpected" in a.get("class", "").split()
    ]
    assert [a["href"] for a in marked] == ["#cell-split-max-norm-p1"]
    assert "split · max_norm · P1: violated (expected holds)" in page


def test_answer_follows_the_measured_numbers(complete):
    page, _ = complete
    steps = fx.HEADLINE_STEP_S
    summary = re.search(r'id="setup-wd-dense-single"[^>]*>\s*<summary>(.*?)</summary>', page)
    assert summary and summary.group(1).endswith("use split")
    assert f"{speed_phrase(steps['grad_zero'], steps['split'])} (its step: 1 s)" in page
    grad_zero_bytes = fx.persistent_bytes("grad_zero", 400_000, fx.FRACTION)
    split_bytes = fx.persistent_bytes("split", 400_000, fx.FRACTION)
    assert f"persistent memory {memory_phrase(grad_zero_bytes, split_bytes)}" in page
    assert speed_phrase(steps["peft_trainable_tokens"], steps["split"]) in page


def test_changing_the_timings_changes_the_recommendation(tmp_path):
    fx.write_all(tmp_path / "slow_split", verification=fx.verification_records(),
                 results=fx.results_records())  # fmt: skip
    faster_zeroing = {**fx.HEADLINE_STEP_S, "grad_zero": 0.003}
    fx.write_all(tmp_path / "fast_zeroing", verification=fx.verification_records(),
                 results=fx.results_records(faster_zeroing))  # fmt: skip
    before = sources_of(tmp_path / "slow_split")
    after = sources_of(tmp_path / "fast_zeroing")
    assert recommend(*before, NO_WD_DENSE_SINGLE).approach == "split"
    assert recommend(*after, NO_WD_DENSE_SINGLE).approach == "grad_zero"
    # with weight decay grad_zero breaks P1, so speed alone never makes it the answer
    assert recommend(*after, WD_DENSE_SINGLE).approach == "split"
    assert recommend(*after, WD_DENSE_SINGLE).cases[0].faster_but_unsafe == ["grad_zero"]


def test_pitfalls_and_caveats_come_from_the_violated_cells(tmp_path):
    fx.write_all(tmp_path, verification=fx.verification_records(), results=fx.results_records())
    answer = recommend(*sources_of(tmp_path), WD_DENSE_SINGLE)
    assert [(f.approach, f.text) for f in answer.pitfalls] == [
        ("grad_zero", fx.WEIGHT_DECAY_EXPLANATION)
    ]
    assert [(f.approach, [c.scenario for c in f.cells]) for f in answer.caveats] == [
        ("split", ["max_norm"])
    ]


def test_popular_recipes_form_their_own_group_and_the_answer_says_which_are_unsafe(tmp_path):
    """Peers (origin ``peer``) get their own columns, and each setup names the unsafe ones with
    the recorded reason; a violation that is an exception counts as a crash, not as unsafe."""
    unsafe_reason = "restores only the rows outside the span of the trainable ids"
    records = fx.verification_records(
        {
            ("recipe_span", "adamw", "P1"): ("violated", "violated", unsafe_reason, None),
            ("recipe_crash", "sgd_momentum", "P1"): ("violated", "violated", "it crashes", None),
        }
    )
    for record in records:
        record["origin"] = "peer" if record["approach"].startswith("recipe") else "reference"
        crashed = (record["approach"], record["scenario"]) == ("recipe_crash", "sgd_momentum")
        record["raised"] = "RuntimeError: boom" if crashed and record["property"] == "P1" else None
    fx.write_all(tmp_path, verification=records, results=fx.results_records())
    with_decay = recommend(*sources_of(tmp_path), WD_DENSE_SINGLE)
    assert with_decay.unsafe_recipes == ["recipe_span"]
    (span, crash) = with_decay.recipes
    assert [(f.text, [c.scenario for c in f.cells]) for f in span.unsafe] == [
        (unsafe_reason, ["adamw"])
    ]
    assert not crash.unsafe and [f.verb for f in crash.crashes] == ["violates, by raising,"]
    without_decay = recommend(*sources_of(tmp_path), NO_WD_DENSE_SINGLE)
    assert without_decay.unsafe_recipes == []
    page = build_report(tmp_path, tmp_path / "out").path.read_text()
    header = matrix_part(page).split("</thead>")[0]
    assert re.search(r'<th colspan="2" class="origin">as people run them</th>', header)
    assert header.index("split") < header.index("recipe_span")
    assert "<th>popular recipes unsafe here</th>" in page
    assert "<strong>recipe_span</strong>: unsafe for this setup. It violates" in page
    assert unsafe_reason in page


def test_setups_without_evidence_or_without_a_safe_approach_say_so(tmp_path):
    fx.write_all(tmp_path, verification=fx.verification_records(), results=fx.results_records())
    answers = {(a.setup.sparse, a.setup.distributed, a.setup.weight_decay): a for a in
               recommend_all(*sources_of(tmp_path))}  # fmt: skip
    assert answers[True, False, True].approach is None
    assert answers[True, False, True].note == "no verification scenario covers this setup"
    # distributed with weight decay: grad_zero breaks P1 (AdamW), split is refused by DDP
    assert answers[False, True, True].approach is None
    assert answers[False, True, True].note.startswith("no approach holds every check")
    assert answers[False, True, False].approach == "grad_zero"


def test_a_verified_extra_approach_with_extra_keys_can_win(tmp_path):
    verification = fx.verification_records(
        extra={("fused", "adamw", "P1"): ("holds", "holds", "", None)}
    )
    for record in verification:
        record["new_key"] = {"nested": [1, 2]}
    results = fx.headline_only(fx.results_records({**fx.HEADLINE_STEP_S, "fused": 0.002}))
    for record in results:
        record["peak_method"] = "rss"
    # A newer writer's extra key is what this test is about: written raw, past the schema check.
    (tmp_path / "in").mkdir()
    fx.write(tmp_path / "in", "verification.json", verification)
    fx.write_all(tmp_path / "in", results=results)
    built = build_report(tmp_path / "in", tmp_path / "out")
    page = built.path.read_text()
    assert re.search(r'id="setup-wd-dense-single"[^>]*>\s*<summary>[^<]*use fused</summary>', page)
    assert "fused</th>" in matrix_part(page)


def test_figures_are_written_as_png_and_svg_and_inlined(complete):
    page, out = complete
    pngs = sorted(out.glob("*.png"))
    kinds = {re.sub(r"-cpu(-\d+)?$", "", p.stem) for p in pngs}
    assert kinds == {
        "step-time-vs-v", "step-time-vs-fraction", "memory-vs-v", "headline", "phases", "ddp",
        "newtokens-gpt2", "newtokens-llama",
    }  # fmt: skip
    inline = re.findall(r'<img src="data:image/png;base64,([^"]+)"', page)
    assert len(inline) == len(pngs)
    for png in pngs:
        assert base64.b64encode(png.read_bytes()).decode() in inline
        svg = png.with_suffix(".svg").read_text()
        assert "<svg" in svg and "</svg>" in svg


def test_every_figure_caption_states_its_case(complete):
    page, _ = complete
    performance = page[page.index('<section id="performance">') : page.index('id="realdata"')]
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", performance, flags=re.S)
    assert captions
    for caption in captions:
        assert "Case: cpu, float32" in caption
        assert "D = 300" in caption and "T = 4,096" in caption and "AdamW" in caption


def test_phase_breakdown_is_derived_from_the_three_phases():
    rows = pd.DataFrame(fx.phases(fx.case("split", 400_000, "headline"), 0.010))
    table = phase_table(rows)
    assert table.loc["split"].round(6).to_dict() == {
        "forward": 0.002, "backward": 0.004, "optimizer": 0.004
    }  # fmt: skip


def test_skipped_cases_are_listed_with_their_reason(complete):
    page, _ = complete
    start = page.index("Skipped and failed cases")
    skipped = page[start : page.index("</table>", start)]
    assert "estimated 31.2 GB &gt; 20.0 GB free" in skipped
    assert "V = 2,000,000" in skipped


def test_values_from_the_files_are_escaped(complete):
    page, _ = complete
    assert "<script" not in page
    assert "&lt;script&gt;alert(" in page  # from an explanation and from the CPU model


def test_real_data_table(complete):
    page, _ = complete
    start = page.index('id="realdata"')
    section = page[start : page.index("</section>", start)]
    assert "mean_pool_linear" in section
    assert section.count("<tr") == 1 + len(fx.realdata_records())
    assert section.count("<td>NO</td>") == 2  # full and grad_zero drift under AdamW


@pytest.mark.parametrize(
    ("present", "notes"),
    [
        ({}, ("verify", "run", "realdata")),
        ({"verification"}, ("run", "realdata")),
        ({"results", "realdata"}, ("verify",)),
    ],
)
def test_partial_results_name_the_command_that_fills_each_gap(tmp_path, present, notes):
    builders = {
        "verification": fx.verification_records,
        "results": lambda: fx.headline_only(fx.results_records()),
        "realdata": fx.realdata_records,
    }
    fx.write_all(tmp_path / "in", **{name: builders[name]() for name in present})
    built = build_report(tmp_path / "in", tmp_path / "out")
    page = built.path.read_text()
    tags = Tags(page)
    assert tags.misnested == [] and tags.open == []
    for section in SECTIONS:
        assert tags.with_id(section)[0] == "section"
    for command in ("verify", "run", "realdata"):
        note = f"run <code>python -m bench {command} --out {tmp_path / 'in'}</code> to produce it"
        assert (note in page) == (command in notes), command
    assert bool(list((tmp_path / "out").glob("*.png"))) == ("results" in present)


def test_rows_with_missing_case_columns_are_kept(tmp_path):
    skipped = {"approach": "split", "phase": "step", "status": "failed", "reason": "OOM <V>"}
    fx.write_all(tmp_path / "in", results=[skipped])
    page = build_report(tmp_path / "in", tmp_path / "out").path.read_text()
    start = page.index("Skipped and failed cases")
    assert "OOM &lt;V&gt;" in page[start:]
    assert "No headline rows" in page


def test_command_line_builds_the_page_and_prints_its_path(tmp_path, capsys):
    fx.write_all(tmp_path / "in", verification=fx.verification_records())
    assert bench_main(["report", "--in", str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 0
    assert capsys.readouterr().out.strip() == f"report: {(tmp_path / 'o' / 'index.html').resolve()}"


def test_command_line_refuses_a_missing_input_folder(tmp_path, capsys):
    assert bench_main(["report", "--in", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "--in" in error and "nope" in error and "not a directory" in error


def test_unreadable_file_is_reported_and_the_rest_still_builds(tmp_path, capsys):
    fx.write_all(tmp_path / "in", realdata=fx.realdata_records())
    (tmp_path / "in" / "verification.json").write_text('{"not": "a list"}')
    assert bench_main(["report", "--in", str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 1
    assert "verification.json is not readable" in capsys.readouterr().err
    page = (tmp_path / "o" / "index.html").read_text()
    assert "verification.json is not readable" in page
    assert "mean_pool_linear" in page


# A page that reports, after load, how many images decoded and whether anything failed to load.
# The report itself has no scripts; the probe is added to a copy only.
PROBE = """<script>
window.__errors = 0;
window.addEventListener('error', () => { window.__errors += 1; }, true);
window.addEventListener('load', () => {
  const images = [...document.images];
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const first = images.length ? images[0].getBoundingClientRect() : {top: 0, left: 0};
  document.body.dataset.images = images.length;
  document.body.dataset.broken = broken;
  document.body.dataset.errors = window.__errors;
  document.body.dataset.firstImage = [first.left, first.top, first.width, first.height]
    .map(Math.round).join(',');
});
</script>"""


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def run_chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
        "--force-device-scale-factor=1", f"--user-data-dir={profile}", "--window-size=1280,8000",
    ]  # fmt: skip
    return subprocess.run(
        [browser, *flags, *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_page_renders_in_headless_chromium_with_visible_figures(complete, tmp_path):
    browser = chromium()
    if browser is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    from PIL import Image

    page, out = complete
    screenshot = tmp_path / "page.png"
    shot = run_chromium(
        browser, tmp_path / "profile", f"--screenshot={screenshot}", (out / "index.html").as_uri()
    )
    assert screenshot.exists(), shot.stderr[-2000:]
    probed = out.parent / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = run_chromium(
        browser, tmp_path / "profile2", "--virtual-time-budget=5000", "--dump-dom", probed.as_uri()
    ).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    data = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(1)))
    assert int(data["images"]) == page.count("<img ") > 0
    assert data["broken"] == "0" and data["errors"] == "0"
    image = Image.open(screenshot).convert("RGB")
    assert len(image.getcolors(2**24)) > 500, "the page looks blank"
    left, top, width, height = (int(v) for v in data["first-image"].split(","))
    figure = image.crop((left, top, left + width, top + height))
    assert width > 600 and top + height <= image.height
    assert len(figure.getcolors(2**24)) > 50, "the first figure looks blank"


def test_compiled_steps_are_set_beside_their_eager_step(complete):
    page, _ = complete
    table = re.search(r"Compiled step beside eager</h3>(.*?)</table>", page, re.S)
    assert table, "the compiled section has a table"
    assert "split" in table.group(1) and "0.80×" in table.group(1), table.group(1)


def test_a_noisy_row_is_marked_and_the_answer_says_so(tmp_path):
    records = fx.results_records()
    for record in records:
        if record["approach"] == "split" and record["sweep"] == "headline":
            record.update(noisy=True, load_before=1.6)
    fx.write_all(tmp_path / "in", verification=fx.verification_records(), results=records)
    page = build_report(tmp_path / "in", tmp_path / "out").path.read_text()
    answer = page[page.index('id="answer"') : page.index('id="verification"')]
    assert "Measured on a busy machine: the rows of split are marked noisy" in answer
    assert "(<a href=" in answer and ">noisy</a>)" in answer
    quiet = build_report_of(tmp_path / "quiet", fx.results_records())
    assert (
        "busy machine" not in quiet[quiet.index('id="answer"') : quiet.index('id="verification"')]
    )


def build_report_of(directory: Path, results: list[dict]) -> str:
    fx.write_all(directory / "in", verification=fx.verification_records(), results=results)
    return build_report(directory / "in", directory / "out").path.read_text()


def test_the_report_and_the_schema_import_no_measuring_code():
    """The report reads result files through the schema only, so it rebuilds without torch."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, bench.report.command; print(sorted(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    modules = set(eval(loaded))
    assert "torch" not in modules
    assert not {m for m in modules if m.startswith(("bench.verify", "bench.perf", "impls"))}


def test_new_tokens_section_answers_per_model_with_table_and_figures(complete):
    page, out = complete
    section = page[page.index('<section id="newtokens">') : page.index('<section id="strength">')]
    for model in ("gpt2", "llama"):
        assert re.search(rf"<strong>{model}</strong>[^:]*:\s*use <strong>split</strong>", section)
        assert (out / f"newtokens-{model}-cpu.png").exists()
    assert "Moved frozen rows: grad_zero." in section
    assert "2.5× the winner" in section  # grad_zero's 0.05 s against split's 0.02 s
    assert section.count("<tr") == 1 + len(fx.newtokens_records())


def test_strength_section_gives_the_kill_rate_survivors_and_false_alarms(complete):
    page, _ = complete
    section = page[page.index('<section id="strength">') : page.index('<section id="environment">')]
    assert "2 of 3 faulty variants killed (67%; target 90%)" in section
    assert "1 false alarm on 2 correct implementations" in section
    survivors = section[section.index("<h3>Survivors</h3>") : section.index("<h3>Faulty")]
    assert "<strong>CudaAssignsRepeatedIds</strong>" in survivors and "no CUDA" in survivors
    assert "ShiftedMask" not in survivors
    assert "<td>P1 in sgd</td>" in section and "<td>P3 in sgd</td>" in section
    assert re.search(r"<td>summed_gradient</td>.*<td>false alarm</td>.*P4 in adamw", section)
    assert fx.INJECTION not in page  # the bug's text is escaped like every other value


def test_every_fixture_record_follows_its_result_schema_and_a_misspelt_key_is_refused():
    from bench.common.schema import MUTATION, NEWTOKENS, REALDATA, RESULTS, VERIFICATION

    families = {
        VERIFICATION: fx.verification_records(),
        RESULTS: fx.results_records(),
        REALDATA: fx.realdata_records(),
        NEWTOKENS: fx.newtokens_records(),
        MUTATION: fx.mutation_records(),
    }
    for schema, records in families.items():
        assert records and fx.checked(schema, records) == records, schema.filename
    with pytest.raises(AssertionError, match=r"results.json fixture record 0: .*'approch'"):
        fx.checked(RESULTS, [{"approch": "split"}])


def test_the_loader_coerces_boolean_columns_from_json_and_csv_text(tmp_path):
    """One loader types a file's booleans: JSON true and CSV-style "True" read alike."""
    records = fx.results_records()
    records[0] = {**records[0], "noisy": "True", "frozen_rows_identical": "False"}
    records[1] = {**records[1], "noisy": True, "frozen_rows_identical": None}
    fx.write_all(tmp_path, results=records)
    frame = load_sources(tmp_path)["results"].frame
    assert frame["noisy"].iloc[0] is True and frame["noisy"].iloc[1] is True
    assert frame["frozen_rows_identical"].iloc[0] is False
    assert frame["frozen_rows_identical"].iloc[1] is None


def test_the_headline_table_gives_the_bound_with_and_without_the_loss(complete):
    page, _ = complete
    section = re.search(r"Headline case, every approach</h3>(.*?)</table>", page, re.S)
    assert section, "the headline section has a table"
    header = re.findall(r"<th>([^<]*)</th>", section.group(1))
    assert {"fraction of bound", "with the loss"} <= set(header), header
    split = next(r for r in re.findall(r"<tr>(.*?)</tr>", section.group(1), re.S) if "split" in r)
    cells = re.findall(r"<td>([^<]*)</td>", split)
    without, with_loss = (
        float(cells[header.index(name)].rstrip("%"))
        for name in ("fraction of bound", "with the loss")
    )
    # the loss adds 4·T·D·s to what the step must move, so the step is closer to that bound
    assert with_loss > without, (without, with_loss)


def test_a_step_in_a_process_that_keeps_freed_memory_is_set_beside_the_same_step_as_started(
    complete,
):
    page, _ = complete
    section = re.search(r"keeps freed memory</h3>(.*?)</table>", page, re.S)
    assert section, "the retained section has a table"
    split = next(r for r in re.findall(r"<tr>(.*?)</tr>", section.group(1), re.S) if "split" in r)
    # the fixture's retained step is 0.6 of its headline step
    assert "0.60×" in split, split


def test_a_step_given_its_output_gradient_is_set_beside_the_same_step_with_the_loss(complete):
    page, _ = complete
    section = re.search(r"its output's gradient given</h3>(.*?)</table>", page, re.S)
    assert section, "the gradient section has a table"
    body = section.group(1)
    header = re.findall(r"<th>([^<]*)</th>", body)
    split = next(r for r in re.findall(r"<tr>(.*?)</tr>", body, re.S) if "split" in r)
    cells = dict(zip(header, re.findall(r"<td>([^<]*)</td>", split), strict=True))
    # the fixture's given-gradient step is 0.5 of the split headline step, its loss step 0.7
    assert cells["given / with the loss"] == f"{0.5 / 0.7:.2f}×", cells
    bound_s = 4 * fx.D * (2 * fx.T + 4 * int(400_000 * fx.FRACTION)) / 10e9
    given_s = fx.HEADLINE_STEP_S["split"] * 0.5
    assert cells["given / bound"] == f"{given_s / bound_s:.2f}×", cells
