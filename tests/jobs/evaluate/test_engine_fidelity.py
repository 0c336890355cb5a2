"""The serving-engine perplexity: chunking, both answer shapes (contracts/serving_protocol.py), the token check."""

import math

import pytest

from contracts.serving_protocol import NoPromptLogprobsError, PromptScore, lmi_body, parse_lmi, parse_openai
from jobs.evaluate.engine_fidelity import _check_same_tokens, summarize_scores, text_chunks
from jobs.evaluate.load_test import SseUsageParser
from jobs.sagemaker_job.failure import JobFailureError


def test_chunks_cut_at_line_then_word_boundaries_and_never_exceed_the_size():
    text = "alpha beta gamma\n" * 30 + "x" * 100
    chunks = text_chunks([text, "", "  short  "], 64)
    assert all(0 < len(c) <= 64 for c in chunks)
    assert chunks[-1] == "short"
    assert all(not c.startswith(("\n", " ")) for c in chunks)
    assert "".join(chunks).replace(" ", "").replace("\n", "") == (text + "short").replace(" ", "").replace("\n", "")


def test_openai_prompt_logprobs_skip_the_first_token():
    body = {"choices": [{"prompt_logprobs": [None, {"5": {"logprob": -1.5}}, {"7": {"logprob": -0.5, "rank": 1}}]}]}
    assert parse_openai(body) == PromptScore((5, 7), (-1.5, -0.5))


def test_lmi_prefill_in_both_response_shapes():
    answer = {"generated_text": "x", "details": {"prefill": [{"id": 1, "log_prob": None}, {"id": 9, "log_prob": -2.0}]}}
    assert parse_lmi(answer) == PromptScore((9,), (-2.0,))
    assert parse_lmi([answer]) == PromptScore((9,), (-2.0,))  # OPTION_TGI_COMPAT: a one-element list
    assert lmi_body("hi")["parameters"] == {"max_new_tokens": 1, "details": True, "decoder_input_details": True}
    assert "decoder_input_details" not in lmi_body("hi", max_new_tokens=64, prompt_logprobs=False)["parameters"]


@pytest.mark.parametrize(
    "answer",
    [
        {"generated_text": "x", "details": {}},
        {"generated_text": "x"},
        {"generated_text": "x", "details": {"prefill": [{"id": 1}, {"id": 2, "log_prob": None}]}},
        ["not", "one"],
    ],
)
def test_lmi_answers_without_prompt_logprobs_are_refused(answer):
    with pytest.raises(NoPromptLogprobsError):
        parse_lmi(answer)


def test_openai_answers_with_alternatives_or_nothing_are_refused():
    with pytest.raises(NoPromptLogprobsError):
        parse_openai({"choices": [{"prompt_logprobs": None}]})
    with pytest.raises(NoPromptLogprobsError):
        parse_openai({"choices": [{"prompt_logprobs": [None, {"1": {"logprob": -1}, "2": {"logprob": -3}}]}]})


def test_perplexity_is_exp_of_the_mean_negative_log_probability():
    scores = [PromptScore((1, 2), (-1.0, -2.0)), PromptScore((3,), (-3.0,))]
    summary = summarize_scores(scores, 1.5, 100)
    assert summary["token_count"] == 3 and summary["chunks"] == 2
    assert summary["perplexity"] == pytest.approx(math.exp(2.0))


def test_variants_that_tokenize_differently_are_refused():
    with pytest.raises(JobFailureError, match="share a tokenizer"):
        _check_same_tokens("candidate", [PromptScore((1, 2), (-1.0, -1.0))], [PromptScore((1, 3), (-1.0, -1.0))])


def test_chat_streams_are_read_as_server_sent_events_or_json_lines():
    sse = b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\ndata: {"choices":[],"usage":{"completion_tokens":3}}\n'
    lines = b'{"choices":[{"delta":{"content":"Hi"}}]}\n{"choices":[{"delta":{"content":" there"}}]}\n'
    for payload, tokens, text in ((sse, 3, "Hi"), (lines, 2, "Hi there")):
        parser = SseUsageParser(started=0.0)
        for i in range(0, len(payload), 7):  # arbitrary chunk boundaries
            parser.feed(payload[i : i + 7], now=1.0)
        parser.close(2.0)
        result = parser.result(2.0)
        assert (result.output_tokens, result.text, result.ttft_s) == (tokens, text, 1.0)
