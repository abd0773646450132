"""The naive reference app: the upload endpoint most people would write, for side-by-side runs.

FastAPI `UploadFile` (spooled to a temp file past 1 MB), Pillow full decode, centre crop of
the same 224/256 of the short side as ours, bicubic resize to 224, the same bundled ONNX model
in onnxruntime (one image per call), original and rendition written to a local directory,
one SQLite row. Usage (loopback only):
    .venv/bin/python bench/naive_app.py --port 8100 --root /tmp/naive
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import sqlite3
from pathlib import Path

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, File, UploadFile
from PIL import Image

MODEL = Path(__file__).resolve().parents[1] / "src/imgest/scoring/models/efficientnet-lite0"
CROP = 0.875
ROOT = Path(os.environ.get("NAIVE_ROOT", "var-naive"))

app = FastAPI()
session = ort.InferenceSession(str(MODEL / "model.onnx"), providers=["CPUExecutionProvider"])
labels = (MODEL / "labels.txt").read_text().splitlines()


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(ROOT / "catalog.db", timeout=30)
    conn.execute("CREATE TABLE IF NOT EXISTS images (id TEXT PRIMARY KEY, name TEXT, top TEXT)")
    return conn


@app.post("/upload", status_code=201)
def upload(file: UploadFile = File(...)) -> dict[str, object]:  # noqa: B008 (FastAPI idiom)
    data = file.file.read()
    digest = hashlib.sha256(data).hexdigest()
    img = Image.open(io.BytesIO(data)).convert("RGB")
    w, h = img.size
    side = min(w, h) * CROP
    left, top = (w - side) / 2, (h - side) / 2
    small = img.resize((224, 224), Image.Resampling.BICUBIC, box=(left, top, w - left, h - top))
    (ROOT / "originals").mkdir(parents=True, exist_ok=True)
    (ROOT / "renditions").mkdir(parents=True, exist_ok=True)
    (ROOT / "originals" / digest).write_bytes(data)
    small.save(ROOT / "renditions" / f"{digest}.jpg", quality=90)
    x = (np.asarray(small, dtype=np.float32) - 127.0) / 128.0
    logits = session.run(None, {"input": x.transpose(2, 0, 1)[None]})[0][0]
    best = [(labels[i], float(logits[i])) for i in np.argsort(-logits)[:5]]
    with db() as conn:
        conn.execute(
            "INSERT OR IGNORE INTO images VALUES (?, ?, ?)",
            (digest, file.filename, json.dumps(best)),
        )
    return {"id": digest, "top": best}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--root", default=str(ROOT))
    args = parser.parse_args()
    ROOT = Path(args.root)
    db().close()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")
