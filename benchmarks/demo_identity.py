"""Is a demo's submission reproduced byte for byte by this checkout, with the same weights?

    python benchmarks/demo_identity.py DEMO_OUT [--backend auto]

DEMO_OUT is the folder of a finished `steelseg demo` (possibly made by another version of
steelseg): its run directory is loaded by this checkout's Predictor and its test strips are
predicted exactly as the demo's step 3 does; the new submission must equal DEMO_OUT's
submission.csv byte for byte. Used to show that a refactor changed no prediction.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

from steelseg import Predictor
from steelseg.files.submission import write_submission


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("demo_out", type=Path)
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    run_dir, images = args.demo_out / "run", args.demo_out / "data" / "test" / "train_images"
    before = (args.demo_out / "submission.csv").read_bytes()
    predictor = Predictor.from_run_dir(run_dir, backend=args.backend)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "submission.csv"
        write_submission(path, predictor.predict_folder(images, progress=False), predictor.num_classes)
        after = path.read_bytes()
    for name, data in (("before", before), ("after", after)):
        print(f"{name}: {len(data):,} bytes, sha256 {hashlib.sha256(data).hexdigest()}")
    same = before == after
    print(f"{predictor.describe()}: submission {'byte-identical' if same else 'DIFFERENT'}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
