"""A committed cross-validation result under recording conditions: ``emorec robustness`` on the run
directories that result names (its fold models, its test folds), written to the results folder.

    python robustness.py results/ravdess_6fold_v2_ema_bn_deltas_seed8_speed.json [--part val] [--conditions ...]
    python robustness.py results/X.json --feature trim_floor_db=6     # a front-end change at inference only

Output: ``results/robustness/<result name>[_val].json`` and ``.png`` (UA per condition with its CI,
the drop from clean, and the share of predictions each class takes). ``--part val`` scores the
validation actors instead, to compare recipes without reading a test clip. ``--feature KEY=VALUE``
lays a setting over the models' audio features at inference (``results/robustness/<name>_KEYVALUE``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS, command_line
from predictions import run_dirs_of


def main(argv: list[str] | None = None) -> None:
    from emorec.atomic import write_json
    from emorec.media.conditions import DEFAULT_SUITE
    from emorec.evaluation.plots import plot_robustness
    from emorec.evaluation.robustness import robustness_run

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("result", help="a results JSON of crossval.py whose run directories exist")
    parser.add_argument("--part", choices=("test", "val"), default="test")
    parser.add_argument("--conditions", default=",".join(DEFAULT_SUITE))
    parser.add_argument("--out-dir", default=str(RESULTS / "robustness"))
    parser.add_argument("--feature", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    from emorec.training.recipe_files import key_values

    features = key_values(args.feature, "--feature")
    source = Path(args.result)
    result = json.loads(source.read_text())
    out_dir = Path(args.out_dir)
    scratch = out_dir / f".{source.stem}"
    scores = robustness_run(run_dirs_of(result), args.conditions.split(","), out=scratch, part=args.part, features=features)
    stem = source.stem + "".join(f"_{key}{value}" for key, value in features.items()) + ("" if args.part == "test" else "_val")
    scores |= {"source": source.name, "source_command": result.get("command"), "command": command_line()}
    write_json(out_dir / f"{stem}.json", scores)
    plot_robustness(scores, out_dir / f"{stem}.png")
    for leftover in scratch.iterdir():
        leftover.unlink()
    scratch.rmdir()
    for name, score in scores["conditions"].items():
        print(f"{name:>14}: UA {100 * score['ua']:.1f} (drop {score['drop_points']:+.1f})  "
              f"{score['top_class']} {100 * score['top_share']:.0f} %")


if __name__ == "__main__":
    main()
