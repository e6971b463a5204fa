"""scripts/bench_api on a tiny history: seeded in PostgreSQL, served by a real API process."""

import pytest
from sqlalchemy import create_engine

from scripts import bench_api
from tests.conftest import POSTGRES_URL, require_service


@pytest.mark.integration
def test_every_route_answers_on_a_seeded_history_and_the_table_shows_it():
    require_service("PostgreSQL", lambda: create_engine(POSTGRES_URL).connect().close())
    results = bench_api.run(POSTGRES_URL, jobs=300, connections=2, seconds=0.5, processes=2, warmup=0.2)

    assert [r.route.split("?q=")[0] for r in results] == [
        "GET /v1/jobs/{id}",
        "GET /v1/jobs?limit=20",
        "GET /v1/jobs",
        "GET /health",
    ]
    for result in results:
        assert result.errors == 0 and result.requests > 0, result
    shown = bench_api.table(results, jobs=300, connections=2, seconds=0.5, processes=2)
    assert "300 jobs of one user in PostgreSQL, 2 API processes" in shown
    assert all(f"| {r.route:<32} |" in shown for r in results)


def test_the_search_word_is_in_about_one_transcript_in_a_hundred():
    words = bench_api.vocabulary()
    assert len(set(words)) == bench_api.VOCABULARY
    target = words[bench_api.SEARCH_WORD_INDEX]
    assert sum(target in w for w in words) == 1  # no other word contains it
