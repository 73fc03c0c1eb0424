import pytest

from steelseg import hardware


@pytest.mark.parametrize(
    ("precision", "device", "bf16", "expected"),
    [
        ("auto", "cpu", True, "bf16-mixed"),  # this machine: AVX512-BF16
        ("auto", "cpu", False, "32-true"),
        ("auto", "cuda", False, "16-mixed"),
        ("auto", "mps", True, "32-true"),
        ("16-mixed", "cpu", False, "bf16-mixed"),  # fp16 autocast needs a GPU
        ("32-true", "cpu", True, "32-true"),  # the exact path stays one setting away
        ("bf16-mixed", "cuda", False, "bf16-mixed"),
    ],
)
def test_precision_auto_picks_what_the_hardware_computes_fast(monkeypatch, precision, device, bf16, expected):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: bf16)
    assert hardware.resolve_precision(precision, device) == expected


def test_unknown_precision_and_missing_gpu_are_clear_errors(monkeypatch):
    with pytest.raises(hardware.DeviceError, match="unknown precision 'fp8'"):
        hardware.resolve_precision("fp8", "cpu")
    monkeypatch.setattr(hardware, "cuda_available", lambda: False)
    with pytest.raises(hardware.DeviceError, match="no CUDA GPU"):
        hardware.resolve_device("cuda:1")
    assert hardware.resolve_device("auto") == "cpu"
    with pytest.raises(hardware.DeviceError, match="expected auto, cpu, cuda or cuda:N"):
        hardware.resolve_device("tpu")


def test_cpu_flags_are_read_from_proc_cpuinfo(monkeypatch, tmp_path):
    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse avx512f avx512_bf16\n")
    real_path = hardware.Path
    monkeypatch.setattr(hardware, "Path", lambda p: fake if p == "/proc/cpuinfo" else real_path(p))
    hardware.cpu_has_bf16.cache_clear()
    try:
        assert hardware.cpu_has_bf16() is True
        fake.write_text("flags\t\t: fpu sse avx512f\n")
        hardware.cpu_has_bf16.cache_clear()
        assert hardware.cpu_has_bf16() is False
    finally:
        hardware.cpu_has_bf16.cache_clear()
