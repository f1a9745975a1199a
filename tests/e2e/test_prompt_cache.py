"""Prompt caching: ``cache_prompt`` marks the part of a request every item shares with
Anthropic's ``cache_control``, a fan-out sends one item first so the rest read its cache
entry, and the cache's write and read tokens are billed at their own prices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write

MARKER = {"type": "ephemeral"}
SYSTEM = "You sort support tickets into billing, bug or question. " * 4

TRIAGE = """
name: triage
llm: {model: claude-haiku-4-5, max_tokens: 50, cache: {enabled: CACHE}}
steps:
  - id: label
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    concurrency: 4
    cache_prompt: CACHE_PROMPT
    system: SYSTEM
    prompt: |
      Label the ticket below with one word.
      Ticket: {{ item }}
"""


def write_triage(folder: Path, *, cache_prompt: bool = True, response_cache: bool = False) -> None:
    write(folder / "tickets.txt", "refund please\napp crashes\nhow do I export\n")
    config = (
        TRIAGE.replace("CACHE_PROMPT", str(cache_prompt).lower())
        .replace("CACHE}", f"{str(response_cache).lower()}}}")
        .replace("SYSTEM", json.dumps(SYSTEM))
    )
    write(folder / "pipeline-config.yaml", config)


def sent(server: FakeLLMServer) -> list[dict]:
    return [request.body for request in server.requests_for("/v1/messages")]


def test_the_shared_start_of_the_prompt_is_marked_and_the_item_is_a_block_of_its_own(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_triage(tmp_path)

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    bodies = sent(fake_llm)
    assert len(bodies) == 3
    for body in bodies:
        assert body["system"] == SYSTEM  # the marker on the prompt's block covers the system
        (message,) = body["messages"]
        shared, own = message["content"]
        assert shared == {
            "type": "text",
            "text": "Label the ticket below with one word.\nTicket: ",
            "cache_control": MARKER,
        }
        assert own["type"] == "text" and "cache_control" not in own
    assert sorted(body["messages"][0]["content"][1]["text"] for body in bodies) == [
        "app crashes\n",
        "how do I export\n",
        "refund please\n",
    ]


def test_without_cache_prompt_the_prompt_is_plain_text(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_triage(tmp_path, cache_prompt=False)

    assert cli("run", "tickets.txt").exit_code == 0

    for body in sent(fake_llm):
        assert isinstance(body["messages"][0]["content"], str)
        assert "cache_control" not in json.dumps(body)


def test_one_item_goes_first_and_the_others_only_after_its_reply(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_triage(tmp_path)
    fake_llm.responder = lambda request: Reply(text="bug", delay=0.3)

    assert cli("run", "tickets.txt").exit_code == 0

    first, *rest = sorted(request.received_at for request in fake_llm.requests_for("/v1/messages"))
    assert len(rest) == 2
    assert all(later >= first + 0.28 for later in rest)  # not launched during the first's 0.3 s
    assert rest[1] - rest[0] < 0.25  # and then together, not one by one


def test_marking_the_prefix_does_not_change_the_request_identity(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_triage(tmp_path, cache_prompt=False, response_cache=True)
    assert cli("run", "tickets.txt", "--run-id", "plain").exit_code == 0
    write_triage(tmp_path, cache_prompt=True, response_cache=True)

    result = cli("run", "tickets.txt", "--run-id", "marked")

    assert result.exit_code == 0, result.output
    assert fake_llm.count("/v1/messages") == 3  # the second run was answered from the cache


CACHED_PREFIX = """
name: ask-a-document
llm: {model: claude-haiku-4-5, max_tokens: 50, cache: {enabled: false}}
steps:
  - id: answer
    kind: llm
    for_each: input.lines
    item_key: "{{ item_index }}"
    cached_prefix: "Document: {{ vars.document }}\\n\\n"
    prompt: "Question: {{ item }}"
vars: {document: PREFIX}
"""


def test_an_explicit_cached_prefix_comes_before_the_prompt_and_turns_caching_on(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "questions.txt", "who?\nwhen?\n")
    write(tmp_path / "pipeline-config.yaml", CACHED_PREFIX.replace("PREFIX", "the report"))

    assert cli("run", "questions.txt", "--run-id", "r").exit_code == 0

    contents = [body["messages"][0]["content"] for body in sent(fake_llm)]
    assert sorted(content[1]["text"] for content in contents) == [
        "Question: when?",
        "Question: who?",
    ]
    assert all(
        content[0] == {"type": "text", "text": "Document: the report\n\n", "cache_control": MARKER}
        for content in contents
    )
    calls = (tmp_path / ".pipeline/r/llm-calls.jsonl").read_text().splitlines()
    assert json.loads(calls[0])["prompt"].startswith("Document: the report\n\nQuestion: ")


def test_a_cached_prefix_that_reads_the_item_is_a_config_error(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "questions.txt", "who?\n")
    config = CACHED_PREFIX.replace("{{ vars.document }}", "{{ item }}").replace("PREFIX", "x")
    write(tmp_path / "pipeline-config.yaml", config)

    result = cli("run", "questions.txt")

    assert_clean_error(result, 2, "cached_prefix cannot use item")
    assert fake_llm.count() == 0


def test_a_prefix_shorter_than_the_model_caches_is_warned_about_once(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_triage(tmp_path)  # about 70 tokens shared; claude-haiku-4-5 caches 4,096 or more

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    events = (tmp_path / ".pipeline/r/events.jsonl").read_text()
    assert events.count("below the 4096 that claude-haiku-4-5 caches") == 1


def test_a_long_enough_prefix_is_not_warned_about(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write(tmp_path / "questions.txt", "who?\nwhen?\n")
    document = "lorem ipsum dolor " * 1000  # 18,000 characters: about 4,500 tokens
    write(tmp_path / "pipeline-config.yaml", CACHED_PREFIX.replace("PREFIX", document))

    assert cli("run", "questions.txt", "--run-id", "r").exit_code == 0

    assert "caches, so nothing" not in (tmp_path / ".pipeline/r/events.jsonl").read_text()


@pytest.mark.parametrize(
    ("prompt", "shared"),
    [
        ("Sort this: {{ item }}", "Sort this: "),
        ("{{ item }} is the ticket", None),  # nothing shared in the prompt: the system is marked
        (
            "Rules: {{ vars.rules }}.\n{% if item %}Ticket: {{ item }}{% endif %}",
            "Rules: be kind.\n",
        ),
        ("Same for all: {{ vars.rules }}", "Same for all: be kind"),
    ],
)
def test_the_cached_part_ends_before_the_first_item_variable(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, prompt: str, shared: str | None
):
    write(tmp_path / "t.txt", "refund\n")
    config = TRIAGE.replace("CACHE_PROMPT", "true").replace("CACHE}", "false}")
    config = config.replace("SYSTEM", json.dumps(SYSTEM)).split("    prompt: |")[0]
    config += f"    prompt: {json.dumps(prompt)}\nvars: {{rules: be kind}}\n"
    write(tmp_path / "pipeline-config.yaml", config)

    assert cli("run", "t.txt").exit_code == 0

    (body,) = sent(fake_llm)
    content = body["messages"][0]["content"]
    if shared is None:
        assert isinstance(content, str)
        assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": MARKER}]
    else:
        assert content[0] == {"type": "text", "text": shared, "cache_control": MARKER}
        assert "".join(block["text"] for block in content) == body_prompt(prompt)


def body_prompt(prompt: str) -> str:
    """The rendered prompt for the item "refund" (the cases above)."""
    return (
        prompt.replace("{{ item }}", "refund")
        .replace("{{ vars.rules }}", "be kind")
        .replace("{% if item %}", "")
        .replace("{% endif %}", "")
    )


def test_the_first_item_writes_the_cache_the_others_read_it_and_each_is_billed_so(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_triage(tmp_path)
    fake_llm.cache_min_tokens = 40  # the fake counts words: the shared prefix has 44
    fake_llm.responder = lambda request: Reply(text="bug", input_tokens=5, output_tokens=2)

    assert cli("run", "tickets.txt", "--run-id", "r").exit_code == 0

    records = [json.loads(line) for line in (tmp_path / ".pipeline/r/llm-calls.jsonl").open()]
    writes = [record for record in records if record["cache_write_tokens"]]
    reads = [record for record in records if record["cache_read_tokens"]]
    assert [record["cache_write_tokens"] for record in writes] == [44]
    assert [record["cache_read_tokens"] for record in reads] == [44, 44]
    # claude-haiku-4-5 per million tokens: $1 input, $5 output, $1.25 cache write, $0.10 read
    assert writes[0]["cost_usd"] == pytest.approx((5 + 2 * 5 + 44 * 1.25) / 1e6)
    assert all(record["cost_usd"] == pytest.approx((5 + 10 + 44 * 0.1) / 1e6) for record in reads)
    state = json.loads((tmp_path / ".pipeline/r/state.json").read_text())
    assert state["steps"][0]["metrics"]["cache_write_tokens"] == 44
    assert state["steps"][0]["metrics"]["cache_read_tokens"] == 88


def test_a_system_prompt_that_reads_the_item_is_warned_about(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "tickets.txt", "refund please\napp crashes\n")
    config = TRIAGE.replace("CACHE_PROMPT", "true").replace("CACHE}", "false}")
    write(tmp_path / "pipeline-config.yaml", config.replace("SYSTEM", '"About {{ item }}"'))

    result = cli("run", "tickets.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    events = (tmp_path / ".pipeline/r/events.jsonl").read_text()
    assert events.count("the system prompt uses item variables") == 1
