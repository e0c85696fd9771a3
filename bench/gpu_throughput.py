"""GPU training throughput: does the real input pipeline keep the GPU busy?

Usage: ``python -m bench.gpu_throughput [--models ...] [--batch-sizes 32 64 128] [--steps 50] [--allow-cpu]``.

For every model at its usual image size (224 px for the ImageNet backbones and the U-Net, 299 for
InceptionV3, 128 for the small models), float32 and mixed precision, and each batch size, it times one epoch
of ``--steps`` training steps after a warm-up epoch, fed two ways through the same ``model.fit``:

- ``pipeline``: the trial's own input pipeline (``runner.data.pipeline.make_epochs`` over the decoded-image
  cache: shuffle, gather, cast), as ``run_trial`` trains;
- ``memory``: one batch already built, repeated: no gather, no cast, the ceiling the GPU alone sets.

GPU utilisation is sampled with ``nvidia-smi`` every 200 ms during the timed epochs. The headline
``gpu_pipeline_vs_memory_ratio`` is the lowest pipeline / memory ratio over all configurations (target >=
0.9: the GPU never waits on data). On a machine without a GPU it says so and exits 0, recording the figures
as not measured; ``--allow-cpu`` runs the same measurement on the CPU (a smoke run: its figures are not
recorded).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass

import numpy as np

from bench._results import Section, figure

#: model -> (task it trains for, image size)
MODELS = {
    "baseline": ("pneumonia", 128), "small_cnn": ("pneumonia", 128), "vgg16": ("pneumonia", 224),
    "vgg19": ("pneumonia", 224), "inception_v3": ("pneumonia", 299), "densenet121": ("pneumonia", 224),
    "conv_autoencoder": ("anomaly", 128), "vgg16_unet": ("pneumothorax", 224),
}
PRECISIONS = {"float32": "off", "mixed": "on"}
TARGET = 0.9
#: One-line labels of the figures in BENCHMARKS.md's target table.
LABELS = {"gpu_pipeline_vs_memory_ratio": "lowest pipeline / in-memory images/s over all configurations"}


class UtilisationSampler:
    """``nvidia-smi`` in the background: (time, GPU utilisation %) every 200 ms."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._process = subprocess.Popen(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                          "-lms", "200"], stdout=subprocess.PIPE, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self._process.stdout:
            if line.strip().split(",")[0].strip().isdigit():
                self.samples.append((time.perf_counter(), float(line.split(",")[0])))

    def mean(self, start: float, end: float) -> float | None:
        inside = [value for at, value in self.samples if start <= at <= end]
        return float(np.mean(inside)) if inside else None

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait()


@dataclass(frozen=True)
class Measurement:
    model: str
    size: int
    precision: str
    batch: int
    source: str
    images_per_s: float
    utilisation: float | None


class EpochClock:
    """The start and end of each epoch (``model.fit`` callback), to time the epoch after the warm-up."""

    def __init__(self) -> None:
        import keras

        class _Callback(keras.callbacks.Callback):
            def on_epoch_begin(inner, epoch, logs=None):
                self.starts.append(time.perf_counter())

            def on_epoch_end(inner, epoch, logs=None):
                self.ends.append(time.perf_counter())

        self.starts: list[float] = []
        self.ends: list[float] = []
        self.callback = _Callback()


def measure_one(model: str, size: int, precision: str, batch: int, steps: int, images: int,
                sampler: UtilisationSampler | None) -> list[Measurement]:
    import keras
    import tensorflow as tf

    from runner.config import make_config
    from runner.data.pipeline import make_epochs
    from runner.models import MODELS as REGISTERED
    from runner.tasks import TASKS
    from runner.trial import build_model, load_splits, setup_backend

    task_name = MODELS[model][0]
    untrained = {"weights": "none"} if "weights" in REGISTERED.get(model).defaults() else {}  # speed only
    config = make_config({"task": task_name, "model": model, "image_size": size, "batch_size": batch,
                          "mixed_precision": PRECISIONS[precision], "data": {"n": images}, **untrained})
    task = TASKS.get(task_name)
    device = setup_backend(config)
    _, splits = load_splits(config, task, lambda _: None)
    pixels, targets, target = task.training_arrays(splits["train"], config.task_params)
    pipeline = make_epochs(pixels, targets, target=target, batch_size=batch)
    one_batch = next(iter(pipeline))
    sources = {"pipeline": pipeline, "memory": tf.data.Dataset.from_tensors(one_batch).repeat()}
    found = []
    for source, dataset in sources.items():
        keras.backend.clear_session()
        model_object = build_model(config, task, jit="auto" if device.startswith("GPU") else False)
        clock = EpochClock()
        model_object.fit(dataset, epochs=2, steps_per_epoch=steps, callbacks=[clock.callback], shuffle=False,
                         verbose=0)
        start, end = clock.starts[-1], clock.ends[-1]
        found.append(Measurement(model, size, precision, batch, source, steps * batch / (end - start),
                                 sampler.mean(start, end) if sampler else None))
    return found


def gpu_name() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    listing = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True)
    return listing.stdout.strip().splitlines()[0] if listing.returncode == 0 and listing.stdout.strip() else None


def _pairs(found: list[Measurement]) -> dict[tuple, dict[str, Measurement]]:
    """``{(model, size, precision, batch): {"pipeline": ..., "memory": ...}}``: the two inputs of one
    configuration side by side."""
    by_key: dict[tuple, dict[str, Measurement]] = {}
    for m in found:
        by_key.setdefault((m.model, m.size, m.precision, m.batch), {})[m.source] = m
    return by_key


def _table(found: list[Measurement]) -> str:
    lines = ["| model | px | precision | batch | pipeline img/s | memory img/s | ratio | GPU util % (pipeline) |",
             "|---|---|---|---|---|---|---|---|"]
    for (model, size, precision, batch), pair in _pairs(found).items():
        util = pair["pipeline"].utilisation
        lines.append(f"| {model} | {size} | {precision} | {batch} | {pair['pipeline'].images_per_s:,.0f} | "
                     f"{pair['memory'].images_per_s:,.0f} | "
                     f"{pair['pipeline'].images_per_s / pair['memory'].images_per_s:.2f} | "
                     f"{'-' if util is None else f'{util:.0f}'} |")
    return "\n".join(lines)


def _ratios(found: list[Measurement]) -> list[float]:
    return [pair["pipeline"].images_per_s / pair["memory"].images_per_s for pair in _pairs(found).values()]


def not_measured(reason: str, command: str) -> Section:
    figures = {"gpu_pipeline_vs_memory_ratio": figure(None, TARGET, "x", "higher"),
               "gpu_mean_utilisation_pct": figure(None, None, "%", "higher")}
    return Section("GPU throughput", "bench/gpu_throughput.py", command, f"Not measured: {reason}.", figures,
                   LABELS)


def section(models: list[str], batches: list[int], steps: int, images: int, allow_cpu: bool = False,
            size: int | None = None) -> Section:
    import tensorflow as tf

    command = (f"python -m bench.gpu_throughput --models {' '.join(models)} --batch-sizes "
               f"{' '.join(map(str, batches))} --steps {steps}" + (f" --size {size}" if size else ""))
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus and not allow_cpu:
        print("no GPU visible to TensorFlow: GPU throughput not measured (run it on a GPU machine)")
        return not_measured("this machine has no GPU; run the command on one", command)
    name = gpu_name() if gpus else None
    sampler = UtilisationSampler() if name else None
    try:
        found = [m for model in models for precision in PRECISIONS for batch in batches
                 for m in measure_one(model, size or MODELS[model][1], precision, batch, steps, images, sampler)]
    finally:
        if sampler:
            sampler.stop()
    table = _table(found)
    if not gpus:
        section = not_measured("CPU smoke run (--allow-cpu); the figures need a GPU", command + " --allow-cpu")
        section.body = f"{section.body}\n\n{table}"
        return section
    utilisation = [m.utilisation for m in found if m.source == "pipeline" and m.utilisation is not None]
    figures = {"gpu_pipeline_vs_memory_ratio": figure(min(_ratios(found)), TARGET, "x", "higher"),
               "gpu_mean_utilisation_pct": figure(np.mean(utilisation) if utilisation else None, None, "%",
                                                  "higher")}
    body = (f"GPU: {name} (x{len(gpus)}); {steps} timed steps per configuration after a warm-up epoch; demo images "
            f"({images}) through the trial pipeline vs one pre-built batch.\n\n{table}")
    return Section("GPU throughput", "bench/gpu_throughput.py", command, body, figures,
                   LABELS)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=sorted(MODELS), default=list(MODELS))
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--images", type=int, default=512, help="demo images in the cache the pipeline reads")
    parser.add_argument("--size", type=int, help="one image size for every model (default: each model's own)")
    parser.add_argument("--allow-cpu", action="store_true", help="measure on the CPU when there is no GPU (smoke)")
    args = parser.parse_args(argv)
    result = section(args.models, args.batch_sizes, args.steps, args.images, args.allow_cpu, args.size)
    if result.figures["gpu_pipeline_vs_memory_ratio"]["value"] is None:
        print(result.markdown())  # nothing measured on a GPU: shown, never recorded over real figures
    else:
        result.report()


if __name__ == "__main__":
    main()
