"""fcclip-weights: get the released FC-CLIP weights, or bring in files fetched elsewhere.

    fcclip-weights download [MODEL] [--export]   checkpoint + CLIP weights into the cache
    fcclip-weights import PATH... [--model M]    files fetched by hand (air-gapped robots)
    fcclip-weights list [--verify] [--json]      what the cache holds, and whether it is complete
    fcclip-weights export [MODEL] [--output F]   one memory-mappable .safetensors with everything
    fcclip-weights path [MODEL]                  the file(s) the node and fcclip-segment would load

The cache is $FCCLIP_WEIGHTS_DIR, default ${XDG_CACHE_HOME:-~/.cache}/fcclip_ros/weights.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from fcclip_core.weights.cache import CACHE_ENV, default_cache_dir
from fcclip_core.weights.catalogue import BASE_URL_ENV, CATALOGUE_ENV
from fcclip_core.weights.errors import WeightsError
from fcclip_core.weights.resolve import resolve_weights
from fcclip_core.weights.store import ONLY_CHOICES, ModelStatus, WeightsStore

EPILOG = f"""environment:
  {CACHE_ENV}       the cache directory (default ~/.cache/fcclip_ros/weights, under $XDG_CACHE_HOME if set)
  {BASE_URL_ENV}   fetch checkpoints from <URL>/<file name> instead of Google Drive (a mirror)
  {CATALOGUE_ENV}  another model catalogue (YAML)
  HF_ENDPOINT, HF_HUB_OFFLINE  Hugging Face Hub mirror / offline switch (CLIP weights)
"""


def _size(num: Optional[int]) -> str:
    if num is None:
        return "-"
    value = float(num)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(num)


def _status_line(status: ModelStatus) -> list[str]:
    entry = status.entry
    if not entry.config_available:
        state = "config not shipped yet"
    elif status.ready:
        state = "complete"
    elif any(f.state == "partial" for f in status.files.values()):
        state = "partial"
    else:
        state = "missing"
    lines = [f"{entry.name:<16} {state:<24} {entry.description}"]
    for role, f in status.files.items():
        if f.state == "missing" and role == "export":
            continue
        if role == "clip" and not status.needs_clip and f.state == "missing":
            continue
        label = {"checkpoint": "checkpoint", "clip": f"CLIP {entry.clip.label}", "export": "export"}[role]
        name = f.name or (entry.checkpoint.filename if role == "checkpoint" else "")
        detail = f"  ({f.detail})" if f.detail and f.state != "complete" else ""
        lines.append(f"    {label:<52} {f.state:<9} {_size(f.size):>9}  {name}{detail}")
    return lines


def _status_json(status: ModelStatus) -> dict:
    return {
        "model": status.entry.name, "config": status.entry.config, "config_available": status.entry.config_available,
        "ready": status.ready, "directory": str(status.root), "needs_clip": status.needs_clip,
        "files": {role: {"state": f.state, "name": f.name, "size": f.size, "detail": f.detail}
                  for role, f in status.files.items()},
    }


def cmd_list(store: WeightsStore, args: argparse.Namespace) -> int:
    statuses = [store.status(name, verify=args.verify) for name in store.catalogue.names()]
    if args.json:
        print(json.dumps({"cache_dir": str(store.cache_dir), "models": [_status_json(s) for s in statuses]}, indent=2))
        return 0
    print(f"weights cache: {store.cache_dir}   (default model: {store.catalogue.default})")
    for status in statuses:
        print("\n".join(_status_line(status)))
    return 0


def cmd_download(store: WeightsStore, args: argparse.Namespace) -> int:
    status = store.download(args.model, only=args.only, progress=not args.no_progress, export=args.export)
    print("\n".join(_status_line(status)))
    return 0


def cmd_import(store: WeightsStore, args: argparse.Namespace) -> int:
    for rec in store.import_files([Path(p) for p in args.paths], args.model):
        print(f"imported {rec.origin.removeprefix('import:')} as the {rec.role}: {store.cache_dir / store.entry(args.model).name / rec.name}")
    print("\n".join(_status_line(store.status(args.model))))
    return 0


def cmd_export(store: WeightsStore, args: argparse.Namespace) -> int:
    if args.clip and not args.checkpoint:
        raise WeightsError("--clip needs --checkpoint")
    path = store.export(args.model, output=Path(args.output) if args.output else None,
                        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                        clip=Path(args.clip) if args.clip else None)
    print(f"exported {store.entry(args.model).name}: {path} ({_size(path.stat().st_size)})")
    return 0


def cmd_path(store: WeightsStore, args: argparse.Namespace) -> int:
    resolved = resolve_weights(args.model, None, allow_download=False, cache_dir=store.cache_dir,
                               catalogue=store.catalogue)
    print(resolved.path)
    if resolved.clip is not None:
        print(resolved.clip)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fcclip-weights", description=__doc__.split("\n\n")[0],
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", help=f"the weights cache (default: ${CACHE_ENV} or {default_cache_dir()})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("download", help="download a released model (default: the ConvNeXt-L COCO model)")
    p.add_argument("model", nargs="?", help="catalogue name (see `fcclip-weights list`)")
    p.add_argument("--only", choices=ONLY_CHOICES, help="fetch only the checkpoint or only the CLIP weights")
    p.add_argument("--export", action="store_true", help="also write the single-file export (faster start)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("import", help="bring files fetched elsewhere into the cache (checked, then copied)")
    p.add_argument("paths", nargs="+", help="the FC-CLIP checkpoint and/or CLIP weights file, or an export")
    p.add_argument("--model", help="the model they belong to (default: the released ConvNeXt-L model)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("list", help="show every model of the catalogue and what the cache holds of it")
    p.add_argument("--verify", action="store_true", help="re-hash every file (slow) instead of trusting the manifest")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("export", help="write one .safetensors file with every tensor the model needs")
    p.add_argument("model", nargs="?", help="catalogue name (default: the released ConvNeXt-L model)")
    p.add_argument("--output", help="write here instead of into the cache")
    p.add_argument("--checkpoint", help="export this checkpoint instead of the cached one")
    p.add_argument("--clip", help="with --checkpoint: its open_clip CLIP weights")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("path", help="print the weights file(s) that would be loaded for a model")
    p.add_argument("model", nargs="?", help="catalogue name (default: the released ConvNeXt-L model)")
    p.set_defaults(func=cmd_path)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = WeightsStore(Path(args.cache_dir).expanduser() if args.cache_dir else None)
        return args.func(store, args)
    except WeightsError as exc:
        print(f"fcclip-weights: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fcclip-weights: interrupted; partial downloads are kept and resume on the next run", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
