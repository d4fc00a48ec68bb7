#!/usr/bin/env python3
"""prefdiff's TensorBoard event files, read back by the tensorboard package's own readers.

tensorboard_tool (C++) writes what a JSON script says; this script checks what TensorBoard sees:

- the Python loader (EventAccumulator / EventFileLoader, which verifies every record's CRC-32C): the file
  version, every scalar (tag, step, value as float32, wall time), every image (bytes, size), metrics rows
  under metrics.jsonl's keys, a crash's lost tail and a truncated file, a resume;
- the Rust data server that `tensorboard --logdir` uses by default (tensorboard_data_server, run with
  --checksum): the same scalars and images.

    python tensorboard_e2e.py --tool build/tests/run/tensorboard_tool --work /tmp/tb-e2e
"""
import argparse
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image
from tensorboard.backend.event_processing import event_accumulator, event_file_loader

FAILURES = []


def check(condition, message):
    if not condition:
        FAILURES.append(message)
        print("FAIL: " + message, file=sys.stderr)


def same_float32(got, expected):
    """Whether `got` is exactly the float32 that `expected` (a double, None for NaN) becomes: rounding,
    flushing to zero, -0.0 and infinities compare bit for bit; any NaN matches NaN."""
    with np.errstate(over="ignore"):
        g, e = (np.array([float("nan") if x is None else x], dtype=np.float64).astype(np.float32)
                for x in (got, expected))
    return bool(np.isnan(g[0]) and np.isnan(e[0])) or g.tobytes() == e.tobytes()


class Tool:
    def __init__(self, path, work):
        self.path = path
        self.work = work
        self.count = 0

    def run(self, script):
        self.count += 1
        script_path = os.path.join(self.work, "script-%d.json" % self.count)
        with open(script_path, "w") as f:
            json.dump(script, f)
        done = subprocess.run([self.path, script_path], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError("tensorboard_tool failed (%d): %s" % (done.returncode, done.stderr))
        return json.loads(done.stdout)["event_file"]


def make_png(path, mode, width, height, rng):
    channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.array([rng.randrange(256) for _ in range(width * height * channels)], dtype=np.uint8)
    shape = (height, width) if channels == 1 else (height, width, channels)
    buf = io.BytesIO()
    Image.fromarray(pixels.reshape(shape), mode).save(buf, "PNG")
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return buf.getvalue()


def python_view(logdir):
    """What TensorBoard's Python loader sees: {tag: [(step, wall_time, value)]} and {tag: [(step, w, h, png)]}."""
    acc = event_accumulator.EventAccumulator(
        logdir, size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0})
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: [(e.step, e.wall_time, e.value) for e in acc.Scalars(t)] for t in tags["scalars"]}
    images = {t: [(e.step, e.width, e.height, e.encoded_image_string) for e in acc.Images(t)]
              for t in tags["images"]}
    return acc.file_version, scalars, images


def rust_view(logdir, scalar_tags, image_tags):
    """What the Rust data server (tensorboard's default loader) serves, read over its gRPC interface."""
    import grpc
    from tensorboard import context
    from tensorboard.data import grpc_provider, server_ingester
    from tensorboard.data.proto import data_provider_pb2_grpc

    binary = server_ingester.get_server_binary()
    tmp = tempfile.mkdtemp(prefix="rustboard-")
    port_file = os.path.join(tmp, "port")
    server = subprocess.Popen(
        [binary.path, "--logdir=" + logdir, "--reload=once", "--samples-per-plugin=scalars=all,images=all",
         "--port=0", "--port-file=" + port_file, "--die-after-stdin", "--checksum"],
        stdin=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        port = None
        while port is None and time.time() < deadline:
            if os.path.exists(port_file):
                text = open(port_file).read()
                if text.endswith("\n"):
                    port = int(text)
            if port is None:
                time.sleep(0.05)
        if port is None:
            raise RuntimeError("the data server did not start")
        addr = "localhost:%d" % port
        stub = data_provider_pb2_grpc.TensorBoardDataProviderStub(grpc.insecure_channel(addr))
        provider = grpc_provider.GrpcDataProvider(addr, stub)
        ctx = context.RequestContext()
        # The server loads in the background: wait until every tag is there.
        while True:
            listed = provider.list_scalars(ctx, experiment_id="", plugin_name="scalars")
            have = set().union(*[set(tags) for tags in listed.values()]) if listed else set()
            if set(scalar_tags) <= have or time.time() > deadline:
                break
            time.sleep(0.05)
        scalars = {}
        for run, tags in provider.read_scalars(ctx, experiment_id="", plugin_name="scalars",
                                               downsample=10**6).items():
            check(run == ".", "data server: run '%s', expected '.' (the logdir itself)" % run)
            for tag, points in tags.items():
                scalars[tag] = [(p.step, p.wall_time, p.value) for p in points]
        images = {}
        for run, tags in provider.read_blob_sequences(ctx, experiment_id="", plugin_name="images",
                                                      downsample=10**6).items():
            for tag, points in tags.items():
                series = []
                for p in points:
                    blobs = [provider.read_blob(ctx, blob_key=ref.blob_key) for ref in p.values]
                    series.append((p.step, int(blobs[0]), int(blobs[1]), blobs[2]))  # [width, height, png]
                images[tag] = series
        check(set(image_tags) <= set(images), "data server: image tags %s, expected %s" % (sorted(images), image_tags))
        return scalars, images
    finally:
        server.stdin.close()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)


def compare_scalars(where, got, expected, check_wall_time=True):
    """got/expected: {tag: [(step, wall_time or None, value)]}; values compared as float32 bits."""
    check(set(got) == set(expected), "%s: scalar tags %s, expected %s" % (where, sorted(got), sorted(expected)))
    for tag in sorted(set(got) & set(expected)):
        g, e = got[tag], expected[tag]
        check([p[0] for p in g] == [p[0] for p in e],
              "%s: '%s' steps %s, expected %s" % (where, tag, [p[0] for p in g], [p[0] for p in e]))
        for (gs, gw, gv), (es, ew, ev) in zip(g, e):
            check(same_float32(gv, ev), "%s: '%s' step %d value %r, expected float32(%r)" % (where, tag, gs, gv, ev))
            if check_wall_time and ew is not None:
                check(gw == ew, "%s: '%s' step %d wall_time %r, expected %r" % (where, tag, gs, gw, ew))


def compare_images(where, got, expected):
    """{tag: [(step, width, height, png)]}."""
    check(set(got) == set(expected), "%s: image tags %s, expected %s" % (where, sorted(got), sorted(expected)))
    for tag in sorted(set(got) & set(expected)):
        g, e = got[tag], expected[tag]
        check(len(g) == len(e), "%s: '%s' has %d images, expected %d" % (where, tag, len(g), len(e)))
        for (gs, gw, gh, gp), (es, ew, eh, ep) in zip(g, e):
            check((gs, gw, gh) == (es, ew, eh), "%s: '%s' image at step %d is %dx%d, expected step %d, %dx%d"
                  % (where, tag, gs, gw, gh, es, ew, eh))
            check(gp == ep, "%s: '%s' step %d: the PNG bytes differ (%d vs %d bytes)" % (where, tag, gs, len(gp), len(ep)))


def expected_from_metrics_jsonl(path):
    """TensorBoard scalars the metrics rows must have become: every key, at the row's step, and epoch with
    the training rows (rows with a key outside eval/)."""
    out = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            step, epoch = row.pop("step"), row.pop("epoch")
            if any(not k.startswith("eval/") for k in row):
                row["epoch"] = epoch
            for k, v in row.items():
                out.setdefault(k, []).append((step, None, v))
    return out


def scenario_everything(tool, work, rng):
    """Scalars with awkward values, images of every colour type, metrics rows; a clean close."""
    d = os.path.join(work, "everything")
    os.makedirs(d)
    ops, expected_scalars, expected_images = [], {}, {}
    # Values float32 rounds, flushes to zero or to infinity (JSON has no NaN: it comes with the rows below).
    special = [1.0 / 3, 1e-30, 1e-50, -0.0, 3.0e38, 1e39, -7.25, 123456789.123]
    tags = ["loss", "rewards/accuracies", "mse/model_w", "lr", "a tag with spaces"]
    for step in range(1, 26):
        for tag in tags:
            value = special[(step + len(tag)) % len(special)] if step % 4 == 0 else rng.uniform(-1e3, 1e3)
            op = {"op": "scalar", "tag": tag, "value": value, "step": step}
            wall_time = None
            if step % 2 == 0:
                wall_time = 1.7e9 + step + rng.random()
                op["wall_time"] = wall_time
            ops.append(op)
            expected_scalars.setdefault(tag, []).append((step, wall_time, value))
    for i, (mode, w, h) in enumerate([("RGB", 37, 23), ("RGBA", 16, 16), ("L", 5, 9), ("LA", 8, 3)]):
        for step in (5, 10):
            png_path = os.path.join(work, "img-%d-%d.png" % (i, step))
            png = make_png(png_path, mode, w, h, rng)
            tag = "validation/%02d" % i
            ops.append({"op": "image", "tag": tag, "png_file": png_path, "height": h, "width": w, "step": step})
            expected_images.setdefault(tag, []).append((step, w, h, png))
    ops.append({"op": "row", "step": 30, "epoch": 0.5,
                "values": {"loss": 0.6931, "rewards/accuracies": 0.5, "lr": 1e-5, "grad_norm": None}})
    ops.append({"op": "eval", "step": 30, "epoch": 0.5, "values": {"loss": 0.7, "rewards/accuracies": 0.25}})
    ops.append({"op": "row", "step": 40, "epoch": 0.75, "values": {"loss": 0.5, "pairs_per_s": 12.5}})
    event_file = tool.run({"dir": d, "ops": ops, "flush_every_records": 7})

    # Metrics rows: TensorBoard holds what metrics.jsonl holds (null there is NaN here).
    from_rows = expected_from_metrics_jsonl(os.path.join(d, "metrics.jsonl"))
    check(set(from_rows) >= {"loss", "eval/loss", "epoch", "grad_norm"}, "metrics.jsonl keys: %s" % sorted(from_rows))
    for tag, points in from_rows.items():
        expected_scalars.setdefault(tag, []).extend(points)

    version, scalars, images = python_view(d)
    check(version == 2.0, "file_version %r, expected 2.0 (brain.Event:2)" % version)
    compare_scalars("python loader", scalars, expected_scalars)
    compare_images("python loader", images, expected_images)

    # The raw events: header first, with its writer; one event per op (a metrics row is one event).
    events = list(event_file_loader.EventFileLoader(event_file).Load())
    if not events:
        check(False, "EventFileLoader read no event from %s (a bad checksum in the first record?)" % event_file)
        return
    check(events[0].file_version == "brain.Event:2", "first event: %r" % events[0])
    check(events[0].source_metadata.writer == "prefdiff", "header writer: %r" % events[0].source_metadata.writer)
    check(len(events) == 1 + len(ops), "%d events, expected %d" % (len(events), 1 + len(ops)))
    check(all(e.wall_time > 1.6e9 for e in events), "every event has a wall time")

    rust_scalars, rust_images = rust_view(d, list(expected_scalars), list(expected_images))
    compare_scalars("data server", rust_scalars, expected_scalars)
    compare_images("data server", rust_images, expected_images)
    n_scalars = sum(len(v) for v in expected_scalars.values())
    n_images = sum(len(v) for v in expected_images.values())
    print("everything: %d scalars in %d tags, %d images; both readers agree" % (n_scalars, len(expected_scalars), n_images))


def scenario_crash(tool, work):
    """A process killed without close loses its unflushed tail; a truncated file keeps its earlier records."""
    d = os.path.join(work, "crash")
    os.makedirs(d)
    ops = [{"op": "scalar", "tag": "loss", "value": step / 8.0, "step": step} for step in range(1, 11)]
    event_file = tool.run({"dir": d, "ops": ops, "flush_every_records": 4, "exit_without_close": True})
    _, scalars, _ = python_view(d)
    steps = [s for s, _, _ in scalars.get("loss", [])]
    check(steps == list(range(1, 9)), "after a kill: steps %s, expected 1..8 (two flushes of 4)" % steps)

    # Cut the file inside its last record, as a crash mid-write would.
    data = open(event_file, "rb").read()
    last = list(event_file_loader.RawEventFileLoader(event_file).Load())[-1]
    cut = len(data) - (12 + len(last) + 4) // 2
    d2 = os.path.join(work, "crash-truncated")
    os.makedirs(d2)
    with open(os.path.join(d2, os.path.basename(event_file)), "wb") as f:
        f.write(data[:cut])
    _, scalars, _ = python_view(d2)
    steps = [s for s, _, _ in scalars.get("loss", [])]
    check(steps == list(range(1, 8)), "truncated file: steps %s, expected 1..7" % steps)
    check([v for _, _, v in scalars["loss"]] == [s / 8.0 for s in range(1, 8)], "truncated file: values changed")
    rust_scalars, _ = rust_view(d2, ["loss"], [])
    check([p[0] for p in rust_scalars.get("loss", [])] == list(range(1, 8)),
          "data server, truncated file: %s" % rust_scalars.get("loss"))
    print("crash: 8 of 10 records after a kill (flush every 4); 7 of 8 after cutting the last in half")


def scenario_resume(tool, work, rng):
    """A run killed after step 100 and resumed from its checkpoint of step 50: steps 60..100 appear once,
    with the resumed run's values, in both readers; also with the killed run's file left unpruned (a
    TensorBoard that read it before the resume), which TensorBoard itself sorts out."""
    d = os.path.join(work, "resume")
    os.makedirs(d)

    def rows(first, last, sign, tag_png):
        ops = []
        for step in range(first, last + 1, 10):
            ops.append({"op": "row", "step": step, "epoch": step / 200.0,
                        "values": {"loss": sign * step / 1000.0, "lr": 1e-5}})
            if step % 50 == 0:
                ops.append({"op": "eval", "step": step, "epoch": step / 200.0, "values": {"loss": sign * step}})
                ops.append(dict(tag_png[step], op="image", tag="validation/00", step=step))
        return ops

    def png(name):
        path = os.path.join(work, name)
        return {"png_file": path, "height": 6, "width": 7, "bytes": make_png(path, "RGB", 7, 6, rng)}

    first_pngs = {50: png("r1-50.png"), 100: png("r1-100.png")}
    second_pngs = {100: png("r2-100.png")}
    strip = lambda ops: [{k: v for k, v in op.items() if k != "bytes"} for op in ops]
    first_file = tool.run({"dir": d, "ops": strip(rows(10, 100, 1, first_pngs))})
    unpruned = open(first_file, "rb").read()
    second_file = tool.run({"dir": d, "resume_step": 50, "ops": strip(rows(60, 120, -1, second_pngs))})

    expected = {
        "loss": [(s, None, s / 1000.0) for s in range(10, 51, 10)] + [(s, None, -s / 1000.0) for s in range(60, 121, 10)],
        "lr": [(s, None, 1e-5) for s in range(10, 121, 10)],
        "epoch": [(s, None, s / 200.0) for s in range(10, 121, 10)],
        "eval/loss": [(50, None, 50.0), (100, None, -100.0)],
    }
    expected_images = {"validation/00": [(50, 7, 6, first_pngs[50]["bytes"]), (100, 7, 6, second_pngs[100]["bytes"])]}
    compare_scalars("resume: metrics.jsonl", expected_from_metrics_jsonl(os.path.join(d, "metrics.jsonl")), expected)
    _, scalars, images = python_view(d)
    compare_scalars("resume: python loader", scalars, expected)
    compare_images("resume: python loader", images, expected_images)
    rust_scalars, rust_images = rust_view(d, list(expected), list(expected_images))
    compare_scalars("resume: data server", rust_scalars, expected)
    compare_images("resume: data server", rust_images, expected_images)

    # The killed run's file as it was before the resume pruned it, next to the resumed run's file.
    d2 = os.path.join(work, "resume-unpruned")
    os.makedirs(d2)
    with open(os.path.join(d2, os.path.basename(first_file)), "wb") as f:
        f.write(unpruned)
    shutil.copy(second_file, d2)
    _, scalars, images = python_view(d2)  # SessionLog START at step 51 drops what it read at steps >= 51
    compare_scalars("resume, unpruned: python loader", scalars, expected)
    compare_images("resume, unpruned: python loader", images, expected_images)
    rust_scalars, rust_images = rust_view(d2, list(expected), list(expected_images))  # per tag, a step drops
    compare_scalars("resume, unpruned: data server", rust_scalars, expected)         # later-or-equal ones
    compare_images("resume, unpruned: data server", rust_images, expected_images)
    print("resume: steps 10..50 from the killed run, 60..120 from the resumed one, each once, in both readers")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", required=True, help="the tensorboard_tool executable")
    parser.add_argument("--work", required=True, help="a scratch folder (emptied first)")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    os.makedirs(args.work)
    tool = Tool(os.path.abspath(args.tool), args.work)
    rng = random.Random(20250131)
    scenario_everything(tool, args.work, rng)
    scenario_crash(tool, args.work)
    scenario_resume(tool, args.work, rng)
    if FAILURES:
        print("%d check(s) failed" % len(FAILURES), file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
