"""fcclip-eval: measure FC-CLIP with the official protocol, or score predictions already on disk.

  fcclip-eval list
  fcclip-eval run --dataset ade20k_150 --root ~/datasets --weights fcclip_cocopan.pth -o out/ade
  fcclip-eval run --dataset custom --root my_frames --class-list classes.txt --vocabulary names.txt -o out/mine
  fcclip-eval score --format coco_panoptic --gt panoptic_val.json --gt-dir panoptic_val/ \
      --pred predictions.json --pred-dir predictions/

`run` uses the dataset's official test-time settings (input size, vocabulary; thresholds of the
model config), caches every image's predictions under --output and resumes an interrupted run;
--limit N scores the first N images only (then the report says it is not comparable with the
paper). The report (report.json and a printed table) puts the paper's number beside ours.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

SCORE_FORMATS = ("coco_panoptic", "semantic_png", "coco_instances")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcclip-eval", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the shipped benchmarks, their settings and the paper's numbers")

    run = commands.add_parser("run", help="run the model over a dataset and score it")
    run.add_argument("--dataset", required=True, help="a benchmark name (see `list`) or `custom`")
    run.add_argument("--root", type=Path, required=True,
                     help="dataset root: the folder holding coco/, ADEChallengeData2016/, ... (detectron2's "
                          "DETECTRON2_DATASETS), or a custom dataset folder")
    run.add_argument("-o", "--output", type=Path, required=True, help="folder for predictions and report (resumable)")
    run.add_argument("--class-list", help="custom data: class-list file (class i = i-th GT category / label value)")
    run.add_argument("--vocabulary", type=Path,
                     help="a vocabulary file with other names/synonyms for the same classes, in the same order")
    run.add_argument("--tasks", nargs="+", choices=("panoptic", "instance", "semantic"),
                     help="a subset of the dataset's tasks (default: all it has)")
    run.add_argument("--limit", type=int, help="only the first N images (quick check; not the paper's protocol)")
    run.add_argument("--model-config", default="convnext_large", help="shipped model config name or YAML file")
    run.add_argument("--weights", type=Path, help="FC-CLIP checkpoint or exported .safetensors (default: cache)")
    run.add_argument("--clip-weights", type=Path, help="open_clip weights completing a released checkpoint")
    run.add_argument("--input-short-side", type=int,
                     help="override the official test short side (the report then says it is not comparable)")
    run.add_argument("--max-long-side", type=int, help="override the official long-side cap")
    run.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")

    score = commands.add_parser("score", help="score predictions on disk (ours or any system's)")
    score.add_argument("--format", required=True, choices=SCORE_FORMATS)
    score.add_argument("--gt", type=Path, required=True,
                       help="coco_panoptic/coco_instances: the GT JSON; semantic_png: the GT label folder")
    score.add_argument("--pred", type=Path, required=True,
                       help="coco_panoptic: predictions JSON; coco_instances: results JSON; semantic_png: folder")
    score.add_argument("--gt-dir", type=Path, help="coco_panoptic: folder of GT PNGs (default: GT JSON name w/o .json)")
    score.add_argument("--pred-dir", type=Path,
                       help="coco_panoptic: folder of predicted PNGs (default: predictions JSON name w/o .json)")
    score.add_argument("--num-classes", type=int, help="semantic_png: number of classes (or give --class-list)")
    score.add_argument("--class-list", help="semantic_png: class list (names the per-class results)")
    score.add_argument("--ignore-label", type=int, default=255, help="semantic_png: unlabelled GT value (255)")
    score.add_argument("--only-predicted", action="store_true",
                       help="score only the images that have a prediction (default: all GT images need one)")
    for sub in (run, score):
        sub.add_argument("--json", type=Path, help="also write the metrics here (run always writes report.json)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "list":
            return _list()
        if args.command == "run":
            return _run(args)
        return _score(args)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:  # WeightsError is a RuntimeError
        raise SystemExit(f"fcclip-eval: {exc}") from None


def _list() -> int:
    from fcclip_core.evaluation import benchmark_names, load_benchmark

    for name in benchmark_names():
        spec = load_benchmark(name)
        paper = ", ".join(f"{k} {v}" for k, v in spec.paper.items())
        print(f"{name:<17} tasks {','.join(spec.tasks):<26} input {spec.min_size_test}/{spec.max_size_test}  "
              f"paper (ConvNeXt-L): {paper}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from fcclip_core.evaluation import load_class_list
    from fcclip_core.evaluation.benchmarks import custom_benchmark, load_benchmark
    from fcclip_core.evaluation.loaders import load_dataset
    from fcclip_core.evaluation.report import format_table
    from fcclip_core.evaluation.runner import run_benchmark
    from fcclip_core.predictor import Predictor
    from fcclip_core.vocabulary import load_vocabulary_file

    if args.dataset == "custom":
        if not args.class_list:
            raise ValueError("--dataset custom needs --class-list")
        spec = custom_benchmark(args.root, args.class_list)
    else:
        if args.class_list:
            raise ValueError("--class-list is for --dataset custom; use --vocabulary to rename a benchmark's classes")
        spec = load_benchmark(args.dataset)
    class_list = load_class_list(spec.class_list)
    if args.vocabulary:
        class_list = class_list.with_names(load_vocabulary_file(args.vocabulary, allow_duplicate_labels=True))
    dataset = load_dataset(spec, args.root, class_list)
    short = args.input_short_side if args.input_short_side is not None else spec.min_size_test
    long = args.max_long_side if args.max_long_side is not None else spec.max_size_test
    settings = {"model_config": args.model_config, "weights": _describe_file(args.weights),
                "input_short_side": short, "max_long_side": long,
                "vocabulary": str(args.vocabulary) if args.vocabulary else None}
    predictor = Predictor.from_config(args.model_config, args.weights, clip_weights=args.clip_weights,
                                      device=args.device, input_short_side=short, max_long_side=long)
    report = run_benchmark(predictor, dataset, args.output, tasks=args.tasks or spec.tasks, limit=args.limit,
                           settings=settings, progress=not args.no_progress)
    print(format_table(report))
    print(f"report: {(args.output / 'report.json').resolve()}")
    _maybe_write(args.json, report)
    return 0


def _score(args: argparse.Namespace) -> int:
    from fcclip_core.evaluation import load_class_list, score_coco_instances, score_coco_panoptic, score_semantic_pngs

    if args.format == "coco_panoptic":
        gt_dir = args.gt_dir or args.gt.with_suffix("")
        pred_dir = args.pred_dir or args.pred.with_suffix("")
        image_ids = None
        if args.only_predicted:
            image_ids = [a["image_id"] for a in json.loads(args.pred.read_text(encoding="utf-8"))["annotations"]]
        metrics = score_coco_panoptic(args.gt, gt_dir, args.pred, pred_dir, image_ids=image_ids)
        print(_rows([("PQ", metrics["All"]["PQ"]), ("SQ", metrics["All"]["SQ"]), ("RQ", metrics["All"]["RQ"]),
                     ("PQ things", metrics["Things"]["PQ"]), ("PQ stuff", metrics["Stuff"]["PQ"])]))
    elif args.format == "coco_instances":
        image_ids = None
        if args.only_predicted:
            image_ids = {e["image_id"] for e in json.loads(args.pred.read_text(encoding="utf-8"))}
        metrics = score_coco_instances(args.gt, args.pred, image_ids=image_ids)
        print(_rows([(name, metrics[name]) for name in ("AP", "AP50", "AP75", "APs", "APm", "APl")]))
    else:
        names = None
        num_classes = args.num_classes
        if args.class_list:
            names = list(load_class_list(args.class_list).vocabulary.labels)
            num_classes = num_classes or len(names)
        if not num_classes:
            raise ValueError("semantic_png needs --num-classes or --class-list")
        stems = None
        if args.only_predicted:
            stems = sorted(p.stem for p in args.pred.iterdir() if p.suffix.lower() in (".png", ".tif", ".tiff"))
        metrics = score_semantic_pngs(args.gt, args.pred, num_classes, ignore_label=args.ignore_label,
                                      class_names=names, stems=stems)
        print(_rows([(name, metrics[name]) for name in ("mIoU", "fwIoU", "mACC", "pACC")]))
    print(f"images: {metrics['images']}")
    _maybe_write(args.json, metrics)
    return 0


def _rows(rows: list) -> str:
    return "\n".join(f"{name:<10} {'-' if value is None else f'{value:.2f}':>8}" for name, value in rows)


def _describe_file(path: Optional[Path]) -> Optional[dict]:
    """Identity of a weights file for the resume check: path, size and modification time."""
    if path is None:
        return None
    stat = Path(path).stat()
    return {"path": str(Path(path).resolve()), "bytes": stat.st_size, "mtime": int(stat.st_mtime)}


def _maybe_write(path: Optional[Path], data: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(data, indent=2), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
