"""Edit oracle: antisymmetric, monotone in strength, inverted U around a well-made photo, sensible chains."""

from __future__ import annotations

import itertools
import random

import pytest

from distill import edits
from distill.registry import EDITS, TEACHERS
from distill.teachers.base import PairRequest, Teacher
from distill.teachers.edit_oracle import OP_EFFECTS, SATURATION_M, STATES, EditOracle
from redaes_lite.metadata import FACTORS
from redaes_lite.pairs import PairLabel

ORACLE = EditOracle()
GRID = [0.05, 0.1, 0.2, 0.35, 0.5, 0.7, 0.85, 1.0]


def _d(op: str, s: float, tags: tuple[str, ...] = ()) -> float:
    return ORACLE.judge([{"op": op, "strength": s}], tags=tags)[0]


def test_every_edit_has_a_model_and_every_state_a_vocabulary_factor() -> None:
    assert set(OP_EFFECTS) == set(EDITS.names())
    assert all(st.factor in FACTORS for st in STATES.values())
    for op, effects in OP_EFFECTS.items():
        assert all(name in STATES for name, _, _ in effects)
        assert EDITS.get(op).factor in {STATES[name].factor for name, _, _ in effects}


def test_registered_as_teacher() -> None:
    cls = TEACHERS.get("edit-oracle")
    assert cls is EditOracle and cls.id == "edit-oracle@1" and isinstance(cls(), Teacher)


def test_compare_is_antisymmetric_and_factors_sum_to_delta() -> None:
    rng = random.Random(0)
    for _ in range(200):
        tags = rng.choice([(), ("underexposed",), ("overexposed",), ("monochrome",)])
        ra, rb = edits.random_recipe(rng, tags=tags), edits.random_recipe(rng, tags=tags)
        (dab, fab), (dba, fba) = ORACLE.compare(ra, rb, tags=tags), ORACLE.compare(rb, ra, tags=tags)
        assert dab == pytest.approx(-dba, abs=1e-12)
        assert fab.keys() == fba.keys() and all(fab[k] == pytest.approx(-fba[k], abs=1e-12) for k in fab)
        assert sum(fab.values()) == pytest.approx(dab, abs=1e-9)
        assert ORACLE.judge(rb, tags=tags)[0] == pytest.approx(-ORACLE.compare(rb, [], tags=tags)[0])


@pytest.mark.parametrize("op", [n for n in EDITS.names() if EDITS.get(n).kind != "improve"])
def test_degradations_of_a_well_made_photo_are_strictly_monotone_in_strength(op: str) -> None:
    for sign in (1.0, -1.0):
        deltas = [_d(op, sign * s) for s in GRID]
        assert all(d < 0 for d in deltas)
        assert all(a > b for a, b in itertools.pairwise(deltas)), (op, sign, deltas)


@pytest.mark.parametrize("op", [n for n in EDITS.names() if EDITS.get(n).kind != "improve"])
def test_inverted_u_small_changes_matter_little(op: str) -> None:
    assert abs(_d(op, 0.1)) < 0.05 * abs(_d(op, 1.0))
    assert abs(_d(op, 0.5)) < 0.6 * abs(_d(op, 1.0))


@pytest.mark.parametrize("op", [n for n in EDITS.names() if EDITS.get(n).kind == "improve"])
def test_improvement_edits_never_help_a_well_made_photo(op: str) -> None:
    deltas = [_d(op, s) for s in GRID]
    assert all(d <= 0 for d in deltas) and all(a >= b for a, b in itertools.pairwise(deltas))


FAULTS = {"underexposed": ("exposure", -1), "overexposed": ("exposure", 1), "unretouched": ("contrast", -1)}


@pytest.mark.parametrize(
    ("tag", "op", "sign"),
    [
        ("underexposed", "exposure", 1),
        ("underexposed", "shadow_lift", 1),
        ("underexposed", "auto_levels", 1),
        ("overexposed", "exposure", -1),
        ("overexposed", "auto_levels", 1),
        ("unretouched", "auto_levels", 1),
    ],
)
def test_fixing_a_tagged_fault_is_an_improvement_that_grows(tag: str, op: str, sign: int) -> None:
    moderate = [_d(op, sign * s, (tag,)) for s in (0.1, 0.2, 0.3)]
    assert 0 < moderate[0] < moderate[1] < moderate[2]
    worse_op, worse_sign = FAULTS[tag]
    assert _d(worse_op, worse_sign * 0.3, (tag,)) < 0  # pushing the fault further is worse


@pytest.mark.parametrize(("tag", "sign"), [("underexposed", 1), ("overexposed", -1)])
def test_exposure_fixes_overshoot_an_inverted_u(tag: str, sign: int) -> None:
    deltas = [_d("exposure", sign * s, (tag,)) for s in GRID]
    best = max(range(len(GRID)), key=deltas.__getitem__)
    assert 0 < best < len(GRID) - 1 and deltas[-1] < deltas[best]


def test_chained_edits_combine_sensibly() -> None:
    assert ORACLE.judge([{"op": "exposure", "strength": 0.5}, {"op": "exposure", "strength": -0.5}])[0] == 0
    noise, jpeg = [{"op": "noise", "strength": 0.6}], [{"op": "jpeg", "strength": 0.6}]
    both = ORACLE.judge(noise + jpeg)
    assert both[0] < min(ORACLE.judge(noise)[0], ORACLE.judge(jpeg)[0])
    assert set(both[1]) == {"noise", "compression"}
    repaired = ORACLE.judge(noise + [{"op": "denoise", "strength": 1.0}])[0]
    assert ORACLE.judge(noise)[0] < repaired < 0
    tilted = [{"op": "tilt", "strength": 0.5}]
    assert ORACLE.judge(tilted + [{"op": "straighten", "strength": 1.0}])[0] == 0
    assert ORACLE.judge(tilted + [{"op": "straighten", "strength": 0.5}])[0] > ORACLE.judge(tilted)[0]


def test_utility_is_bounded_and_the_untouched_source_is_the_optimum() -> None:
    wrecked = [{"op": op, "strength": 1.0} for op in ("exposure", "defocus_blur", "jpeg")]
    assert -SATURATION_M < ORACLE.utility(wrecked) < ORACLE.utility(wrecked[:1]) < ORACLE.utility([]) == 0
    assert ORACLE.utility([], tags=("underexposed",)) < 0


def test_monochrome_sources_ignore_saturation_edits() -> None:
    assert _d("saturation", -1.0, ("monochrome",)) == 0 == _d("vibrance", 0.8, ("monochrome",))
    assert _d("white_balance", 0.5, ("monochrome",)) < 0


def test_single_edit_factors_name_its_factor() -> None:
    for op in ("exposure", "noise", "jpeg", "tilt", "crop_cut", "haze", "vignetting", "white_balance"):
        delta, factors = ORACLE.judge([{"op": op, "strength": 0.5}])
        assert factors == {EDITS.get(op).factor: pytest.approx(delta)}


def test_label_writes_contract_records_and_keeps_failures() -> None:
    recipe = ({"op": "exposure", "strength": 0.6},)
    reqs = [
        PairRequest("src.jpg", "sha256:ab", "g1", recipe=recipe, tags=("underexposed",)),
        PairRequest("src.jpg", "sha256:cd", "g1", recipe=({"op": "exposur", "strength": 0.2},)),
        PairRequest("src.jpg", "sha256:ef", "g1"),
    ]
    ok, typo, missing = ORACLE.label(reqs)
    assert ok.ok and ok.source == "edit" and ok.teacher == "edit-oracle@1" and ok.group == "g1"
    assert ok.delta == pytest.approx(ORACLE.judge(recipe, tags=("underexposed",))[0]) and ok.delta > 0
    assert ok.recipe == [dict(recipe[0])] and set(ok.factors) == {"exposure"}
    assert PairLabel.from_dict(ok.to_dict()) == ok
    assert typo.status == "failed" and "exposur" in typo.error
    assert missing.status == "failed" and "no recipe" in missing.error
    assert len({r.id for r in (ok, typo, missing)}) == 3
