"""The field's fixed speaker-independent folds: RAVDESS's six (EmoBox) and CREMA-D's five, as tables
of test actors, and the rule that makes CREMA-D's from its demographics file."""

from __future__ import annotations

import os

#: The standard speaker-independent RAVDESS folds: fold -> test actors.
RAVDESS_FOLDS: dict[int, tuple[int, ...]] = {
    1: (1, 11, 20, 21),
    2: (4, 10, 12, 14),
    3: (8, 9, 19, 23),
    4: (3, 5, 7, 24),
    5: (2, 15, 16, 18),
    6: (6, 13, 17, 22),
}
RAVDESS_ACTORS = {f"ravdess/{a:02d}" for a in range(1, 25)}
#: Fixed speaker-independent CREMA-D folds (91 actors, 18-19 per fold, 8-10 of each sex): within
#: each sex, actors sorted by (age, id) are dealt to folds 1..5 in serpentine order (1-5, 5-1,
#: 1-5, ...), women first and the men continuing the same deal, so every fold spans the ages
#: alike (``crema_d_folds_from_demographics`` applies the rule to ``VideoDemographics.csv``).
CREMA_D_FOLDS: dict[int, tuple[int, ...]] = {
    1: (
        1004,
        1006,
        1009,
        1021,
        1031,
        1034,
        1036,
        1045,
        1048,
        1055,
        1065,
        1067,
        1073,
        1074,
        1075,
        1081,
        1082,
        1088,
        1090,
    ),
    2: (
        1001,
        1002,
        1007,
        1012,
        1014,
        1023,
        1024,
        1028,
        1029,
        1030,
        1032,
        1033,
        1035,
        1042,
        1044,
        1087,
        1089,
        1091,
    ),
    3: (
        1003,
        1011,
        1018,
        1019,
        1020,
        1022,
        1037,
        1039,
        1047,
        1050,
        1052,
        1056,
        1057,
        1058,
        1060,
        1071,
        1083,
        1085,
    ),
    4: (
        1005,
        1008,
        1010,
        1015,
        1016,
        1017,
        1027,
        1043,
        1046,
        1054,
        1061,
        1063,
        1064,
        1066,
        1068,
        1077,
        1078,
        1080,
    ),
    5: (
        1013,
        1025,
        1026,
        1038,
        1040,
        1041,
        1049,
        1051,
        1053,
        1059,
        1062,
        1069,
        1070,
        1072,
        1076,
        1079,
        1084,
        1086,
    ),
}
CREMA_D_ACTORS = {f"crema-d/{a}" for actors in CREMA_D_FOLDS.values() for a in actors}


def crema_d_folds_from_demographics(path: str | os.PathLike) -> dict[int, tuple[int, ...]]:
    """The rule behind :data:`CREMA_D_FOLDS`, applied to a ``VideoDemographics.csv``."""
    import csv

    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    folds: dict[int, list[int]] = {f: [] for f in range(1, 6)}
    position = 0
    for sex in ("Female", "Male"):
        for _age, actor in sorted(
            (int(r["Age"]), int(r["ActorID"])) for r in rows if r["Sex"] == sex
        ):
            cycle, offset = divmod(position, 5)
            folds[offset + 1 if cycle % 2 == 0 else 5 - offset].append(actor)
            position += 1
    return {f: tuple(sorted(actors)) for f, actors in folds.items()}
