#!/usr/bin/env python3
"""Convert Pick-a-Pic v2 parquet files to JSON lines for `prefdiff data import pick-a-pic`.

Reads with pyarrow (no hand-written parquet parsing), one record batch at a time so the 300 GB
train split streams. Keeps the columns the importer uses; the JPEG bytes (jpg_0, jpg_1) are written to
--images-dir as <uid>.jpg when given, and the rows then carry image_0_path / image_1_path.
The pair logic (ties, winner first) stays in the C++ importer.
"""
import argparse
import json
import os
import sys

COLUMNS = ["caption", "label_0", "label_1", "has_label", "are_different", "image_0_uid", "image_1_uid",
           "model_0", "model_1", "ranking_id", "user_id", "num_example_per_prompt", "created_at"]
REQUIRED = ["caption", "label_0", "label_1", "image_0_uid", "image_1_uid", "model_0", "model_1", "ranking_id", "user_id"]


def plain(value):
    """JSON-safe value: timestamps become POSIX seconds."""
    if hasattr(value, "timestamp"):
        return value.timestamp()
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("inputs", nargs="+", help="parquet files")
    parser.add_argument("--output", required=True, help="JSON lines file to write")
    parser.add_argument("--images-dir", help="write jpg_0/jpg_1 bytes here as <uid>.jpg")
    args = parser.parse_args()
    try:
        import pyarrow.parquet as pq
    except ImportError:
        sys.exit("pickapic_to_jsonl.py: pyarrow is not installed in " + sys.executable +
                 ". HINT: use the prefdiff venv's python (--python)")
    rows = 0
    with open(args.output, "w", encoding="utf-8") as out:
        for path in args.inputs:
            parquet = pq.ParquetFile(path)
            names = set(parquet.schema_arrow.names)
            missing = [c for c in REQUIRED if c not in names]
            if missing:
                sys.exit(f"{path}: missing Pick-a-Pic columns {missing}. HINT: is this a Pick-a-Pic v2 parquet file?")
            columns = [c for c in COLUMNS if c in names]
            images = args.images_dir is not None and "jpg_0" in names and "jpg_1" in names
            if images:
                columns += ["jpg_0", "jpg_1"]
                os.makedirs(args.images_dir, exist_ok=True)
            for batch in parquet.iter_batches(batch_size=4096, columns=columns):
                for row in batch.to_pylist():
                    if images:
                        for k in (0, 1):
                            data = row.pop(f"jpg_{k}")
                            if data is not None:
                                target = os.path.join(args.images_dir, f"{row[f'image_{k}_uid']}.jpg")
                                with open(target, "wb") as f:
                                    f.write(data)
                                row[f"image_{k}_path"] = target
                    out.write(json.dumps({k: plain(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
                    rows += 1
    print(f"pickapic_to_jsonl.py: {rows} rows from {len(args.inputs)} files -> {args.output}", file=sys.stderr)


if __name__ == "__main__":
    main()
