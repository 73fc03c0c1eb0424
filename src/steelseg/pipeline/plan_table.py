"""A plan as the table ``steelseg plan`` and ``steelseg fit`` print: each choice, its value and
the reason for it, then the planned minutes per stage against the budget."""

from __future__ import annotations

from steelseg.pipeline.plan import Plan


def plan_rows(plan: Plan) -> list[tuple[str, str, str]]:
    """(choice, value, reason) rows."""
    if plan.system != "auto":
        return _system_rows(plan)
    first = plan.members[0].settings
    crop = first.get("data.crop_height")
    rows = [
        ("input scale", f"{first.get('model.input_scale', 1.0):g}", plan.reasons.get("input scale", "")),
        (
            "crop",
            "whole images" if crop is None else f"{crop}x{first.get('data.crop_width')}",
            plan.reasons.get("crop", ""),
        ),
        ("members", ", ".join(m.name for m in plan.members), plan.reasons.get("families", "")),
    ]
    for member in plan.members:
        s = member.settings
        batches = s.get("train.batches_per_epoch") or "all"
        epochs = f"{s.get('train.epochs')} x {batches} batches of {s.get('data.batch_size')}"
        rows.append((f"{member.name}: batch", str(s.get("data.batch_size")), _reason(plan, "batch", member.name)))
        rows.append((f"{member.name}: epochs", epochs, _reason(plan, "epochs", member.name)))
    rows += [
        (
            "sampler, loss weights",
            str(first.get("data.sampler", "random")),
            plan.reasons.get("sampler, loss weights", ""),
        ),
        ("folds", _folds(plan), plan.reasons.get("folds", "")),
        ("TTA", plan.tta, plan.reasons.get("TTA", "")),
        ("post-processing search", _grids(plan), plan.reasons.get("post-processing search", "")),
        ("tune", _tune(plan), plan.reasons.get("tune", "")),
        (
            "pseudo-label rounds",
            str(plan.pseudo.rounds),
            plan.reasons.get("pseudo-labels", "no unlabelled images given"),
        ),
    ]
    return rows + _distill_rows(plan)


def _system_rows(plan: Plan) -> list[tuple[str, str, str]]:
    rows = [("system", plan.system, plan.reasons.get("system", ""))]
    rows += [(f"member {m.name}", m.recipe, f"{m.minutes:g} min per fold") for m in plan.members]
    rows += [
        ("folds", _folds(plan), ""),
        ("TTA", plan.tta, ""),
        ("selection", plan.select, "every member ships, unless its best single member scores better"),
        ("tune", _tune(plan), ""),
        ("pseudo-label rounds", str(plan.pseudo.rounds), f"rule {plan.pseudo.rule}" if plan.pseudo.rounds else ""),
    ]
    if "cost" in plan.reasons:
        rows.append(("cost", "", plan.reasons["cost"]))
    return rows + _distill_rows(plan)


def _distill_rows(plan: Plan) -> list[tuple[str, str, str]]:
    student = plan.distill
    if student is None:
        return [("distill", "no", "not asked for (--distill STUDENT)")]
    reason = plan.reasons.get("distill", f"{student.minutes:g} min of training")
    return [("distill", f"into {student.student}", reason)]


def format_plan(plan: Plan) -> str:
    rows = plan_rows(plan)
    width = max(len(r[0]) for r in rows) + 2
    value_width = min(28, max(len(r[1]) for r in rows) + 2)
    lines = [f"plan ({plan.system}), budget {plan.budget_minutes:g} min on {plan.device}:"]
    lines += [f"  {name:<{width}}{value:<{value_width}}{reason}" for name, value, reason in rows]
    if plan.estimate:
        total = sum(plan.estimate.values())
        stages = ", ".join(f"{stage} {minutes:.1f}" for stage, minutes in plan.estimate.items())
        lines.append(f"  estimate (min): {stages}; total {total:.1f} of {plan.budget_minutes:g}")
    return "\n".join(lines)


def _reason(plan: Plan, what: str, member: str) -> str:
    for key, reason in plan.reasons.items():
        if key.startswith(what) and member in key:
            return reason
    return ""


def _grids(plan: Plan) -> str:
    areas = plan.tune.area_grid
    return f"{len(areas)} areas to {areas[-1]}" if areas else "the recipe's grid"


def _tune(plan: Plan) -> str:
    floor = f", recall >= {plan.tune.recall_floor:g}" if plan.tune.recall_floor is not None else ""
    return f"{plan.tune.metric}{floor}{', may switch off' if plan.tune.allow_off else ''}"


def _folds(plan: Plan) -> str:
    trained = len(plan.trained_folds())
    return str(plan.k) if trained == plan.k else f"{trained} of {plan.k} trained"
