"""The system report of ``steelseg fit``: one HTML page with the plan and its reasons, the
cross-validation table of every candidate, the sets scored by the selection, what shipped
against the best single member (per class), the tuned post-processing, the distilled student if
there is one, and the time of each stage against the budget with what the budget cut. It is
drawn from plain data (the dict ``pipeline.stages.system_report_data`` builds), so it knows
nothing of how the fit ran."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from steelseg.reports.html import Page


def write_system_report(path: str | os.PathLike, data: dict) -> Path:
    path = Path(path)
    page = Page(f"steelseg fit: {Path(data['out']).name}", path.parent)
    _summary(page, data)
    _plan(page, data)
    _cv(page, data)
    _selection(page, data)
    _postprocess(page, data)
    _student(page, data)
    _time(page, data)
    return page.write(path.name)


def _summary(page: Page, data: dict) -> None:
    selection = data["selection"]
    shipped = selection.get("shipped", {})
    fp = data["fingerprint"]
    single = selection.get("best_single")
    against = (
        f" (best single member {single}: {selection['best_single_score']:.4f})"
        if single
        else " (no member predicts every class alone)"
    )
    page.paragraph(
        f"{fp['images']} images, classes {', '.join(data['class_names'])}; shipped "
        f"{' + '.join(shipped.get('members', []))} with {selection.get('metric', '')} Dice "
        f"{shipped.get('score', float('nan')):.4f} on {selection.get('images', 0)} out-of-fold images{against}."
    )


def _plan(page: Page, data: dict) -> None:
    plan = data["plan"]
    page.heading("Plan")
    page.paragraph(
        f"{plan['system']} plan, {plan['k']} folds, TTA {plan['tta']}, budget {plan['budget_minutes']:g} min"
    )
    page.table(["choice", "reason"], [[key, reason] for key, reason in plan["reasons"].items()])
    page.table(
        ["member", "recipe", "minutes per fold", "settings"],
        [
            [m["name"], m["recipe"], m["minutes"], ", ".join(f"{k}={v}" for k, v in m["settings"].items())]
            for m in plan["members"]
        ],
    )


def _cv(page: Page, data: dict) -> None:
    page.heading("Cross-validation of each candidate")
    page.paragraph("Each fold's best epoch, validated on its held-out fold (tuned post-processing).", note=True)
    for name, table in data["cv"].items():
        rows = list(csv.reader(io.StringIO(table)))
        if rows:
            page.heading(name, level=3)
            page.table(rows[0], rows[1:], total_row=False)


def _selection(page: Page, data: dict) -> None:
    selection = data["selection"]
    names = data["class_names"]
    page.heading("Selection")
    page.paragraph(
        "Greedy forward selection on out-of-fold predictions made with the shipped TTA: start from the best "
        "single candidate, add the one that raises the score most, stop when none does. Each set is scored with "
        "its post-processing tuned on the same images (coarse grids). A member predicts new images with the "
        "average of its fold models, which is smoother than the one fold model each out-of-fold image saw.",
        note=True,
    )
    page.table(
        ["set", "score", *names],
        [[" + ".join(step["members"]), step["score"], *step["per_class"]] for step in selection.get("steps", [])],
    )
    shipped = selection.get("shipped")
    if shipped:
        page.heading("Shipped system against its best single member", level=3)
        rows = [[f"shipped: {' + '.join(shipped['members'])}", shipped["score"], *shipped["per_class"]]]
        if selection.get("best_single"):
            single = selection["best_single"]
            rows.append([f"best single: {single}", selection["best_single_score"], *selection["best_single_per_class"]])
        page.table(["", "mean", *names], rows)


def _postprocess(page: Page, data: dict) -> None:
    page.heading("Tuned post-processing")
    post = data["postprocess"]
    keys = [k for k, v in post.items() if isinstance(v, list)]
    rows = [[name, *[post[k][c] for k in keys]] for c, name in enumerate(data["class_names"])]
    page.table(["class", *keys], rows)


def _student(page: Page, data: dict) -> None:
    student = data.get("student")
    if not student:
        return
    page.heading("Distilled student")
    page.paragraph(
        f"The shipped system ({student['system_passes']} network passes per image: members x fold models x TTA "
        f"views) taught one {student['recipe']} network, the run {student['run']}: validation Dice "
        f"{student['val_dice']:.4f} at its best epoch {student['epoch']}, one pass per image."
    )
    page.paragraph(
        "Its validation images were held out from the student, not from the system's fold models: compare the "
        "two on images neither saw (steelseg score) before replacing the system with it.",
        note=True,
    )


def _time(page: Page, data: dict) -> None:
    page.heading("Time against the budget")
    stages = data["stages"]
    total = sum(s["seconds"] for s in stages.values())
    rows = [[name, round(s["seconds"] / 60, 2), s["note"]] for name, s in stages.items()]
    rows.append(["total", round(total / 60, 2), f"budget {data['budget_minutes']:g} min"])
    page.table(["stage", "minutes", "note"], rows, total_row=True)
    if data["cuts"]:
        page.paragraph("Cut by the budget:")
        page.items(data["cuts"])
    else:
        page.paragraph("Nothing was cut by the budget.", note=True)
