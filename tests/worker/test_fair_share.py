"""Chunks of jobs in one queue interleave; between queues, priority stays strict."""

import pytest

from core.enums import JobStatus, Priority, Tier
from tests.conftest import create_user, load_job, speech, submit_file

LONG = speech("mfa_spontaneous/cold_corpus.wav")  # 26 s: seven 4-second chunks
SHORT = speech("librispeech/1089-134691-0000.flac")  # 2 s: one chunk


@pytest.fixture
def small_chunks(worker_ctx):
    worker_ctx.settings = worker_ctx.settings.model_copy(update={"chunk_seconds": 4.0, "chunk_lanes": 2})
    worker_ctx.queues._settings = worker_ctx.settings
    return worker_ctx


def test_a_short_job_behind_a_long_one_of_the_same_tier_finishes_first(small_chunks, sessions, run_worker):
    alice, _ = create_user(sessions, Tier.PRO)
    bob, _ = create_user(sessions, Tier.PRO)
    long_job = submit_file(small_chunks, alice, LONG)
    short_job = submit_file(small_chunks, bob, SHORT)
    run_worker()
    long_row, long_chunks = load_job(small_chunks, long_job)
    short_row, _ = load_job(small_chunks, short_job)
    assert long_row.status == short_row.status == JobStatus.COMPLETED
    assert len(long_chunks) >= 6
    assert short_row.completed_at < long_row.completed_at
    # Bob waited for a few of Alice's chunks (two lanes ahead of him, twice), not for all of them.
    before_bob = [c for c in long_chunks if c.completed_at < short_row.completed_at]
    assert len(before_bob) <= 4, [c.chunk_index for c in before_bob]


def test_without_lanes_the_short_job_would_wait_for_the_whole_long_one(small_chunks, sessions, run_worker):
    """The control: with as many lanes as chunks, every chunk is queued at once, as before."""
    small_chunks.settings = small_chunks.settings.model_copy(update={"chunk_lanes": 100})
    small_chunks.queues._settings = small_chunks.settings
    alice, _ = create_user(sessions, Tier.PRO)
    bob, _ = create_user(sessions, Tier.PRO)
    long_job = submit_file(small_chunks, alice, LONG)
    short_job = submit_file(small_chunks, bob, SHORT)
    run_worker()
    _, long_chunks = load_job(small_chunks, long_job)
    short_row, _ = load_job(small_chunks, short_job)
    assert all(c.completed_at < short_row.completed_at for c in long_chunks)


def test_every_high_chunk_runs_before_any_normal_chunk(small_chunks, sessions, run_worker):
    user, _ = create_user(sessions, Tier.ENTERPRISE)
    normal = submit_file(small_chunks, user, LONG, Priority.NORMAL)
    high = submit_file(small_chunks, user, LONG, Priority.HIGH)
    run_worker()
    _, normal_chunks = load_job(small_chunks, normal)
    high_row, high_chunks = load_job(small_chunks, high)
    assert high_row.status == JobStatus.COMPLETED
    assert max(c.completed_at for c in high_chunks) <= min(c.started_at for c in normal_chunks)
