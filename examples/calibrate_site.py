"""Set a site's own operating point on its labelled films, then screen a batch of incoming films with it.

A site first collects labelled films of its own (one folder per class, named as the model's labels,
as for `edgecxr evaluate`): at least 30 abnormal and 30 normal, more for a tighter interval. The
script picks the threshold that flags the target share of the abnormal ones, writes the profile
with its ROC plot and threshold table, then refers or clears each incoming film at that threshold.
Research use only: a second reader, not a diagnosis.

    python examples/calibrate_site.py SITE_DIR INCOMING... --profile site.json [--target-sensitivity 0.9] [--for abnormal] [--model M]

The same from the command line: `edgecxr calibrate SITE_DIR --out site.json`, then
`edgecxr predict INCOMING --site site.json`.
"""
from __future__ import annotations

import argparse
import sys

from edgecxr import ImageError, ModelError, find_images, load_model
from edgecxr.evaluation.calibrate import calibrate, write_report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("site_dir", help="the site's labelled films: one folder per class")
    parser.add_argument("incoming", nargs="+", help="films or folders to screen")
    parser.add_argument("--profile", required=True, help="where to write the site profile (JSON; plot and table beside it)")
    parser.add_argument("--target-sensitivity", type=float, default=0.9, help="share of abnormal films to refer (default 0.9)")
    parser.add_argument("--for", dest="targets", action="append", help="abnormal (default) or one of the model's labels; repeatable")
    parser.add_argument("--model", help="bundled model name or path to a .tflite (default: the bundled default)")
    args = parser.parse_args(argv)
    try:
        result = calibrate(load_model(args.model), args.site_dir, args.target_sensitivity, args.targets or ["abnormal"])
    except (ModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    files = write_report(result, args.profile)
    for p in result.profile["operating_points"]:
        se, sp = p["sensitivity"], p["specificity"]
        print(
            f"{p['for']}: refer at score >= {p['threshold']:.4f}; on the site's films sensitivity {se['value']:.3f} "
            f"({se['low']:.3f}-{se['high']:.3f}), specificity {sp['value']:.3f} ({sp['low']:.3f}-{sp['high']:.3f})"
        )
    print(f"profile: {files['profile']}")

    model = load_model(args.model, site=files["profile"])  # load once, screen many
    referred = failed = 0
    for path in find_images(args.incoming):
        try:
            p = model.predict(path)
        except ImageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        referred += bool(p.refer)
        warned = "  (check the input: " + "; ".join(p.warnings) + ")" if p.warnings else ""
        print(f"{'REFER   ' if p.refer else 'no refer'}  {path}  {p.label}{warned}")
    print(f"{referred} referred, {failed} unreadable")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
