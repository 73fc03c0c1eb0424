"""A mask as polygons an annotation tool edits (LabelMe), drawn back by the rule of the LabelMe
importer (``files.importers.labelme``): points are pixel centres, and ``cv2.fillPoly`` fills
a polygon together with its boundary pixels. Pure numpy and OpenCV.

- **One polygon per 8-connected component**: its points are the centres of the component's
  border pixels (``cv2.findContours``), straight runs cut down to their ends (a straight run
  draws the same pixels either way). Filled back, that gives the component's pixels.
- **Holes**: a LabelMe polygon has none, so each hole is joined to its component's outline by
  a bridge: a vertical cut from the hole's top border pixel straight up through defect pixels to
  the next border above (the outline, or a hole joined before), walked up and back down. The
  two walks of the bridge are the same edge twice, so fillPoly's even-odd rule leaves the hole
  empty, and the bridge's own pixels, drawn as boundary, are defect pixels anyway. In LabelMe
  such a polygon shows as a ring with a slit; editing keeps the hole as long as the slit stays.
- A component of one or two border points (a pixel, a short line) is padded to the three points
  a polygon needs by repeating its last point, which draws the same pixels.
"""

from __future__ import annotations

import cv2
import numpy as np

MIN_POINTS = 3  # what LabelMe (and its importer) take for a polygon


def polygons(mask: np.ndarray) -> list[np.ndarray]:
    """(H, W) mask (nonzero = defect) -> one (K, 2) int64 array of (x, y) points per 8-connected
    component, K >= 3, holes joined by bridges (module docstring); components in reading order
    of their top-left border pixel."""
    if mask.ndim != 2:
        raise ValueError(f"polygons expects a 2-D mask, got shape {mask.shape}")
    binary = np.ascontiguousarray(mask, dtype=bool).astype(np.uint8)
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if not contours:
        return []
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    rings = []
    for index, (_, _, child, parent) in enumerate(links):
        if parent >= 0:
            continue  # a hole: joined to its component's outline below
        holes = []
        while child >= 0:
            holes.append(contours[child].reshape(-1, 2).astype(np.int64))
            child = links[child][0]
        outline = contours[index].reshape(-1, 2).astype(np.int64)
        rings.append(_padded(_straightened(_joined(outline, holes, binary))))
    return sorted(rings, key=lambda ring: (int(ring[:, 1].min()), int(ring[ring[:, 1].argmin(), 0])))


def _joined(outline: np.ndarray, holes: list[np.ndarray], binary: np.ndarray) -> np.ndarray:
    """The outline with each hole spliced in by a vertical bridge. Holes are joined top first,
    so the border a bridge meets above its hole (the outline, or a hole higher up) is joined
    already: the bridge hangs the hole's loop on that border pixel."""
    contours = [outline, *holes]
    joined: dict[tuple[int, int], tuple[int, int]] = {}  # border pixel -> (contour, index) where joined
    _register(joined, 0, outline)
    hung: dict[int, dict[int, list[tuple[int, int]]]] = {}  # contour -> {index: [(hole, its top index)]}
    tops = [int(np.lexsort((hole[:, 0], hole[:, 1]))[0]) for hole in holes]  # topmost, then leftmost
    for k in sorted(range(1, len(contours)), key=lambda k: tuple(contours[k][tops[k - 1]][::-1])):
        x, y = (int(v) for v in contours[k][tops[k - 1]])
        gaps = np.flatnonzero(binary[:y, x][::-1] == 0)  # the pixels straight above, nearest first
        reach = (x, y - (int(gaps[0]) if gaps.size else y))  # the last defect pixel going up
        if reach not in joined:
            raise RuntimeError(f"no joined border pixel at {reach} above the hole at {(x, y)}: a bug")
        contour, index = joined[reach]
        hung.setdefault(contour, {}).setdefault(index, []).append((k, tops[k - 1]))
        _register(joined, k, contours[k])
    return _walk(contours, hung)


def _register(joined: dict, contour: int, points: np.ndarray) -> None:
    for index, point in enumerate(map(tuple, points.tolist())):
        joined.setdefault(point, (contour, index))


def _walk(contours: list[np.ndarray], hung: dict) -> np.ndarray:
    """The outline's points in order; at a pixel a hole hangs on: the hole's loop (its points
    from its top round to its top again, with the holes hanging on it) and the pixel again."""
    pieces: list[np.ndarray] = []
    stack = [_Frame(contours, hung, 0, 0, closed=False, back=None)]
    while stack:
        frame = stack[-1]
        stop = frame.next_stop()
        if stop is None:
            pieces.append(frame.rest())
            if frame.back is not None:
                pieces.append(frame.back)
            stack.pop()
            continue
        pieces.append(frame.up_to(stop))
        point = frame.points[frame.order[stop] : frame.order[stop] + 1]
        for hole, top in reversed(hung[frame.contour][int(frame.order[stop])]):
            stack.append(_Frame(contours, hung, hole, top, closed=True, back=point))
    return np.concatenate(pieces)


class _Frame:
    """One contour being walked from ``start`` (round to ``start`` again when ``closed``), and
    the pixel to walk back to (``back``) when done."""

    def __init__(self, contours, hung, contour: int, start: int, closed: bool, back: np.ndarray | None):
        self.contour, self.points, self.back = contour, contours[contour], back
        size = len(self.points)
        self.order = (start + np.arange(size + closed)) % size
        hooks = np.array(list(hung.get(contour, ())), dtype=np.int64)
        stops = np.flatnonzero(np.isin(self.order[:size], hooks))  # a closed loop's last point repeats its first
        self.stops, self.position = stops.tolist(), 0
        self.stops.reverse()

    def next_stop(self) -> int | None:
        return self.stops.pop() if self.stops else None

    def up_to(self, stop: int) -> np.ndarray:
        piece = self.points[self.order[self.position : stop + 1]]
        self.position = stop + 1
        return piece

    def rest(self) -> np.ndarray:
        return self.points[self.order[self.position :]]


def _straightened(ring: np.ndarray) -> np.ndarray:
    """The ring without repeated points and without the points inside straight runs."""
    keep = np.any(ring != np.roll(ring, 1, axis=0), axis=1)
    if keep.any():
        ring = ring[keep]
    if len(ring) < MIN_POINTS:
        return ring
    incoming = ring - np.roll(ring, 1, axis=0)
    outgoing = np.roll(ring, -1, axis=0) - ring
    cross = incoming[:, 0] * outgoing[:, 1] - incoming[:, 1] * outgoing[:, 0]
    straight = (cross == 0) & ((incoming * outgoing).sum(axis=1) > 0)
    return ring[~straight]


def _padded(ring: np.ndarray) -> np.ndarray:
    if len(ring) >= MIN_POINTS:
        return ring
    return np.concatenate((ring, np.repeat(ring[-1:], MIN_POINTS - len(ring), axis=0)))
