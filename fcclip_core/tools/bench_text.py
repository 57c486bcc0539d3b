"""Time vocabulary encoding with the ConvNeXt-L CLIP text tower (random weights, nothing downloaded).

The text tower of ``convnext_large_d_320`` (16 layers, width 768, 12 heads) is built alone from
open_clip's model config; the cost of encoding does not depend on the weight values. Timed:

- the 10-class fixture vocabulary (308 prompts) on an empty cache, then again (all cached);
- the 133-class COCO-panoptic vocabulary (3,556 prompts) on an empty cache, then again;
- as a baseline measured at the same time, the plain full-length ``forward`` (what the official
  ``encode_text`` costs) on a few prompts, scaled to 308 prompts.

    python -m fcclip_core.tools.bench_text [--threads 2] [--tokens-per-pass 512] [--baseline-prompts 28] [--no-coco]

CPU seconds are printed next to wall seconds: on a busy machine they show the work done. The official code needed ~45-55 s of its warm-up for the 308 prompts on the 2-core reference
machine (shared/reference/large/timing.json).
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Callable, TypeVar

import torch

from fcclip_core.text_embeddings import TextEmbeddingCache
from fcclip_core.vocabulary import Vocabulary, coco_panoptic_vocabulary, parse_vocabulary

MODEL_NAME = "convnext_large_d_320"
# The fixture vocabulary of shared/reference/tiny/vocab.json (official synonym format).
TINY_CLASSES = (
    "cat,cats,kitty", "person,people,human", "dog,dogs,puppy", "sky,clouds", "grass,lawn",
    "red panda,lesser panda", "teapot,kettle", "zebra crossing,crosswalk", "laptop computer, laptop", "coral reef",
)
T = TypeVar("T")


def build_text_tower(model_name: str = MODEL_NAME, seed: int = 0) -> torch.nn.Module:
    """The open_clip text tower of ``model_name`` alone, randomly initialised."""
    import open_clip
    from open_clip.model import _build_text_tower

    config = open_clip.get_model_config(model_name)
    if config is None:
        raise SystemExit(f"open_clip has no model config named {model_name}")
    torch.manual_seed(seed)
    tower = _build_text_tower(config["embed_dim"], config["text_cfg"], config.get("quick_gelu", False))
    return tower.eval().requires_grad_(False)


def timed(fn: Callable[[], T]) -> tuple[T, float, float]:
    """(result, wall seconds, process CPU seconds)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = fn()
    return result, time.perf_counter() - start, time.process_time() - cpu


def shown(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds >= 1 else f"{seconds * 1000:.1f} ms"


def report(cache: TextEmbeddingCache, label: str, vocabulary: Vocabulary) -> float:
    before = cache.stats
    _, seconds, cpu = timed(lambda: cache.embed(vocabulary))
    after = cache.stats
    prompts = after.prompts_encoded - before.prompts_encoded
    work = "nothing encoded" if not prompts else (
        f"{prompts} prompts encoded: {after.token_positions - before.token_positions} token positions "
        f"in {after.forward_passes - before.forward_passes} passes")
    print(f"{label:<44} {shown(seconds):>10} (cpu {shown(cpu)})   ({work})", flush=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (0: leave as is)")
    parser.add_argument("--tokens-per-pass", type=int, default=512)
    parser.add_argument("--baseline-prompts", type=int, default=28,
                        help="prompts for the full-length baseline (0: skip)")
    parser.add_argument("--model", default=MODEL_NAME)
    parser.add_argument("--no-coco", action="store_true", help="skip the 133-class vocabulary")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

    tower, seconds, _ = timed(lambda: build_text_tower(args.model))
    print(f"built the {args.model} text tower in {seconds:.1f} s", flush=True)
    cache = TextEmbeddingCache(tower, tokens_per_pass=args.tokens_per_pass)
    cache.encode_prompts(["warm up"])  # first-call set-up costs, not part of any vocabulary

    tiny = parse_vocabulary(list(TINY_CLASSES))
    coco = coco_panoptic_vocabulary()
    tiny_new = report(cache, f"10 classes, {len(tiny.prompts())} prompts, new", tiny)
    report(cache, "10 classes, cached", tiny)
    if not args.no_coco:
        cache.clear()  # the 10-class vocabulary shares names with COCO: start empty
        coco_new = report(cache, f"133 COCO classes, {len(coco.prompts())} prompts, new", coco)
        report(cache, "133 COCO classes, cached", coco)
        print(f"COCO / 10-class cost: {coco_new / tiny_new:.1f}x")

    if args.baseline_prompts > 0:
        prompts = tiny.prompts()[: args.baseline_prompts]
        tokens = cache.encoder.tokenize(prompts)
        with torch.inference_mode():
            _, seconds, cpu = timed(lambda: tower(tokens))
        scaled = seconds * len(tiny.prompts()) / len(prompts)
        print(f"full-length baseline: {seconds:.2f} s (cpu {cpu:.2f} s) for {len(prompts)} prompts -> "
              f"~{scaled:.1f} s for {len(tiny.prompts())}; speed-up {scaled / tiny_new:.1f}x")


if __name__ == "__main__":
    main()
