"""The fleet's periodic work against concurrent writers: retention deletes only jobs still finished
when it deletes them, and chunk audio that no job refers to any more is swept, never a live job's."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from core.db import session_scope
from core.enums import JobStatus, Priority, Tier
from repositories.jobs import JobRepository
from storage.keys import chunk_key, chunks_prefix, job_prefix, source_key
from tests.conftest import create_user, speech, submit_file
from worker import maintenance, tasks


@pytest.fixture
def user_id(sessions):
    return create_user(sessions, Tier.PRO)[0]


@pytest.fixture
def ctx(worker_ctx):
    """jfk.flac (11 s) in several chunks."""
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0})
    return worker_ctx


def make_job(ctx, user_id, status, *, days_old=0, job_id=None):
    """A job in `status` created `days_old` days ago, with its source in storage."""
    job_id = job_id or str(uuid.uuid4())
    ctx.storage.put_bytes(source_key(job_id, ".flac"), b"audio")
    with session_scope(ctx.sessions) as session:
        JobRepository(session).create(
            id=job_id,
            user_id=user_id,
            priority=Priority.NORMAL,
            status=status,
            filename="meeting.flac",
            size_bytes=5,
            source_key=source_key(job_id, ".flac"),
            created_at=datetime.now(UTC) - timedelta(days=days_old),
        )
    return job_id


def stored(ctx, job_id):
    folder = ctx.settings.storage_dir / job_prefix(job_id)
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def status(ctx, job_id):
    with session_scope(ctx.sessions) as session:
        return JobRepository(session).status_of(job_id)


def test_retention_keeps_a_job_retried_after_it_was_found_old_and_failed(ctx, user_id):
    days = ctx.settings.retention_days + 1
    retried = make_job(ctx, user_id, JobStatus.FAILED, days_old=days)
    finished = make_job(ctx, user_id, JobStatus.COMPLETED, days_old=days)
    engine = ctx.sessions.kw["bind"]
    pending = [retried]

    def the_owner_retries_it_first(conn, cursor, statement, parameters, context, executemany):
        if pending and statement.lstrip().upper().startswith("DELETE FROM JOBS"):
            with session_scope(ctx.sessions) as session:
                jobs = JobRepository(session)
                assert jobs.reopen(jobs.get(pending.pop()), planned=False)

    event.listen(engine, "before_cursor_execute", the_owner_retries_it_first)
    try:
        assert maintenance.purge(ctx, ctx.settings.retention_days) == 1
    finally:
        event.remove(engine, "before_cursor_execute", the_owner_retries_it_first)

    assert not pending  # the retry did come between
    assert status(ctx, retried) == JobStatus.PENDING
    assert stored(ctx, retried) == ["source.flac"]  # and its audio is still there to prepare
    assert status(ctx, finished) is None and stored(ctx, finished) == []


def test_chunk_audio_of_a_job_deleted_while_prepare_cut_it_is_swept(ctx, sessions, user_id, monkeypatch):
    live = submit_file(ctx, user_id, speech("jfk/jfk.flac"))
    assert tasks.prepare(live) == "prepared"
    live_files = stored(ctx, live)
    assert len([f for f in live_files if f.startswith("chunks/")]) >= 2
    # An upload on its way in: its job's row is not committed yet.
    arriving = str(uuid.uuid4())
    ctx.storage.put_bytes(source_key(arriving, ".flac"), b"audio")
    doomed = submit_file(ctx, user_id, speech("jfk/jfk.flac"))
    put_bytes = ctx.storage.put_bytes

    def deleted_before_its_first_chunk_lands(key, data):
        if key.startswith(chunks_prefix(doomed) + "/") and status(ctx, doomed) is not None:
            # DELETE /v1/jobs/{id}: the row goes, then (after the commit) the job's files.
            with session_scope(sessions) as session:
                jobs = JobRepository(session)
                jobs.delete(jobs.get(doomed))
            ctx.storage.delete_prefix(job_prefix(doomed))
        put_bytes(key, data)

    monkeypatch.setattr(ctx.storage, "put_bytes", deleted_before_its_first_chunk_lands)
    with pytest.raises(IntegrityError):  # its chunk's row has no job to belong to
        tasks.prepare(doomed)
    assert stored(ctx, doomed) == ["chunks/00000.flac"]  # written after the job's files were removed

    maintenance.apply_retention()

    assert stored(ctx, doomed) == []
    assert stored(ctx, live) == live_files
    assert stored(ctx, arriving) == ["source.flac"]


def test_the_chunk_sweep_looks_at_a_few_folders_a_run_and_goes_on_from_there(ctx, user_id, monkeypatch):
    monkeypatch.setattr(maintenance, "CHUNK_SWEEP_BATCH", 2)
    # Folders are listed in key order: the live jobs come first, the orphans after them.
    live = [make_job(ctx, user_id, JobStatus.PROCESSING, job_id=f"00000000-live-{i}") for i in range(2)]
    orphans = [f"ffffffff-gone-{i}" for i in range(3)]
    for job_id in live + orphans:
        ctx.storage.put_bytes(chunk_key(job_id, 0), b"chunk")

    assert [maintenance.sweep_orphan_chunks(ctx) for _ in range(4)] == [0, 2, 1, 0]

    assert all(stored(ctx, job_id) == [] for job_id in orphans)
    assert all(stored(ctx, job_id) == ["chunks/00000.flac", "source.flac"] for job_id in live)
