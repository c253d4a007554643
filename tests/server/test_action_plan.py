"""The action plan: the default plan, admins shaping it, each incident's checklist, closing as confirmed, the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from vakta.server import actionplan, evidence
from vakta.server.db import Database
from vakta.server.models import Role

from .conftest import PASSWORD, Console, alert

PLAN = "/api/v1/action-plan"


def _plan(console: Console, **params: Any) -> list[dict[str, Any]]:
    response = console.client.get(PLAN, params=params, headers=console.as_(Role.AUDITOR))
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()
    return result


def _detail(console: Console, incident_id: int) -> dict[str, Any]:
    response = console.client.get(f"/api/v1/incidents/{incident_id}", headers=console.as_(Role.AUDITOR))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _audit(console: Console, target: str) -> list[dict[str, Any]]:
    response = console.client.get(
        "/api/v1/audit", params={"target": target}, headers=console.as_(Role.AUDITOR)
    )
    result: list[dict[str, Any]] = response.json()
    return result


def _step_url(incident_id: int, step_id: int) -> str:
    return f"/api/v1/incidents/{incident_id}/steps/{step_id}"


def _incident(console: Console, **fields: Any) -> int:
    _, secret = console.enrol()
    incident_id: int = console.submit(secret, alert(**fields))["results"][0]["incident_id"]
    return incident_id


def _close(console: Console, incident_id: int, resolution: str) -> Any:
    change = {"state": "closed", "resolution": resolution}
    return console.client.patch(
        f"/api/v1/incidents/{incident_id}", json=change, headers=console.as_(Role.ANALYST)
    )


def test_a_new_console_has_the_default_plan_once(console: Console) -> None:
    steps = _plan(console)
    assert [s["title"] for s in steps] == [title for title, _, _ in actionplan.DEFAULT_PLAN]
    assert [s["position"] for s in steps] == list(range(1, len(steps) + 1))
    assert all(s["required"] and s["retired_at"] is None for s in steps)
    assert "without viewing the content" in steps[0]["title"]
    assert actionplan.ensure_default(console.db) is False  # a second start seeds nothing
    assert len(_plan(console)) == len(actionplan.DEFAULT_PLAN)
    assert [e["action"] for e in _audit(console, "action-plan")] == ["action-plan.seed"]


def test_admins_add_edit_reorder_and_retire_steps_never_delete(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    added = console.client.post(
        PLAN,
        json={"title": "Inform the data protection officer", "required": False, "position": 2},
        headers=admin,
    )
    assert added.status_code == 201, added.text
    new = added.json()
    titles = [s["title"] for s in _plan(console)]
    assert titles[1] == "Inform the data protection officer" and len(titles) == 7
    assert [s["position"] for s in _plan(console)] == list(range(1, 8))

    moved = console.client.patch(
        f"{PLAN}/{new['id']}", json={"position": 7, "description": "GDPR"}, headers=admin
    )
    assert (
        moved.status_code == 200 and moved.json()["position"] == 7 and moved.json()["description"] == "GDPR"
    )
    assert _plan(console)[-1]["id"] == new["id"]

    first = _plan(console)[0]
    retired = console.client.patch(f"{PLAN}/{first['id']}", json={"retired": True}, headers=admin)
    assert retired.status_code == 200 and retired.json()["retired_at"] is not None
    active = _plan(console)
    assert first["id"] not in [s["id"] for s in active]
    assert [s["position"] for s in active] == list(range(1, 7))
    every = _plan(console, retired="true")
    assert every[-1]["id"] == first["id"] and len(every) == 7  # kept, after the active ones
    back = console.client.patch(f"{PLAN}/{first['id']}", json={"retired": False}, headers=admin)
    assert back.status_code == 200 and _plan(console)[0]["id"] == first["id"]

    assert console.client.patch(f"{PLAN}/999", json={"title": "x"}, headers=admin).status_code == 404
    assert console.client.post(PLAN, json={"title": "  "}, headers=admin).status_code == 422
    assert console.client.post(PLAN, json={"title": "x", "colour": "red"}, headers=admin).status_code == 422
    actions = [e["action"] for e in _audit(console, f"action-plan:{new['id']}")]
    assert actions == ["action-plan.create", "action-plan.update"]
    assert _audit(console, f"action-plan:{first['id']}")[0]["details"]["retired"] == {
        "from": False,
        "to": True,
    }


@pytest.mark.parametrize("role", ["agent", "api-client", "auditor", "analyst"])
def test_only_admins_change_the_plan_and_machines_cannot_read_it(console: Console, role: str) -> None:
    headers = console.as_(role)
    step = _plan(console)[0]["id"]
    assert console.client.post(PLAN, json={"title": "mine"}, headers=headers).status_code == 403
    assert console.client.patch(f"{PLAN}/{step}", json={"retired": True}, headers=headers).status_code == 403
    readable = console.client.get(PLAN, headers=headers).status_code
    assert readable == (200 if role in ("auditor", "analyst") else 403)
    assert console.client.get(PLAN).status_code == 401


def test_analysts_tick_and_untick_steps_each_audited(console: Console) -> None:
    incident_id = _incident(console)
    checklist = _detail(console, incident_id)["checklist"]
    assert [c["title"] for c in checklist] == [s["title"] for s in _plan(console)]
    assert not any(c["done"] for c in checklist)
    step = checklist[2]["step_id"]

    done = console.client.put(
        _step_url(incident_id, step),
        json={"note": "Police case 2026/1234"},
        headers=console.as_(Role.ANALYST),
    )
    assert done.status_code == 200, done.text
    assert done.json()["done"] and done.json()["note"] == "Police case 2026/1234"
    assert done.json()["done_by"].startswith("token:") and done.json()["done_at"]
    again = console.client.put(
        _step_url(incident_id, step),
        json={"note": "Police case 2026/1234"},
        headers=console.as_(Role.ANALYST),
    )
    assert again.status_code == 200  # the same tick again changes nothing
    item = next(c for c in _detail(console, incident_id)["checklist"] if c["step_id"] == step)
    assert item["done"] and item["note"] == "Police case 2026/1234"

    undone = console.client.delete(_step_url(incident_id, step), headers=console.as_(Role.ANALYST))
    assert undone.status_code == 200 and undone.json()["done"] is False and undone.json()["note"] is None
    entries = [
        e for e in _audit(console, f"incident:{incident_id}") if e["action"].startswith("incident.step")
    ]
    assert [e["action"] for e in entries] == ["incident.step-done", "incident.step-undone"]
    assert entries[0]["details"]["note_sha256"] == evidence.text_digest("Police case 2026/1234")
    assert entries[0]["details"]["step"] == step and "Police case" not in json.dumps(entries)

    for role in ("auditor", "agent", "api-client"):
        refused = console.client.put(
            _step_url(incident_id, step), json={"note": ""}, headers=console.as_(role)
        )
        assert refused.status_code == 403, role
    missing = console.client.put(_step_url(incident_id, 999), json={}, headers=console.as_(Role.ANALYST))
    assert missing.status_code == 404
    assert (
        console.client.put(_step_url(999, step), json={}, headers=console.as_(Role.ANALYST)).status_code
        == 404
    )


def test_closing_as_confirmed_needs_every_required_step(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    optional = console.client.post(PLAN, json={"title": "Debrief the team", "required": False}, headers=admin)
    incident_id = _incident(console)
    checklist = _detail(console, incident_id)["checklist"]

    refused = _close(console, incident_id, "confirmed")
    assert refused.status_code == 409
    message = refused.json()["detail"]
    assert "Report to the police" in message and "Inform legal" in message and "Debrief" not in message
    for item in checklist[:-2]:  # all but the last required step and the optional one
        console.client.put(
            _step_url(incident_id, item["step_id"]), json={}, headers=console.as_(Role.ANALYST)
        )
    still = _close(console, incident_id, "confirmed")
    assert still.status_code == 409 and "Record the outcome" in still.json()["detail"]
    assert "Report to the police" not in still.json()["detail"]
    last = checklist[-2]["step_id"]
    console.client.put(_step_url(incident_id, last), json={"note": "done"}, headers=console.as_(Role.ANALYST))
    closed = _close(console, incident_id, "confirmed")
    assert closed.status_code == 200 and closed.json()["resolution"] == "confirmed", closed.text
    assert optional.json()["id"] in [c["step_id"] for c in _detail(console, incident_id)["checklist"]]

    # a closed incident's checklist is final
    after = console.client.delete(_step_url(incident_id, last), headers=console.as_(Role.ANALYST))
    assert after.status_code == 409 and "closed" in after.json()["detail"]


@pytest.mark.parametrize("resolution", ["false-positive", "test-signature"])
def test_other_closures_are_not_blocked_by_the_plan(console: Console, resolution: str) -> None:
    incident_id = _incident(console, test=resolution == "test-signature")
    closed = _close(console, incident_id, resolution)
    assert closed.status_code == 200, closed.text


def test_retired_steps_stay_on_incidents_that_did_them(console: Console) -> None:
    admin = console.as_(Role.ADMIN)
    worked, fresh = _incident(console, user="bob"), _incident(console, user="eve")
    steps = _plan(console)
    console.client.put(
        _step_url(worked, steps[0]["id"]), json={"note": "n"}, headers=console.as_(Role.ANALYST)
    )
    for step in steps[:2]:
        console.client.patch(f"{PLAN}/{step['id']}", json={"retired": True}, headers=admin)

    on_worked = {c["step_id"]: c for c in _detail(console, worked)["checklist"]}
    assert on_worked[steps[0]["id"]]["retired"] and on_worked[steps[0]["id"]]["done"]
    assert steps[1]["id"] not in on_worked
    undone = console.client.delete(_step_url(worked, steps[0]["id"]), headers=console.as_(Role.ANALYST))
    assert undone.status_code == 200 and undone.json()["retired"] and not undone.json()["done"]
    assert steps[0]["id"] not in {c["step_id"] for c in _detail(console, worked)["checklist"]}
    assert steps[0]["id"] not in {c["step_id"] for c in _detail(console, fresh)["checklist"]}
    refused = console.client.put(_step_url(fresh, steps[0]["id"]), json={}, headers=console.as_(Role.ANALYST))
    assert refused.status_code == 409 and "retired" in refused.json()["detail"]
    # retired steps no longer block a confirmed closing
    for item in _detail(console, fresh)["checklist"]:
        console.client.put(_step_url(fresh, item["step_id"]), json={}, headers=console.as_(Role.ANALYST))
    assert _close(console, fresh, "confirmed").status_code == 200


def test_the_evidence_record_holds_the_checklist(console: Console) -> None:
    incident_id = _incident(console)
    step = _plan(console)[1]["id"]
    console.client.put(
        _step_url(incident_id, step), json={"note": "laptop sealed"}, headers=console.as_(Role.ANALYST)
    )
    record = console.client.get(
        f"/api/v1/incidents/{incident_id}/evidence", headers=console.as_(Role.AUDITOR)
    ).json()
    assert evidence.is_sealed(record)
    done = [c for c in record["checklist"] if c["done"]]
    assert [(c["step_id"], c["note"]) for c in done] == [(step, "laptop sealed")]
    assert len(record["checklist"]) == len(actionplan.DEFAULT_PLAN)
    assert record["incident"]["acknowledged_at"] is not None


def test_plan_files_text_and_json() -> None:
    text = "# comment\n\nTriage | look at hashes only\noptional: Debrief\nReport to police\n"
    assert actionplan.parse_plan(text) == [
        actionplan.StepSpec("Triage", "look at hashes only", True),
        actionplan.StepSpec("Debrief", "", False),
        actionplan.StepSpec("Report to police", "", True),
    ]
    as_json = '[{"title": "Triage", "required": false}, "Report"]'
    assert actionplan.parse_plan(as_json) == [
        actionplan.StepSpec("Triage", "", False),
        actionplan.StepSpec("Report", "", True),
    ]
    for bad in ('[{"title": 3}]', '[{"title": "a", "when": 1}]', "[not json", "optional:   \n"):
        with pytest.raises(actionplan.PlanError):
            actionplan.parse_plan(bad)


def test_cli_shows_and_sets_the_plan_keeping_ticks(
    database_url: str, db: Database, run_cli, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    shown = run_cli("server", "action-plan", "show", "--database", database_url)
    assert shown.exit_code == 0, shown.stderr
    default = actionplan.parse_plan(shown.stdout)
    assert [s.title for s in default] == [t for t, _, _ in actionplan.DEFAULT_PLAN]

    plan = tmp_path / "plan.txt"
    plan.write_text(
        "Report to the police | case number in the note\noptional: Debrief the team\nInform legal\n",
        encoding="utf-8",
    )
    done = run_cli("server", "action-plan", "set", plan, "--database", database_url)
    assert done.exit_code == 0, done.stderr
    assert "2 kept, 1 added, 4 retired" in done.stderr
    as_json = json.loads(
        run_cli("server", "action-plan", "show", "--json", "--database", database_url).stdout
    )
    assert as_json == [
        {"title": "Report to the police", "description": "case number in the note", "required": True},
        {"title": "Debrief the team", "description": "", "required": False},
        {"title": "Inform legal", "description": "", "required": True},
    ]
    with db.read() as session:
        kept = {s.title: s.id for s in actionplan.steps(session, retired=True)}
    assert len(kept) == 7  # retired, not deleted

    bad = tmp_path / "bad.json"
    bad.write_text('[{"title": "x", "due": "tomorrow"}]', encoding="utf-8")
    refused = run_cli("server", "action-plan", "set", bad, "--database", database_url)
    assert refused.exit_code == 1 and "unknown field" in refused.stderr


def test_the_incident_page_ticks_and_unticks_with_the_csrf_token(console: Console) -> None:
    incident_id = _incident(console)
    console.user("alice", Role.ANALYST)
    browser = TestClient(console.app)
    form = browser.get("/ui/login")
    token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    browser.post("/ui/login", data={"csrf_token": token, "username": "alice", "password": PASSWORD})
    page = browser.get(f"/ui/incidents/{incident_id}")
    assert page.status_code == 200 and "Action plan" in page.text and "Mark done" in page.text
    csrf = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    step = _plan(console)[0]["id"]

    forged = browser.post(f"/ui/incidents/{incident_id}/steps/{step}", data={"csrf_token": "x", "note": "n"})
    assert forged.status_code == 403
    ticked = browser.post(
        f"/ui/incidents/{incident_id}/steps/{step}", data={"csrf_token": csrf, "note": "sealed"}
    )
    assert ticked.status_code == 200 and "marked done" in ticked.text and "sealed" in ticked.text
    assert next(c for c in _detail(console, incident_id)["checklist"] if c["step_id"] == step)["done"]
    refused = browser.post(
        f"/ui/incidents/{incident_id}/state",
        data={"csrf_token": csrf, "state": "closed", "resolution": "confirmed"},
    )
    assert refused.status_code == 409 and "Report to the police" in refused.text
    unticked = browser.post(f"/ui/incidents/{incident_id}/steps/{step}/undo", data={"csrf_token": csrf})
    assert unticked.status_code == 200 and "marked not done" in unticked.text
    assert not any(c["done"] for c in _detail(console, incident_id)["checklist"])


def _browser(console: Console, username: str, role: Role) -> tuple[TestClient, str]:
    console.user(username, role)
    browser = TestClient(console.app)
    form = browser.get("/ui/login").text
    token = form.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    page = browser.post("/ui/login", data={"csrf_token": token, "username": username, "password": PASSWORD})
    return browser, page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]


def test_admins_shape_the_plan_on_its_page_and_others_only_read_it(console: Console) -> None:
    admin, csrf = _browser(console, "root", Role.ADMIN)
    added = admin.post(
        "/ui/action-plan",
        data={"csrf_token": csrf, "title": "Inform the <b>DPO</b>", "description": "GDPR", "position": "1"},
    )
    assert added.status_code == 200 and "was added" in added.text
    assert "Inform the &lt;b&gt;DPO&lt;/b&gt;" in added.text  # escaped
    new = _plan(console)[0]
    assert (new["title"], new["required"], new["description"]) == ("Inform the <b>DPO</b>", False, "GDPR")
    saved = admin.post(
        f"/ui/action-plan/{new['id']}",
        data={
            "csrf_token": csrf,
            "title": "Inform the DPO",
            "description": "",
            "required": "1",
            "position": "3",
        },
    )
    assert saved.status_code == 200 and "was saved" in saved.text
    assert (_plan(console)[2]["title"], _plan(console)[2]["required"]) == ("Inform the DPO", True)
    assert admin.post(f"/ui/action-plan/{new['id']}/retire", data={"csrf_token": csrf}).status_code == 200
    assert new["id"] not in [s["id"] for s in _plan(console)]
    restored = admin.post(f"/ui/action-plan/{new['id']}/restore", data={"csrf_token": csrf})
    assert restored.status_code == 200 and new["id"] in [s["id"] for s in _plan(console)]
    empty = admin.post("/ui/action-plan", data={"csrf_token": csrf, "title": " "})
    assert empty.status_code == 422
    assert admin.post("/ui/action-plan", data={"csrf_token": "forged", "title": "x"}).status_code == 403

    auditor, token = _browser(console, "otto", Role.AUDITOR)
    page = auditor.get("/ui/action-plan")
    assert (
        page.status_code == 200
        and "Inform the DPO" in page.text
        and '<form method="post" action="/ui/action-plan' not in page.text
    )
    refused = auditor.post(f"/ui/action-plan/{new['id']}/retire", data={"csrf_token": token})
    assert refused.status_code == 403
