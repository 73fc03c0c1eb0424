"""Peak memory of decoding one large 16-bit colour PNG (tracemalloc): what a big upload costs.

    python benchmarks/decode_memory.py [--height 2048] [--width 4096]

Prints the decoded samples' size, the result's, and the traced peak of ``decode_gray``.
"""

from __future__ import annotations

import argparse
import sys
import tracemalloc
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from steelseg.files.images import decode_gray  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--height", type=int, default=2048)
    parser.add_argument("--width", type=int, default=4096)
    args = parser.parse_args()
    ramp = (np.arange(args.width, dtype=np.uint32) * 16 % 65536).astype(np.uint16)
    bgr = np.ascontiguousarray(np.broadcast_to(ramp[None, :, None], (args.height, args.width, 3)))
    png = cv2.imencode(".png", bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])[1].tobytes()
    del bgr
    pixels = args.height * args.width
    tracemalloc.start()
    decode_gray(png, "big.png", max_pixels=pixels)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    mib = 2**20
    print(
        f"{pixels / 1e6:.1f} Mpx 16-bit colour: samples {6 * pixels / mib:.0f} MiB, result {pixels / mib:.0f} MiB, "
        f"decode peak {peak / mib:.0f} MiB"
    )


if __name__ == "__main__":
    main()
