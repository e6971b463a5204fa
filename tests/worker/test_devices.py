"""worker.backends.devices.plan_engine: every device, compute type and batch size choice, no GPU needed."""

from typing import Any

import pytest

import worker.context
from core.config import Settings
from worker.backends.devices import DeviceUnavailable, EnginePlan, cuda_device_count, plan_engine
from worker.context import engine_plan


def plan(**overrides: Any) -> EnginePlan:
    options: dict[str, Any] = {
        "device": "auto",
        "device_index": "0",
        "compute_type": "auto",
        "threads": 1,
        "batch_size": 0,
        "cuda_devices": 0,
    }
    return plan_engine(**{**options, **overrides})


def test_auto_without_a_gpu_runs_int8_on_the_cpu_in_batches_of_four() -> None:
    assert plan(threads=3) == EnginePlan("cpu", (0,), "int8", 3, 2)


def test_auto_with_a_gpu_runs_float16_on_cuda_in_batches_of_sixteen() -> None:
    assert plan(cuda_devices=1) == EnginePlan("cuda", (0,), "float16", 1, 16)


def test_cpu_is_kept_when_asked_for_even_with_a_gpu() -> None:
    assert plan(device="cpu", cuda_devices=2) == EnginePlan("cpu", (0,), "int8", 1, 2)


def test_cuda_asked_for_with_a_gpu_is_cuda() -> None:
    assert plan(device="cuda", cuda_devices=1).device == "cuda"


def test_each_gpu_listed_gets_a_replica_and_adds_a_default_batch() -> None:
    engine = plan(device="cuda", device_index="0, 1", cuda_devices=2)

    assert (engine.device_index, engine.batch_size) == ((0, 1), 32)


def test_an_empty_index_list_means_the_first_device() -> None:
    assert plan(device_index=" ").device_index == (0,)


def test_explicit_compute_type_and_batch_size_are_kept_on_either_device() -> None:
    assert plan(compute_type="float32", batch_size=2) == EnginePlan("cpu", (0,), "float32", 1, 2)
    on_gpu = plan(compute_type="int8_float16", batch_size=7, cuda_devices=1)
    assert (on_gpu.compute_type, on_gpu.batch_size) == ("int8_float16", 7)


def test_a_batch_size_of_one_turns_batching_off() -> None:
    assert plan(batch_size=1).batch_size == 1


def test_the_cpu_ignores_gpu_indexes_it_cannot_check() -> None:
    # Indexes only name GPUs; on the CPU there is nothing to check them against.
    assert plan(device="cpu", device_index="3").device_index == (3,)


def test_describe_is_what_health_shows() -> None:
    assert plan(cuda_devices=1).describe() == {
        "device": "cuda",
        "device_index": [0],
        "compute_type": "float16",
        "threads": 1,
        "batch_size": 16,
    }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"device": "cuda", "cuda_devices": 0}, "VERBATIM_WHISPER_DEVICE=cuda, but CTranslate2 sees no CUDA"),
        ({"device": "tpu"}, "unknown device 'tpu': use auto, cpu or cuda"),
        ({"device": "tpu", "cuda_devices": 1}, "unknown device 'tpu'"),
        ({"device_index": "gpu0"}, "VERBATIM_WHISPER_DEVICE_INDEX must list integers, got 'gpu0'"),
        (
            {"device": "cuda", "device_index": "1", "cuda_devices": 1},
            r"CUDA device 1 does not exist \(1 visible\)",
        ),
        ({"device_index": "0,2", "cuda_devices": 2}, r"CUDA device 2 does not exist \(2 visible\)"),
        ({"device_index": "-1", "cuda_devices": 1}, "CUDA device -1 does not exist"),
    ],
)
def test_settings_the_machine_cannot_meet_are_refused_with_the_reason(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(DeviceUnavailable, match=message):
        plan(**overrides)


# --- from the settings ------------------------------------------------------------------------


def test_the_workers_plan_follows_its_settings_and_the_gpus_it_sees(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(worker.context, "cuda_device_count", lambda: 2)
    settings = Settings(data_dir=tmp_path, whisper_device_index="1", whisper_batch_size=8, whisper_threads=2)

    assert engine_plan(settings) == EnginePlan("cuda", (1,), "float16", 2, 8)


def test_a_cpu_worker_never_asks_ctranslate2_for_gpus(monkeypatch, tmp_path) -> None:
    def probe() -> int:
        raise AssertionError("a CPU worker must not touch CUDA")

    monkeypatch.setattr(worker.context, "cuda_device_count", probe)

    assert engine_plan(Settings(data_dir=tmp_path, whisper_device="cpu")).device == "cpu"


def test_a_machine_whose_cuda_runtime_fails_counts_no_gpus(monkeypatch) -> None:
    import ctranslate2

    def broken() -> int:
        raise RuntimeError("CUDA driver version is insufficient")

    monkeypatch.setattr(ctranslate2, "get_cuda_device_count", broken)

    assert cuda_device_count() == 0
