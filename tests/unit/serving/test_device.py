"""Per-process device placement and thread counts (pure, runs on CPU)."""

from __future__ import annotations

import pytest

from textlstm.errors import ConfigError
from textlstm.serving.device import assign_device, cpu_threads, default_processes, parse_gpus


def test_round_robin_over_allowed_gpus_by_process_index() -> None:
    got = [assign_device("cuda", process_index=i, gpus=[0, 2], cuda_count=4) for i in range(5)]
    assert got == ["cuda:0", "cuda:2", "cuda:0", "cuda:2", "cuda:0"]


def test_every_visible_gpu_when_no_list_and_auto_means_cuda_when_present() -> None:
    got = [assign_device("auto", process_index=i, gpus=[], cuda_count=3) for i in range(4)]
    assert got == ["cuda:0", "cuda:1", "cuda:2", "cuda:0"]


def test_pinned_gpu_and_cpu() -> None:
    assert assign_device("cuda:1", process_index=5, gpus=[], cuda_count=2) == "cuda:1"
    assert assign_device("cpu", process_index=3, gpus=[0], cuda_count=8) == "cpu"


def test_auto_without_cuda_is_cpu_but_explicit_cuda_fails() -> None:
    assert assign_device("auto", process_index=0, gpus=[], cuda_count=0) == "cpu"
    with pytest.raises(ConfigError, match="CUDA is not available"):
        assign_device("cuda", process_index=0, gpus=[], cuda_count=0)


def test_invalid_specs_and_missing_gpus_are_refused() -> None:
    with pytest.raises(ConfigError, match="invalid device"):
        assign_device("gpu", process_index=0, gpus=[], cuda_count=1)
    with pytest.raises(ConfigError, match="only 2 GPU"):
        assign_device("cuda", process_index=0, gpus=[0, 3], cuda_count=2)
    with pytest.raises(ConfigError, match="repeated"):
        parse_gpus("0,0")
    with pytest.raises(ConfigError, match="comma-separated"):
        parse_gpus("0,x")
    assert parse_gpus(" 0, 1 ,") == [0, 1] and parse_gpus("") == []


def test_processes_times_threads_never_oversubscribe_cores() -> None:
    assert default_processes("auto", gpus=[], cuda_count=0, cores=2) == 2
    assert default_processes("auto", gpus=[1, 3], cuda_count=4, cores=64) == 2
    assert default_processes("cuda:1", gpus=[], cuda_count=4, cores=64) == 1
    assert cpu_threads(cores=2, processes=2) == 1  # the measured default: 2 x 1
    assert cpu_threads(cores=8, processes=2) == 4
    assert cpu_threads(cores=2, processes=4) == 1
    assert cpu_threads(cores=2, processes=2, requested=3) == 3
