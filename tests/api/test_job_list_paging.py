"""GET /v1/jobs on a long history: the total is counted a bounded way ahead, and search stays literal."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from repositories import jobs as jobs_repository
from repositories.jobs import JobRepository
from tests.conftest import auth, create_user


def make_jobs(sessions, user_id, filenames, transcript=None):
    """Jobs named `filenames`, the first the newest; returns their ids in that order."""
    ids = []
    now = datetime.now(UTC)
    with session_scope(sessions) as session:
        for n, filename in enumerate(filenames):
            job = JobRepository(session).create(
                id=str(uuid.uuid4()),
                user_id=user_id,
                priority=Priority.NORMAL,
                status=JobStatus.COMPLETED,
                filename=filename,
                size_bytes=1,
                source_key=f"jobs/{n}/source.wav",
                transcript_text=transcript,
                created_at=now - timedelta(minutes=n),
            )
            ids.append(job.id)
    return ids


def page(client, key, query):
    body = client.get(f"/v1/jobs?{query}", headers=auth(key)).json()
    return [j["id"] for j in body["items"]], body["total"], body["total_exact"]


def test_the_total_is_counted_a_bounded_way_past_the_offset_or_exactly_on_request(
    client, sessions, monkeypatch
):
    monkeypatch.setattr(jobs_repository, "COUNT_AHEAD", 3)
    user_id, key = create_user(sessions, Tier.PRO)
    ids = make_jobs(sessions, user_id, [f"meeting-{n}.wav" for n in range(6)])

    assert page(client, key, "limit=2") == (ids[:2], 3, False)  # at least 3: page on
    assert page(client, key, "limit=2&offset=2") == (ids[2:4], 5, False)
    assert page(client, key, "limit=2&offset=4") == (ids[4:], 6, True)  # the end was in reach
    assert page(client, key, "limit=2&exact_total=true") == (ids[:2], 6, True)
    assert page(client, key, "limit=10") == (ids, 6, True)
    assert page(client, key, "limit=2&offset=6") == ([], 6, True)
    assert page(client, key, "limit=2&sort=created_at") == ([ids[5], ids[4]], 3, False)


def test_search_takes_wildcards_literally_and_ignores_case(client, sessions):
    user_id, key = create_user(sessions, Tier.PRO)
    underscore, x, slash = make_jobs(sessions, user_id, ["Call_Notes.wav", "callxnotes.wav", "a/b.wav"])
    [spoken] = make_jobs(sessions, user_id, ["other.wav"], transcript="Ask what you can DO for 100% of us")

    assert page(client, key, "q=call_notes")[0] == [underscore]
    assert page(client, key, "q=CALL")[0] == [underscore, x]
    assert page(client, key, "q=a/b")[0] == [slash]
    assert page(client, key, "q=100%25")[0] == [spoken]
    assert page(client, key, "q=you can do")[0] == [spoken]
    assert page(client, key, "q=0%25 of")[0] == [spoken]
    assert page(client, key, "q=%25")[:2] == ([spoken], 1)


@pytest.mark.parametrize("count, expected", [(0, 0), (3, 3)])
def test_health_counts_a_small_table_exactly(client, sessions, count, expected):
    user_id, _ = create_user(sessions, Tier.PRO)
    make_jobs(sessions, user_id, [f"m{n}.wav" for n in range(count)])
    assert client.get("/health").json()["jobs_count"] == expected


def test_health_past_the_exact_count_gives_postgresqls_estimate(client, sessions, stack, monkeypatch):
    monkeypatch.setattr(jobs_repository, "EXACT_JOBS_COUNT", 2)
    user_id, _ = create_user(sessions, Tier.PRO)
    make_jobs(sessions, user_id, [f"m{n}.wav" for n in range(5)])
    if stack == "real":
        with session_scope(sessions) as session:
            session.connection().exec_driver_sql("ANALYZE jobs")
    make_jobs(sessions, user_id, ["late.wav"])  # on the same heap page: not in the estimate yet
    # PostgreSQL: rows per page at the last ANALYZE times the pages, never a scan of every row.
    # SQLite, the embedded default, counts every job.
    assert client.get("/health").json()["jobs_count"] == (5 if stack == "real" else 6)
