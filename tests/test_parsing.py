"""Answer parsing: last <answer> block, first number, malformed answers refused (never guessed)."""

from __future__ import annotations

import pytest

from distill.teachers.parsing import MalformedAnswer, parse_answer
from distill.teachers.prompts import PROMPTS, PromptTemplate, get_prompt


def test_well_formed_answer_gives_value_and_reasoning():
    ans = parse_answer("<think>Brighter, but the sky clips.</think><answer>0.75</answer>")
    assert ans.value == 0.75
    assert ans.rationale == "Brighter, but the sky clips."


@pytest.mark.parametrize(
    ("answer", "value"),
    [("-1.25", -1.25), ("+0.5", 0.5), ("\u22122.00", -2.0), ("-.5", -0.5), ("3", 3.0), ("1e-1", 0.1)],
)
def test_signed_numbers(answer, value):
    assert parse_answer(f"<think>x</think><answer>{answer}</answer>").value == value


def test_first_number_of_last_block_wins():
    text = (
        "Format: <answer>-4 to 4</answer>\n<think>The edit lifts shadows.</think>"
        "<answer> The change is -0.8 (rated 3.1 vs 3.9) </answer>"
    )
    ans = parse_answer(text)
    assert ans.value == -0.8
    assert ans.rationale == "The edit lifts shadows."


def test_rationale_without_think_tags_is_the_text_before_the_answer():
    assert parse_answer("The crop is better.\n<answer>1.0</answer>").rationale == "The crop is better."
    assert parse_answer("<answer>1.0</answer>").rationale is None
    assert parse_answer("<think>cut off <answer>2</answer>").rationale == "cut off"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("<think>it is nice</think> 3.5", "no <answer> block"),
        ("<think>long reasoning</think><answer>3.", "unclosed <answer> block"),
        ("Format: <answer>-4..4</answer><think>so</think><answer>2.", "unclosed <answer> block"),
        ("<answer>much better</answer>", "no number"),
        ("<answer>- 2</answer>", "detached sign"),
        ("", "no <answer> block"),
    ],
)
def test_malformed_answers_raise(text, why):
    with pytest.raises(MalformedAnswer, match=why):
        parse_answer(text)


def test_answer_outside_the_prompt_range_is_malformed():
    with pytest.raises(MalformedAnswer, match="outside"):
        parse_answer("<answer>7.5</answer>", answer_range=(1.0, 5.0))
    assert parse_answer("<answer>5</answer>", answer_range=(1.0, 5.0)).value == 5.0


def test_prompts_are_versioned_and_render_images_in_place():
    pair = get_prompt("pairwise-v1")
    parts = pair.messages()[-1]["content"]
    assert [p["type"] for p in parts].count("image") == 2
    assert parts[0]["type"] == "text" and parts[1]["type"] == "image"
    assert pair.version.startswith("pairwise-v1:")
    reworded = PromptTemplate(pair.name, pair.mode, pair.text + " Be brief.", pair.answer_range)
    assert reworded.version != pair.version  # editing wording without a new name still changes cache keys
    assert {p.mode for p in PROMPTS.values()} == {"pairwise", "pointwise"}
    with pytest.raises(KeyError, match="pairwise-v1"):
        get_prompt("pairwise-v9")
    with pytest.raises(ValueError, match="slot"):
        PromptTemplate("bad", "pairwise", "one {image} only", (-4.0, 4.0))
