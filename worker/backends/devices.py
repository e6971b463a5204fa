"""Which device, compute type, threads and batch size a worker's local model runs with.

`auto` picks CUDA when CTranslate2 sees a GPU and the CPU otherwise; compute type `auto` is int8 on
the CPU (fastest there, and what the bundled model is stored as) and float16 on CUDA. A pure
function of the settings and the GPU count, so that every choice is unit-tested without a GPU.
"""

from dataclasses import dataclass
from typing import Literal

Device = Literal["cpu", "cuda"]

CPU_COMPUTE_TYPE = "int8"
CUDA_COMPUTE_TYPE = "float16"
# A GPU is kept busy by large batches (chunks of several jobs). A CPU core gains little from them
# (measured here, per chunk: 1 → 2 is 13 % faster, 2 → 4 another 7 %), while a batch is one model call
# a newly queued chunk waits for, and each row costs ~65 MB of attention buffers: 2 on the CPU.
CPU_BATCH_SIZE = 2
CUDA_BATCH_SIZE = 16


class DeviceUnavailable(Exception):
    """The settings ask for a device this machine does not have."""


@dataclass(frozen=True)
class EnginePlan:
    device: Device
    device_index: tuple[int, ...]
    compute_type: str
    threads: int
    batch_size: int

    def describe(self) -> dict[str, object]:
        return {
            "device": self.device,
            "device_index": list(self.device_index),
            "compute_type": self.compute_type,
            "threads": self.threads,
            "batch_size": self.batch_size,
        }


def plan_engine(
    *,
    device: str,
    device_index: str,
    compute_type: str,
    threads: int,
    batch_size: int,
    cuda_devices: int,
) -> EnginePlan:
    """Resolve the `VERBATIM_WHISPER_*` settings against the GPUs CTranslate2 sees.

    `batch_size` 0 and `compute_type` "auto" mean the device's default. `device_index` is a comma
    list ("0" or "0,1": one model replica per GPU listed).
    """
    chosen = _device(device, cuda_devices)
    indexes = _indexes(device_index, chosen, cuda_devices)
    if compute_type == "auto":
        compute_type = CUDA_COMPUTE_TYPE if chosen == "cuda" else CPU_COMPUTE_TYPE
    if batch_size == 0:
        batch_size = CUDA_BATCH_SIZE * len(indexes) if chosen == "cuda" else CPU_BATCH_SIZE
    return EnginePlan(chosen, indexes, compute_type, threads, batch_size)


def _device(device: str, cuda_devices: int) -> Device:
    if device == "auto":
        return "cuda" if cuda_devices > 0 else "cpu"
    if device == "cuda" and cuda_devices == 0:
        raise DeviceUnavailable("VERBATIM_WHISPER_DEVICE=cuda, but CTranslate2 sees no CUDA device")
    if device not in ("cpu", "cuda"):
        raise DeviceUnavailable(f"unknown device {device!r}: use auto, cpu or cuda")
    return "cuda" if device == "cuda" else "cpu"


def _indexes(device_index: str, device: Device, cuda_devices: int) -> tuple[int, ...]:
    try:
        indexes = tuple(int(part) for part in device_index.split(",") if part.strip())
    except ValueError as exc:
        raise DeviceUnavailable(
            f"VERBATIM_WHISPER_DEVICE_INDEX must list integers, got {device_index!r}"
        ) from exc
    indexes = indexes or (0,)
    if device == "cuda":
        missing = [i for i in indexes if not 0 <= i < cuda_devices]
        if missing:
            raise DeviceUnavailable(f"CUDA device {missing[0]} does not exist ({cuda_devices} visible)")
    return indexes


def cuda_device_count() -> int:
    import ctranslate2

    try:
        return int(ctranslate2.get_cuda_device_count())
    except RuntimeError:
        return 0
