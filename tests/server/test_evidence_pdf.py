"""The evidence record as PDF: what it holds (read back with pypdf), any path's characters, who may export it, the audit."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pypdf
import pytest
from fastapi.testclient import TestClient

from vakta.server import evidence, evidence_pdf
from vakta.server.models import Role

from .conftest import PASSWORD, Console, alert

CJK_PATH = "/home/åsa/文件.jpg"
EMOJI_PATH = "/home/åsa/😀.png"


def _incident(console: Console) -> tuple[int, list[dict[str, Any]]]:
    """An incident with a non-Latin-1 path, an emoji path inside a container, a note and a step done."""
    _, secret = console.enrol("laptop-7")
    sent = [
        alert(user="åsa", path=CJK_PATH, sha1="a" * 40, pdq="f" * 64, pdq_quality=87),
        alert(user="åsa", path=EMOJI_PATH, storage="removable", inside=["holiday.zip", "pics/x.png"]),
    ]
    incident_id: int = console.submit(secret, *sent)["results"][0]["incident_id"]
    analyst = console.as_(Role.ANALYST)
    console.client.post(
        f"/api/v1/incidents/{incident_id}/notes", json={"text": "Laptop seized."}, headers=analyst
    )
    console.client.put(
        f"/api/v1/incidents/{incident_id}/steps/3", json={"note": "Case 2026/77"}, headers=analyst
    )
    return incident_id, sent


def _pdf(console: Console, incident_id: int, role: Role | str = Role.AUDITOR) -> Any:
    return console.client.get(f"/api/v1/incidents/{incident_id}/evidence.pdf", headers=console.as_(role))


def _text(data: bytes) -> str:
    reader = pypdf.PdfReader(io.BytesIO(data))
    return "\n".join(page.extract_text() for page in reader.pages)


def _attached(data: bytes) -> dict[str, Any]:
    attachments = pypdf.PdfReader(io.BytesIO(data)).attachments
    assert list(attachments) == [evidence_pdf.ATTACHMENT]
    record: dict[str, Any] = json.loads(attachments[evidence_pdf.ATTACHMENT][0])
    return record


def test_the_pdf_holds_the_record_and_ties_to_the_json(console: Console) -> None:
    incident_id, sent = _incident(console)
    response = _pdf(console, incident_id)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert "attachment" in response.headers["content-disposition"]
    data = response.content
    assert data.startswith(b"%PDF-")
    text = _text(data)

    record = _attached(data)
    assert evidence.is_sealed(record) and record["incident"]["id"] == incident_id
    assert record["sha256"] in text  # the hash of the JSON it was made from, printed
    assert record["generated_by"] in text and record["generated_at"] in text
    for value in (sent[0]["md5"], sent[0]["sha256"], "a" * 40, "f" * 64, sent[1]["md5"], sent[1]["sha256"]):
        assert value in text, value
    # DejaVu (fonts-dejavu-core) draws å and the emoji and lacks the CJK characters: those are escaped
    dejavu = all((evidence_pdf.FONT_DIR / name).is_file() for name in evidence_pdf.FONT_FILES.values())
    assert "/home/åsa/<U+6587><U+4EF6>.jpg" in text
    assert (EMOJI_PATH if dejavu else "/home/åsa/<U+1F600>.png") in text
    assert "holiday.zip > pics/x.png" in text
    for words in (
        "laptop-7",
        "removable",
        "projectvic",
        "Laptop seized.",
        "Case 2026/77",
        "Report to the police",
    ):
        assert words in text, words
    for entry in record["audit"]:
        assert entry["hash"] in text and entry["prev_hash"] in text
    assert not any(page.images for page in pypdf.PdfReader(io.BytesIO(data)).pages)  # never a picture

    exports = console.client.get(
        "/api/v1/audit", params={"target": f"incident:{incident_id}"}, headers=console.as_(Role.AUDITOR)
    ).json()
    assert exports[-1]["action"] == "incident.evidence"
    assert exports[-1]["details"] == {
        "sha256": record["sha256"],
        "format": "pdf",
        "pdf_sha256": hashlib.sha256(data).hexdigest(),
    }
    assert exports[-1]["actor"] == record["generated_by"]


def test_without_dejavu_the_core_fonts_escape_what_latin1_lacks(
    console: Console, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(evidence_pdf, "FONT_DIR", tmp_path / "no-fonts")
    incident_id, _ = _incident(console)
    response = _pdf(console, incident_id)
    assert response.status_code == 200, response.text
    text = _text(response.content)
    assert "/home/åsa/<U+6587><U+4EF6>.jpg" in text and "/home/åsa/<U+1F600>.png" in text
    assert _attached(response.content)["sha256"] in text


def test_printable_escapes_control_and_unshowable_characters() -> None:
    latin1 = evidence_pdf.printable
    assert latin1("a\tb\x00c\u200bd", lambda ch: ord(ch) <= 0xFF) == "a<U+0009>b<U+0000>c<U+200B>d"
    assert latin1("line\nnext\udc80", lambda ch: True, keep_newlines=True) == "line\nnext<U+DC80>"
    assert latin1("line\nnext", lambda ch: True) == "line<U+000A>next"


def test_a_hostile_or_huge_record_still_renders(console: Console) -> None:
    _, secret = console.enrol()
    nasty = "/tmp/" + "\u202e\u0000x" * 3 + "(a)\\)" + "ÿ" * 3000
    paths = [nasty.replace("\u0000", ""), "/x/" + "y" * 4000, "/z/<img src=x onerror=alert(1)>"]
    incident_id = console.submit(secret, *(alert(path=p) for p in paths))["results"][0]["incident_id"]
    response = _pdf(console, incident_id)
    assert response.status_code == 200, response.text
    text = _text(response.content)
    assert "<U+202E>x" in text and "/z/<img src=x onerror=alert(1)>" in text
    assert len(pypdf.PdfReader(io.BytesIO(response.content)).pages) >= 2


@pytest.mark.parametrize("role", ["agent", "api-client"])
def test_machines_may_not_export_evidence(console: Console, role: str) -> None:
    incident_id, _ = _incident(console)
    assert _pdf(console, incident_id, role).status_code == 403
    assert console.client.get(f"/api/v1/incidents/{incident_id}/evidence.pdf").status_code == 401
    assert _pdf(console, 999).status_code == 404
    actions = [
        e["action"]
        for e in console.client.get(
            "/api/v1/audit", params={"target": f"incident:{incident_id}"}, headers=console.as_(Role.AUDITOR)
        ).json()
    ]
    assert "incident.evidence" not in actions


def test_the_incident_page_links_the_pdf(console: Console) -> None:
    incident_id, _ = _incident(console)
    console.user("otto", Role.AUDITOR)
    browser = TestClient(console.app)
    form = browser.get("/ui/login").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    browser.post("/ui/login", data={"csrf_token": token, "username": "otto", "password": PASSWORD})
    page = browser.get(f"/ui/incidents/{incident_id}")
    link = f'href="/api/v1/incidents/{incident_id}/evidence.pdf"'
    assert page.status_code == 200 and link in page.text
    downloaded = browser.get(f"/api/v1/incidents/{incident_id}/evidence.pdf")  # with the session cookie
    assert downloaded.status_code == 200 and downloaded.content.startswith(b"%PDF-")
