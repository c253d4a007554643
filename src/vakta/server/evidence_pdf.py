"""The evidence record as a PDF for a police report: readable, and tied to the JSON record it was made from.

It is rendered from the sealed JSON record (``evidence.build``) and nothing
else: the incident, every alert (host, user, path and container chain,
storage, size, digests, PDQ, lists and categories, times, test flag), the
action plan checklist, the notes, the audit entries with their chain hashes,
who exported it and when, and the record's SHA-256. The JSON itself is
attached to the PDF, so the readable copy can always be checked against the
canonical one. Never any content or thumbnail: the console has none.

Paths can hold any character. Text is set in DejaVu (embedded) when Debian's
``fonts-dejavu-core`` is installed, else in the PDF core fonts (Latin-1
only); a character the font cannot show is written as ``<U+XXXX>``, visibly,
never dropped, and the attached JSON holds the exact text.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fpdf import FPDF
from fpdf.enums import MethodReturnValue, WrapMode, XPos, YPos

log = logging.getLogger(__name__)

#: Where Debian's fonts-dejavu-core puts its fonts (sans, bold, mono).
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_FILES = {"sans": "DejaVuSans.ttf", "bold": "DejaVuSans-Bold.ttf", "mono": "DejaVuSansMono.ttf"}
ATTACHMENT = "evidence.json"
#: Shown for a character the fonts cannot draw (control characters too).
ESCAPE = "<U+{:04X}>"
#: Unicode categories never drawn as they are: controls, invisible formatting (bidi overrides,
#: zero-width), surrogates, private use, unassigned, line and paragraph separators.
HIDDEN = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
GREY = (90, 90, 90)
#: Width of the names column of a facts table, and its line height (mm).
FACT_NAME_WIDTH = 40
FACT_LINE = 4.6


@dataclass(frozen=True)
class Fonts:
    """The font families to use and which characters they can show."""

    sans: str
    mono: str
    embedded: bool
    covers: Callable[[str], bool]
    covers_mono: Callable[[str], bool]


def render(record: dict[str, Any]) -> bytes:
    """The PDF of a sealed evidence record (``evidence.build``), with the record attached as JSON."""
    pdf = _Document(record)
    fonts = _fonts(pdf)
    pdf.fonts_used = fonts
    pdf.set_title(f"Vakta evidence record, incident {record['incident']['id']}")
    pdf.set_creator(f"Vakta {record.get('vakta_version', '')}")
    pdf.add_page()
    _header(pdf, record)
    _incident(pdf, record["incident"], len(record["alerts"]))
    _alerts(pdf, record["alerts"])
    _checklist(pdf, record.get("checklist", []))
    _notes(pdf, record["notes"])
    _audit(pdf, record["audit"])
    pdf.embed_file(
        bytes=json.dumps(record, indent=2, sort_keys=True).encode("ascii"),
        basename=ATTACHMENT,
        desc="The JSON evidence record this PDF was made from (its sha256 field is printed on page 1).",
        mime_type="application/json",
    )
    return bytes(pdf.output())


# --------------------------------------------------------------------------- fonts and text


def _fonts(pdf: FPDF) -> Fonts:
    """DejaVu when installed (most of Unicode), else the core fonts (Latin-1): never a failure."""
    paths = {style: FONT_DIR / name for style, name in FONT_FILES.items()}
    if all(p.is_file() for p in paths.values()):
        try:
            pdf.add_font("dejavu", "", str(paths["sans"]))
            pdf.add_font("dejavu", "B", str(paths["bold"]))
            pdf.add_font("dejavumono", "", str(paths["mono"]))
            sans, mono = _cmap(pdf, "dejavu"), _cmap(pdf, "dejavumono")
            return Fonts("dejavu", "dejavumono", True, lambda ch: ord(ch) in sans, lambda ch: ord(ch) in mono)
        except Exception as exc:  # fpdf2 and fontTools raise many kinds on a broken font file
            log.warning("evidence PDF: cannot use %s (%s): core fonts instead", FONT_DIR, exc)
    return Fonts("helvetica", "courier", False, _latin1, _latin1)


def _latin1(ch: str) -> bool:
    return ord(ch) <= 0xFF


def _cmap(pdf: FPDF, family: str) -> frozenset[int]:
    """The code points a font added to ``pdf`` has glyphs for."""
    return frozenset(getattr(pdf.fonts[family], "cmap", {}))


def printable(text: str, covers: Callable[[str], bool], keep_newlines: bool = False) -> str:
    """``text`` with every character the font cannot show, or that hides or reorders text, as ``<U+XXXX>``.

    Bidi overrides and zero-width characters are escaped too: a path must read as it is.
    """
    out = []
    for ch in text:
        if keep_newlines and ch == "\n":
            out.append(ch)
        elif unicodedata.category(ch) in HIDDEN or not covers(ch):
            out.append(ESCAPE.format(ord(ch)))
        else:
            out.append(ch)
    return "".join(out)


class _Document(FPDF):
    """An A4 document whose footer ties every page to the record's hash."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__(orientation="P", unit="mm", format="A4")
        self.record = record
        self.fonts_used: Fonts | None = None
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=18)

    def text_of(self, value: Any, keep_newlines: bool = False, mono: bool = False) -> str:
        assert self.fonts_used is not None
        shown = "-" if value is None or value == "" else str(value)
        covers = self.fonts_used.covers_mono if mono else self.fonts_used.covers
        return printable(shown, covers, keep_newlines)

    def footer(self) -> None:
        assert self.fonts_used is not None
        self.set_y(-12)
        self.set_font(self.fonts_used.sans, size=7)
        self.set_text_color(*GREY)
        incident = self.record["incident"]["id"]
        digest = self.record["sha256"]
        text = (
            f"Vakta evidence record, incident {incident}, JSON SHA-256 {digest}, page {self.page_no()}/{{nb}}"
        )
        self.cell(0, 5, text, align="C")
        self.set_text_color(0, 0, 0)


# --------------------------------------------------------------------------- sections


def _heading(pdf: _Document, text: str, size: int = 13) -> None:
    assert pdf.fonts_used is not None
    if pdf.will_page_break(30):  # no heading alone at the foot of a page
        pdf.add_page()
    pdf.ln(3)
    pdf.set_font(pdf.fonts_used.sans, "B", size)
    pdf.multi_cell(0, size * 0.5, pdf.text_of(text), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(pdf.fonts_used.sans, size=9)
    pdf.ln(1)


def _paragraph(pdf: _Document, text: str, size: float = 9) -> None:
    assert pdf.fonts_used is not None
    pdf.set_font(pdf.fonts_used.sans, size=size)
    pdf.multi_cell(
        0, size * 0.5, pdf.text_of(text, keep_newlines=True), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
    )


def _facts(pdf: _Document, rows: Iterable[tuple[str, Any]], mono: Sequence[str] = ()) -> None:
    """A two-column table of names and values (``mono``: names whose values are hashes).

    Drawn with plain cells, not ``FPDF.table``: an incident can have thousands of
    alerts, and this is several times faster (only long values are wrapped).
    """
    fonts = pdf.fonts_used
    assert fonts is not None
    value_width = pdf.epw - FACT_NAME_WIDTH
    for name, value in rows:
        text = pdf.text_of(value, keep_newlines=True, mono=name in mono)
        if name in mono:
            pdf.set_font(fonts.mono, size=8)
        else:
            pdf.set_font(fonts.sans, size=8.5)
        lines = 1
        if "\n" in text or pdf.get_string_width(text) > value_width - 2 * pdf.c_margin:
            wrapped = pdf.multi_cell(
                value_width, FACT_LINE, text, dry_run=True, output=MethodReturnValue.LINES
            )
            lines = len(wrapped) if isinstance(wrapped, list) else 1
        height = FACT_LINE * lines
        if pdf.will_page_break(height):
            pdf.add_page()
        pdf.set_font(fonts.sans, "B", 8.5)
        pdf.cell(FACT_NAME_WIDTH, height, pdf.text_of(name), border=1)
        if name in mono:
            pdf.set_font(fonts.mono, size=8)
        else:
            pdf.set_font(fonts.sans, size=8.5)
        if lines == 1:
            pdf.cell(value_width, height, text, border=1, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        else:
            pdf.multi_cell(
                value_width, FACT_LINE, text, border=1, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
    pdf.ln(2)


def _grid(
    pdf: _Document, head: Sequence[str], rows: Iterable[Sequence[Any]], widths: Sequence[float]
) -> None:
    """A table with a heading row (repeated on each page)."""
    assert pdf.fonts_used is not None
    pdf.set_font(pdf.fonts_used.sans, size=8)
    with pdf.table(
        col_widths=tuple(widths),
        text_align="LEFT",
        wrapmode=WrapMode.WORD,
        line_height=4,
        padding=(0.8, 1.2),
    ) as table:
        heading = table.row()
        for name in head:
            heading.cell(pdf.text_of(name))
        for values in rows:
            row = table.row()
            for value in values:
                row.cell(pdf.text_of(value, keep_newlines=True))
    pdf.ln(2)


def _header(pdf: _Document, record: dict[str, Any]) -> None:
    incident = record["incident"]
    title = f"Evidence record: incident {incident['id']}"
    _heading(pdf, title + (" (TEST SIGNATURE, not real material)" if incident["test"] else ""), 16)
    _paragraph(
        pdf,
        "Made by Vakta from the console's records: hashes, sizes, paths, list provenance and times. "
        "It holds no file content and no picture of any file. The JSON evidence record it was made from "
        f"is attached to this PDF as {ATTACHMENT}; its SHA-256 (over its canonical JSON, without the "
        "sha256 field) is printed below and on every page, and the console's audit log records the export.",
    )
    pdf.ln(2)
    _facts(
        pdf,
        [
            ("Exported by", record["generated_by"]),
            ("Exported at", record["generated_at"]),
            ("Vakta version", record.get("vakta_version")),
            ("Record format", record["format"]),
            ("JSON SHA-256", record["sha256"]),
        ],
        mono=("JSON SHA-256",),
    )
    assert pdf.fonts_used is not None
    if not pdf.fonts_used.embedded:
        _paragraph(pdf, "Characters outside Latin-1 are shown as <U+XXXX> (the attached JSON has them).", 8)
    else:
        _paragraph(
            pdf, "Characters the fonts cannot show are written as <U+XXXX> (the attached JSON has them).", 8
        )


def _incident(pdf: _Document, incident: dict[str, Any], alerts: int) -> None:
    _heading(pdf, "Incident")
    _facts(
        pdf,
        [
            ("Incident", incident["id"]),
            ("Host", incident["host"]),
            ("User", incident["user"] or "(unknown)"),
            ("Test signature", "yes" if incident["test"] else "no"),
            ("State", incident["state"]),
            ("Resolution", incident["resolution"]),
            ("Assignee", incident["assignee"]),
            ("Opened", incident["created_at"]),
            ("First response", incident.get("acknowledged_at")),
            ("Last alert", incident["last_alert_at"]),
            ("Closed", incident["closed_at"]),
            ("Alerts", alerts),
        ],
    )


def _alerts(pdf: _Document, alerts: list[dict[str, Any]]) -> None:
    _heading(pdf, f"Alerts ({len(alerts)})")
    for alert in alerts:
        _heading(pdf, f"Alert {alert['id']}" + (" (test signature)" if alert["test"] else ""), 10)
        _facts(pdf, _alert_rows(alert), mono=("MD5", "SHA-1", "SHA-256", "PDQ", "Container MD5"))


def _alert_rows(alert: dict[str, Any]) -> list[tuple[str, Any]]:
    size = alert["size"]
    return [
        ("Path", alert["path"]),
        ("Inside (containers)", " > ".join(str(step) for step in alert["inside"]) or None),
        ("Host", alert["host"]),
        ("User", alert["user"] or "(unknown)"),
        ("Storage", alert["storage"]),
        ("Size", f"{size:,} bytes" if size is not None else None),
        ("Type", alert["type"]),
        ("MD5", alert["md5"]),
        ("SHA-1", alert["sha1"]),
        ("SHA-256", alert["sha256"]),
        ("PDQ", alert["pdq"]),
        ("PDQ quality", alert["pdq_quality"]),
        ("Container MD5", alert["parent_md5"]),
        ("Deleted since", "yes" if alert["deleted"] else "no"),
        ("Test signature", "yes" if alert["test"] else "no"),
        ("Detected", alert["detected_at"]),
        ("Received", alert["received_at"]),
        ("Agent", alert["agent_id"]),
        ("Lists", "\n".join(_match_line(m) for m in alert["matches"]) or None),
    ]


def _match_line(match: dict[str, Any]) -> str:
    """One list entry the file matched: list, entry, category, signal and distance."""
    line = f"{match.get('list')}: entry {match.get('entry_id')}, category {match.get('category') or '-'}"
    line += f", {match.get('signal')} distance {match.get('distance', 0)}"
    return line + (" (whole video)" if match.get("video") else "")


def _checklist(pdf: _Document, checklist: list[dict[str, Any]]) -> None:
    _heading(pdf, "Action plan")
    if not checklist:
        _paragraph(pdf, "No action plan steps.")
        return
    rows = [
        (
            item["position"],
            item["title"] + (" (retired)" if item["retired"] else ""),
            "yes" if item["required"] else "no",
            f"{item['done_at']}\n{item['done_by']}" if item["done"] else "not done",
            item["note"],
        )
        for item in checklist
    ]
    _grid(pdf, ("#", "step", "required", "done", "note"), rows, (0.6, 4, 1.4, 3.4, 4))


def _notes(pdf: _Document, notes: list[dict[str, Any]]) -> None:
    _heading(pdf, f"Notes ({len(notes)})")
    if not notes:
        _paragraph(pdf, "No notes.")
        return
    _grid(
        pdf,
        ("written", "by", "note"),
        ((n["created_at"], n["author"], n["text"]) for n in notes),
        (2.2, 2, 6),
    )


def _audit(pdf: _Document, entries: list[dict[str, Any]]) -> None:
    _heading(pdf, f"Audit entries ({len(entries)})")
    _paragraph(
        pdf,
        "Each entry's hash covers its number, time, actor, action, target, details and the previous "
        "entry's hash (`vakta server verify-audit` checks the whole chain).",
        8,
    )
    fonts = pdf.fonts_used
    assert fonts is not None
    for entry in entries:
        pdf.ln(1)
        pdf.set_font(fonts.sans, "B", 8)
        line = f"#{entry['seq']}  {entry['at']}  {entry['actor']}  {entry['action']}  {entry['target']}"
        pdf.multi_cell(0, 4, pdf.text_of(line), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.set_font(fonts.sans, size=7.5)
        details = json.dumps(entry["details"], sort_keys=True, ensure_ascii=False)
        pdf.multi_cell(
            0, 3.6, pdf.text_of(f"details: {details}"), align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
        pdf.set_font(fonts.mono, size=7)
        for label in ("hash", "prev_hash"):
            line = pdf.text_of(f"{label.replace('_hash', ''):4} {entry[label]}", mono=True)
            pdf.multi_cell(0, 3.4, line, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
