"""How long GradCAM takes: seconds per (3,16,112,112) clip on CPU, next to a plain forward pass,
per target layer, plus mapping the maps back onto a 48-frame 480x640 clip for the GUI overlay.

Run: .venv/bin/python benchmarks/bench_gradcam.py [--repeats N] [--threads N]
"""

import argparse
import warnings

import torch
from _timing import median_seconds

from echoquality_core.scoring.gradcam import gradcam
from echoquality_core.scoring.heatmap import clip_frame_map, maps_to_clip
from echoquality_core.model.network import build_model
from echoquality_core.data.preprocess import PreprocessParams


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random weights: timing only
        model = build_model().eval()
    video = torch.randn(3, 16, 112, 112)

    def forward():
        with torch.inference_mode():
            model(video.unsqueeze(0))

    print(f"  forward only          {median_seconds(forward, args.repeats):6.2f} s/clip")
    for layer in ("layer4", "layer3", "layer2"):
        seconds = median_seconds(lambda layer=layer: gradcam(model, video, layer), args.repeats)
        print(f"  gradcam {layer:8s}      {seconds:6.2f} s/clip")

    maps = gradcam(model, video, "layer4")
    params, shape, n_frames = PreprocessParams(), (480, 640), 48
    one = median_seconds(lambda: clip_frame_map(maps, 10, shape, n_frames, params), 20)
    whole = median_seconds(lambda: maps_to_clip(maps, shape, n_frames, params), args.repeats)
    mib = maps_to_clip(maps, shape, n_frames, params).nbytes / 2**20
    print(f"  clip_frame_map 480x640 {1000 * one:6.2f} ms/frame")
    print(f"  maps_to_clip 48x480x640 {whole:5.2f} s ({mib:.0f} MiB)")


if __name__ == "__main__":
    main()
