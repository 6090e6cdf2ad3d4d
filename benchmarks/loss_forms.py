"""Compare the latency-loss forms at matched measured latency, from a re-measurement of several sweeps.

Usage: python -m benchmarks.loss_forms REMEASURE.json [--backend onnxruntime] [--plot PNG]

REMEASURE.json is what ``benchmarks/remeasure.py SWEEP.json... --json OUT`` writes: every sweep genotype measured
again, interleaved with DARTS_V2, with its test accuracy and the sweep's form. Per (form, setting) this gives the mean
and sample std over seeds of the test accuracy and of the latency ratio to DARTS_V2 (measured in the same rounds, so
sweeps run on different days compare); then, for each point of a non-additive form, the additive form's accuracy at
the same latency ratio (linear between the two additive points around it, or the end point of the additive curve
where it lies beyond it by less than that point's latency std; lambda = 0 is plain DARTS, shared by all forms), and
the difference in units of the two points' pooled std.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from latkit.search.pipeline import mean_std


def groups(doc: dict[str, Any], backend: str) -> list[dict[str, Any]]:
    """One entry per (form, target_ms, setting): seeds, mean and std of accuracy (%) and of the latency ratio."""
    by_key: dict[tuple, list[dict[str, Any]]] = {}
    for g in doc["genotypes"]:
        src = g["source"]
        if g["test_accuracy"] is None or "form" not in src:
            continue
        form = src["form"] if src["setting"] != "lambda=0" else "none (lambda=0)"
        by_key.setdefault((form, src.get("target_ms"), src["setting"]), []).append(g)
    out = []
    for (form, target_ms, setting), rows in by_key.items():
        acc = mean_std([100 * r["test_accuracy"] for r in rows])
        ratio = mean_std([r["ratio_to_darts_v2"][backend] for r in rows])
        out.append({"form": form, "target_ms": target_ms, "setting": setting, "n": len(rows),
                    "seeds": sorted(r["source"]["seed"] for r in rows),
                    "acc": acc["mean"], "acc_std": acc["std"], "ratio": ratio["mean"], "ratio_std": ratio["std"]})
    return sorted(out, key=lambda p: (p["form"], p["ratio"]))


def additive_at(curve: list[dict[str, Any]], ratio: float) -> tuple[float, float, str] | None:
    """The additive curve's (accuracy, std, how) at a latency ratio: linear between its neighbours, or its end point
    where the ratio lies beyond it by less than that point's latency std; None further out."""
    pts = sorted(curve, key=lambda p: p["ratio"])
    for a, b in zip(pts, pts[1:]):
        if a["ratio"] <= ratio <= b["ratio"]:
            w = (ratio - a["ratio"]) / (b["ratio"] - a["ratio"]) if b["ratio"] > a["ratio"] else 0.0
            return (a["acc"] + w * (b["acc"] - a["acc"]), a["acc_std"] + w * (b["acc_std"] - a["acc_std"]),
                    "interpolated")
    for end in (pts[0], pts[-1]):
        if abs(ratio - end["ratio"]) <= end["ratio_std"]:
            return end["acc"], end["acc_std"], f"{end['setting']}'s, within its latency std"
    return None


def table(points: list[dict[str, Any]], backend: str) -> str:
    curve = [p for p in points if p["form"] in ("additive", "none (lambda=0)")]
    lines = [f"| form | setting | seeds | test acc % | {backend} / DARTS_V2 | additive acc % at that latency | "
             "difference (pooled std) |", "|---" * 7 + "|"]
    for p in points:
        setting = p["setting"] + (f", target {p['target_ms']} ms" if p["target_ms"] else "")
        cells = ["", ""]
        if p["form"] not in ("additive", "none (lambda=0)"):
            at = additive_at(curve, p["ratio"])
            if at is None:
                cells = ["outside the additive range", ""]
            else:
                pooled = ((p["acc_std"] ** 2 + at[1] ** 2) / 2) ** 0.5
                diff = p["acc"] - at[0]
                how = "" if at[2] == "interpolated" else f" ({at[2]})"
                cells = [f"{at[0]:.2f}{how}",
                         f"{diff:+.2f} ({diff / pooled:+.1f} std)" if pooled else f"{diff:+.2f}"]
        lines.append(f"| {p['form']} | {setting} | {','.join(map(str, p['seeds']))} | {p['acc']:.2f} +- "
                     f"{p['acc_std']:.2f} | {p['ratio']:.3f} +- {p['ratio_std']:.3f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def plot(points: list[dict[str, Any]], path: Path, backend: str) -> Path:
    """Accuracy against the latency ratio, one colour per form, error bars of one std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for form in dict.fromkeys(p["form"] for p in points):
        pts = [p for p in points if p["form"] == form]
        ax.errorbar([p["ratio"] for p in pts], [p["acc"] for p in pts], xerr=[p["ratio_std"] for p in pts],
                    yerr=[p["acc_std"] for p in pts], fmt="o", capsize=3, label=form)
        for p in pts:
            ax.annotate(p["setting"].replace("lambda=", "λ"), (p["ratio"], p["acc"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(f"measured latency / DARTS_V2 on {backend} (median of rounds)")
    ax.set_ylabel("test accuracy % (mean over seeds)")
    ax.set_title("Loss forms at matched latency (error bars: 1 std over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("remeasured")
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--plot")
    args = parser.parse_args()
    doc = json.loads(Path(args.remeasured).read_text())
    if args.backend not in doc["backends"]:
        raise SystemExit(f"{args.remeasured} has no {args.backend} timings (it has: {', '.join(doc['backends'])})")
    points = groups(doc, args.backend)
    print(table(points, args.backend))
    if args.plot:
        print(f"\nwrote {plot(points, Path(args.plot), args.backend)}")


if __name__ == "__main__":
    main()
