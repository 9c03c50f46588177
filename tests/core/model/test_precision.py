"""Precision: bf16 autocast + channels_last_3d scores stay close to fp32, the fp32 setting wins,
the detection falls back to fp32 on a CPU without native bf16; a model file is read once
without a random initialisation and gives the same scores as before."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from echoquality_core.model import precision
from echoquality_core.model.checkpoint import forward_scores, load_scoring_model, score_arrays
from echoquality_core.model.network import build_model, load_model_file, load_weights, save_checkpoint
from echoquality_core.data.preprocess import PreprocessParams

PARAMS = PreprocessParams(n_frames=4, stride=1, size=32)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random initialisation, on purpose
        return build_model().eval()


@pytest.fixture(scope="module")
def clips():
    return torch.randn(3, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))


def test_bf16_channels_last_scores_match_fp32(net, clips, one_torch_thread):
    fp32 = np.asarray(forward_scores(net, clips, torch.device("cpu")))
    model = precision.prepare_model(net, "cpu", torch.bfloat16)
    try:
        assert next(model.parameters()).dim() == 5
        assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
        with torch.inference_mode(), precision.autocast("cpu", torch.bfloat16):
            logits = model(precision.prepare_input(clips, "cpu", torch.bfloat16))
        assert logits.dtype == torch.bfloat16
        bf16 = torch.sigmoid(logits.float()).reshape(-1).numpy()
    finally:
        net.to(memory_format=torch.contiguous_format)
    assert np.abs(bf16 - fp32).max() < 2e-2


def test_fp32_setting_and_cpu_detection(monkeypatch):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    expected = torch.bfloat16 if precision.cpu_has_native_bf16() else None
    assert precision.inference_dtype("cpu") is expected
    with precision.precision("fp32"):
        assert precision.inference_dtype("cpu") is None
    with pytest.raises(ValueError, match="precision must be one of"):
        precision.set_precision("fp8")


X86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                         reason="the fp32 memory-format rule is measured on x86 (oneDNN) only")


@X86
def test_fp32_on_the_cpu_runs_channels_last_with_the_same_scores(net, clips, one_torch_thread):
    """oneDNN is faster in channels_last_3d in fp32 too (bench_memory_format.py); the scores are
    those of the contiguous network."""
    with torch.inference_mode():
        contiguous = torch.sigmoid(net(clips)).reshape(-1).numpy()
    with precision.precision("fp32"):
        assert precision.channels_last("cpu")
        model = precision.prepare_model(net, "cpu")
        try:
            assert model.stem[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
            assert precision.prepare_input(clips, "cpu").is_contiguous(
                memory_format=torch.channels_last_3d)
            scores = np.asarray(forward_scores(model, clips, torch.device("cpu")))
        finally:
            net.to(memory_format=torch.contiguous_format)
    np.testing.assert_allclose(scores, contiguous, atol=1e-5)


@X86
def test_fp32_training_is_channels_last_only_with_avx512_kernels():
    """With ATen held to AVX2 kernels an fp32 training step is slower in channels_last_3d
    (bench_memory_format.py --avx2): training stays contiguous there, scoring does not, and a
    network scored first is made contiguous again for training."""
    code = ("import torch; from echoquality_core.model import precision as p; "
            "net = torch.nn.Conv3d(3, 4, 3); cl = torch.channels_last_3d; "
            "scored = p.prepare_model(net, 'cpu', None).weight.is_contiguous(memory_format=cl); "
            "trained = p.prepare_model(net, 'cpu', None, training=True).weight.is_contiguous(); "
            "print(torch.backends.cpu.get_cpu_capability(), p.channels_last('cpu', None), "
            "p.channels_last('cpu', None, training=True), "
            "p.channels_last('cpu', torch.bfloat16, training=True), scored, trained)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=os.environ | {"ATEN_CPU_CAPABILITY": "avx2"})
    assert done.stdout.split() == ["AVX2", "True", "False", "True", "True", "True"], done.stderr
    expected = torch.backends.cpu.get_cpu_capability() == "AVX512"
    assert precision.channels_last("cpu", None, training=True) is expected


def test_scoring_uses_the_chosen_precision(net, clips, one_torch_thread):
    with precision.precision("fp32"):
        fp32 = score_arrays(net, clips)
    auto = score_arrays(net, clips)  # bf16 where this CPU has it natively, else fp32 again
    tolerance = 2e-2 if precision.inference_dtype("cpu") is not None else 1e-6
    assert np.abs(auto - fp32).max() <= tolerance


def test_model_file_read_once_without_random_init(net, clips, tmp_path, one_torch_thread):
    path = save_checkpoint(net, tmp_path / "best.pt", threshold=0.4, preprocess=PARAMS)
    fast, info = load_model_file(path)
    assert info["threshold"] == 0.4
    assert not any(p.is_meta for p in fast.parameters())
    assert not any(b.is_meta for b in fast.buffers())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        slow = build_model()
    load_weights(slow, path)
    with precision.precision("fp32"):
        np.testing.assert_allclose(score_arrays(fast, clips), score_arrays(slow.eval(), clips),
                                   atol=1e-6)
    # EchoPrime's plain state dict without BatchNorm counters loads too
    plain = {k: v for k, v in net.state_dict().items() if "num_batches_tracked" not in k}
    torch.save(plain, tmp_path / "plain.pt")
    loaded, info = load_scoring_model(tmp_path / "plain.pt")
    assert info == {} and int(loaded.stem[1].num_batches_tracked) == 0


def test_batch_size_that_fits_after_a_cuda_out_of_memory_error():
    gib = 2**30
    message = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 16.00 GiB total capacity)"
    # batch 16 peaked at 14 GiB and wanted 2 GiB more on a 16 GiB card: 16 * 0.9 * 16 / 16 = 14
    assert precision.batch_that_fits(16, 14 * gib, 16 * gib, message) == 14
    assert precision.batch_that_fits(16, 60 * gib, 16 * gib, message) == 3
    assert precision.batch_that_fits(1, 60 * gib, 16 * gib) == 1
    assert precision.batch_that_fits(8, 1 * gib, 16 * gib) == 7  # always smaller than the failed
