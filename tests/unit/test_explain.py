"""The tiny GPT behind `kb explain` and /learn: training, validation, pictures and words."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest
import torch

from kb.errors import BadRequest
from kb.explain import (
    MAX_SEQUENCE_LENGTH,
    MAX_STEPS,
    TEXT,
    all_states,
    explain_figures,
    explain_texts,
    format_explain_text,
    render_training_plot_svg,
    render_transition_svg,
    resolve_language,
    train_tiny_gpt,
    validate_explain_input,
)
from kb.explain.svg import LABEL_BOX

SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def default_result():
    return train_tiny_gpt()


def edges(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG}g") if g.get("class") == "edge"]


def nodes(svg: str) -> list[ET.Element]:
    return [g for g in ET.fromstring(svg).iter(f"{SVG}g") if "node" in g.get("class", "").split()]


# --- training -------------------------------------------------------------------------------------


def test_data_frequencies_count_the_token_after_each_full_window(default_result):
    assert default_result.counts == {
        "000": (0, 0),
        "001": (0, 0),
        "010": (0, 0),
        "011": (0, 2),
        "100": (0, 0),
        "101": (0, 2),
        "110": (0, 2),
        "111": (3, 3),
    }
    assert default_result.empirical["111"] == 0.5
    assert default_result.empirical["101"] == 1.0
    assert default_result.unseen == ["000", "001", "010", "100"]
    assert all(default_result.empirical[state] is None for state in default_result.unseen)


def test_fifty_steps_bring_seen_states_within_a_tenth_of_the_data_frequencies(default_result):
    for state, frequency in default_result.empirical.items():
        if frequency is not None:
            assert default_result.after[state] == pytest.approx(frequency, abs=0.1), state
    assert default_result.after["101"] > 0.9
    assert 0.4 < default_result.after["111"] < 0.6


def test_untrained_model_is_near_fifty_fifty_everywhere(default_result):
    assert set(default_result.before) == set(all_states())
    for state, p in default_result.before.items():
        assert p == pytest.approx(0.5, abs=0.2), state


def test_more_steps_move_probabilities_closer_to_the_data():
    def worst_error(result):
        return max(abs(result.after[s] - p) for s, p in result.empirical.items() if p is not None)

    short, long = train_tiny_gpt("0110100110010110", 50), train_tiny_gpt("0110100110010110", 300)
    assert worst_error(long) < 0.05
    assert worst_error(long) < worst_error(short)
    assert long.loss[-1] == pytest.approx(long.loss_floor, abs=0.01)


def test_loss_falls_but_never_below_the_floor_the_data_allows(default_result):
    assert default_result.loss[-1] < default_result.loss[0]
    assert min(default_result.loss) >= default_result.loss_floor - 1e-5
    assert default_result.loss_floor > 0.1  # the ambiguous state 111 leaves real uncertainty


def test_loss_and_tracked_probabilities_have_a_value_before_training_and_after_each_step(default_result):
    assert len(default_result.loss) == default_result.steps + 1
    assert list(default_result.tracked) == ["111→1", "011→1"]
    for key, values in default_result.tracked.items():
        state = key[:3]
        assert len(values) == default_result.steps + 1
        assert values[0] == pytest.approx(default_result.before[state], abs=1e-5)
        assert values[-1] == pytest.approx(default_result.after[state], abs=1e-5)
    assert default_result.tracked_targets == {"111→1": 0.5, "011→1": 1.0}


def test_sample_is_at_least_twenty_binary_tokens_starting_from_111(default_result):
    assert len(default_result.sample) >= 20
    assert set(default_result.sample) <= {"0", "1"}
    assert default_result.sample.startswith("111")
    assert "00" not in default_result.sample  # after training no arrow out of a seen state leads to 0 twice


def test_same_seed_gives_the_same_result_and_another_seed_does_not(default_result):
    assert train_tiny_gpt() == default_result
    other = train_tiny_gpt(seed=7)
    assert other.before != default_result.before


def test_training_leaves_the_callers_random_stream_alone():
    torch.manual_seed(5)
    expected = torch.rand(4)
    torch.manual_seed(5)
    train_tiny_gpt(steps=2)
    assert torch.equal(torch.rand(4), expected)


def test_training_restores_the_callers_torch_thread_count():
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        train_tiny_gpt(steps=2)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(previous)


def test_model_has_a_few_thousand_parameters(default_result):
    assert 1_000 <= default_result.parameter_count <= 10_000


# --- input validation ----------------------------------------------------------------------------


def test_valid_input_is_returned_without_whitespace():
    assert validate_explain_input(" 1111 0\n1111 ", 50) == ("111101111", 50)
    assert validate_explain_input("0101", "20") == ("0101", 20)


def test_non_binary_characters_are_named_in_the_message():
    with pytest.raises(BadRequest) as caught:
        validate_explain_input("1120a01", 50)
    assert "'2'" in caught.value.message and "'a'" in caught.value.message
    assert "position 3" in caught.value.message
    assert caught.value.status_code == 400


def test_too_long_sequence_is_refused_with_the_limit():
    with pytest.raises(BadRequest, match="2,000") as caught:
        validate_explain_input("1" * (MAX_SEQUENCE_LENGTH + 1), 50)
    assert caught.value.code == "sequence_too_long"


def test_sequence_shorter_than_context_plus_one_is_refused():
    with pytest.raises(BadRequest, match="at least 4 tokens"):
        validate_explain_input("101", 50)


@pytest.mark.parametrize("steps", [0, -3, MAX_STEPS + 1, "ten", "", "²", "9" * 5000, 2.5, True, None])
def test_bad_step_counts_are_refused(steps):
    with pytest.raises(BadRequest, match="steps") as caught:
        validate_explain_input("11110", steps)
    assert caught.value.code == "bad_steps"


def test_sequence_that_is_not_text_is_refused():
    with pytest.raises(BadRequest, match="0 and 1"):
        validate_explain_input(None, 50)


def test_training_validates_its_input_too():
    with pytest.raises(BadRequest, match="only 0 and 1"):
        train_tiny_gpt("11x0", 5)


# --- pictures ------------------------------------------------------------------------------------


def test_transition_graph_has_eight_states_and_sixteen_correct_arrows(default_result):
    svg = render_transition_svg(default_result.after, title="After")
    assert sorted(n.get("data-state") for n in nodes(svg)) == all_states()
    pairs = sorted((e.get("data-from"), e.get("data-to")) for e in edges(svg))
    assert pairs == sorted((s, s[1:] + t) for s in all_states() for t in "01")
    assert ("000", "000") in pairs and ("111", "111") in pairs


def test_each_states_two_arrows_sum_to_one(default_result):
    svg = render_transition_svg(default_result.after)
    for state in all_states():
        total = sum(float(e.get("data-p")) for e in edges(svg) if e.get("data-from") == state)
        assert total == pytest.approx(1.0, abs=2e-4), state


def test_arrow_probability_width_and_label_follow_the_model(default_result):
    svg = render_transition_svg(default_result.after)
    by_pair = {(e.get("data-from"), e.get("data-to")): e for e in edges(svg)}
    sure, unlikely = by_pair["101", "011"], by_pair["101", "010"]
    assert float(sure.get("data-p")) == pytest.approx(default_result.after["101"], abs=1e-4)
    width = lambda edge: float(edge.find(f"{SVG}path").get("stroke-width"))  # noqa: E731
    assert width(sure) > 3 * width(unlikely)
    assert sure.find(f"{SVG}text").text == f"{default_result.after['101']:.0%}"


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_no_two_probability_labels_overlap(bits):
    states = [format(i, f"0{bits}b") for i in range(2**bits)]
    svg = render_transition_svg(dict.fromkeys(states, 0.48))
    spots = [(float(t.get("x")), float(t.get("y"))) for t in (e.find(f"{SVG}text") for e in edges(svg))]
    width, height = LABEL_BOX
    for i, (x, y) in enumerate(spots):
        for other_x, other_y in spots[i + 1 :]:
            assert abs(x - other_x) >= width - 0.2 or abs(y - other_y) >= height - 0.2, ((x, y), (other_x, other_y))


def test_unseen_states_are_marked_and_text_is_escaped(default_result):
    svg = render_transition_svg(default_result.before, title='<b>"A & B"</b>', unseen=default_result.unseen)
    root = ET.fromstring(svg)
    assert root.find(f"{SVG}title").text == '<b>"A & B"</b>'
    assert sorted(n.get("data-state") for n in nodes(svg) if "unseen" in n.get("class")) == default_result.unseen


def test_transition_graph_refuses_an_incomplete_state_table():
    with pytest.raises(ValueError):
        render_transition_svg({"000": 0.5, "001": 0.5})


def test_training_plot_draws_loss_tracked_series_and_data_levels(default_result):
    svg = render_training_plot_svg(
        default_result.loss,
        default_result.tracked,
        loss_floor=default_result.loss_floor,
        targets=default_result.tracked_targets,
        title="Loss & <friends>",
    )
    root = ET.fromstring(svg)
    series = {p.get("data-series"): p for p in root.iter(f"{SVG}polyline")}
    assert set(series) == {"loss", "111→1", "011→1"}
    assert len(series["loss"].get("points").split()) == len(default_result.loss)
    levels = {line.get("data-series") for line in root.iter(f"{SVG}line") if line.get("class") == "target"}
    assert levels == {"loss floor", "111→1 data", "011→1 data"}
    assert {g.get("data-panel") for g in root.iter(f"{SVG}g") if g.get("class") == "axes"} == {"loss", "probability"}


def test_training_plot_of_a_long_run_stays_small():
    svg = render_training_plot_svg([1.0 / (i + 1) for i in range(2_001)], {"111→1": [0.5] * 2_001})
    loss_line = next(p for p in ET.fromstring(svg).iter(f"{SVG}polyline") if p.get("data-series") == "loss")
    points = loss_line.get("points").split()
    assert len(points) <= 410
    assert points[-1].startswith("624.0,")  # the last step is always drawn


# --- words ---------------------------------------------------------------------------------------


def test_both_languages_have_the_same_texts_and_all_placeholders_fill(default_result):
    assert set(TEXT["en"]) == set(TEXT["zh"])
    for lang in ("en", "zh"):
        texts = explain_texts(default_result, lang)
        assert not [key for key, value in texts.items() if re.search(r"{\w*[:}]", value)]
    assert "50,000" in explain_texts(default_result, "en")["real_models"]
    assert "5 万" in explain_texts(default_result, "zh")["real_models"]
    assert "retrieval" in explain_texts(default_result, "en")["real_models"]
    assert "检索" in explain_texts(default_result, "zh")["real_models"]


def test_ambiguity_sentence_names_state_111_and_its_counts(default_result):
    assert "111 → 1 in 3 of 6 cases (50%)" in explain_texts(default_result, "en")["ambiguity"]
    assert "111" in explain_texts(default_result, "zh")["ambiguity"]
    clean = train_tiny_gpt("0011001100110011", 5)
    assert explain_texts(clean, "en")["ambiguity"] == TEXT["en"]["no_ambiguity"]


def test_figures_are_three_parseable_svgs_titled_in_the_language(default_result):
    figures = explain_figures(default_result, "zh")
    for svg in (figures.before_svg, figures.after_svg, figures.training_svg):
        ET.fromstring(svg)
    assert "训练 50 步后" in figures.after_svg
    assert "下一个词元为 1" in figures.before_svg


def test_text_summary_lists_every_state_the_sample_and_the_data(default_result):
    text = format_explain_text(default_result)
    for state in all_states():
        assert re.search(rf"^{state}\s+\d+%\s+\d+%", text, re.MULTILINE), state
    assert re.search(r"^111\s+\d+%\s+\d+%\s+50%\s+\(3 of 6\)", text, re.MULTILINE)
    assert default_result.sample in text and default_result.sequence in text
    assert "never seen" in text and "Why it can never be perfect" in text
    assert "为什么" in format_explain_text(default_result, "zh")


def test_language_tags_resolve_to_english_or_chinese():
    assert [resolve_language(tag) for tag in ("zh-CN", "zh_Hans", "ZH", "en-US", "fr", None)] == [
        "zh",
        "zh",
        "zh",
        "en",
        "en",
        "en",
    ]


def test_other_context_lengths_train_and_draw_on_a_circle():
    result = train_tiny_gpt("0110100110010110", 20, context_length=2)
    assert set(result.after) == {"00", "01", "10", "11"}
    svg = render_transition_svg(result.after)
    assert len(nodes(svg)) == 4 and len(edges(svg)) == 8
    with pytest.raises(ValueError):
        train_tiny_gpt(context_length=5)
